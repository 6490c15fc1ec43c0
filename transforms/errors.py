"""The error types of mistakes and conditions a person or a scheduler acts on, with their exit codes.

:class:`UserError` carries a message that names what is wrong and the fix; the command line shows
it without a traceback and exits with its ``exit_code`` (1; subclasses that a scheduler must tell
apart set their own, listed in the README's exit-code table). Every other exception is a bug (or
an outage) and keeps its traceback. It lives here, at the bottom of the one-way imports
(``transforms`` <- ``models`` <- ``pipelines``), so that every layer can raise it. It subclasses
``ValueError`` so that code that validates values can be read the usual way.
"""


class UserError(ValueError):
    """A mistake in the input or the options; the message names the fix."""

    exit_code = 1


class DriftDetected(UserError):
    """``infer --fail-on-drift``: the run was published and its manifest's ``drift`` section says
    ``detected: true`` (see ``pipelines.infer.drift``)."""

    exit_code = 3
