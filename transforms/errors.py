"""The error type of mistakes a person can fix: a bad option, a missing file, unusable data.

:class:`UserError` carries a message that names what is wrong and the fix; the command line shows
it without a traceback and exits 1. Every other exception is a bug (or an outage) and keeps its
traceback. It lives here, at the bottom of the one-way imports (``transforms`` <- ``models`` <-
``pipelines``), so that every layer can raise it. It subclasses ``ValueError`` so that code that
validates values can be read the usual way.
"""


class UserError(ValueError):
    """A mistake in the input or the options; the message names the fix."""
