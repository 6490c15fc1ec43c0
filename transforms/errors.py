"""The error types of mistakes and conditions a person or a scheduler acts on, with their exit codes.

:class:`UserError` carries a message that names what is wrong and the fix; the command line shows
it without a traceback and exits with its ``exit_code`` (1; subclasses that a scheduler must tell
apart set their own, listed in the README's exit-code table). Every other exception is a bug (or
an outage) and keeps its traceback. It lives here, at the bottom of the one-way imports
(``transforms`` <- ``models`` <- ``pipelines``), so that every layer can raise it. It subclasses
``ValueError`` so that code that validates values can be read the usual way.

:func:`error_text` is the one way an exception becomes text for people (dead letters, messages).
"""

import re

# What Python prints for an object without a readable form, e.g. <_io.BytesIO object at 0x7f02...>.
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


class UserError(ValueError):
    """A mistake in the input or the options; the message names the fix."""

    exit_code = 1


def error_text(error: BaseException) -> str:
    """``"TypeName: message"`` for people: an object's repr in the message (Pillow names the
    in-memory file it was given, ``<_io.BytesIO object at 0x...>``) becomes ``the data``."""
    message = _OBJECT_REPR.sub("the data", str(error)).strip()
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
