"""The error types of mistakes and conditions a person or a scheduler acts on, with their exit codes.

:class:`UserError` carries a message that names what is wrong and the fix; the command line shows
it without a traceback and exits with its ``exit_code`` (1; subclasses that a scheduler must tell
apart set their own, listed in the README's exit-code table). Every other exception is a bug (or
an outage) and keeps its traceback. It lives here, at the bottom of the one-way imports
(``transforms`` <- ``models`` <- ``pipelines``), so that every layer can raise it. It subclasses
``ValueError`` so that code that validates values can be read the usual way.

:func:`check_output_folder` refuses up front, before any work, a local output that cannot be written;
:func:`storage_error` turns the storage's refusals of a write (full disk, read-only file system,
permission denied, a path through a file) into a :class:`UserError` naming the path and the fix,
whichever layer met them: Python's ``OSError`` (by errno), TensorFlow's file errors and Beam's
wrapped worker errors (by the operating system's words, which they keep in their text).
:func:`error_text` is the one way an exception becomes text for people (dead letters, messages).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator, Sequence

# What Python prints for an object without a readable form, e.g. <_io.BytesIO object at 0x7f02...>.
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


class UserError(ValueError):
    """A mistake in the input or the options; the message names the fix."""

    exit_code = 1


_FREE = "free space there (or set a quota) or pass another output folder"
_WRITABLE = "pass an output folder you can write to (or fix its permissions or mount)"
# (errno, the words the operating system uses, what they mean, the fix, whether only writes cause it)
_STORAGE = (
    (errno.ENOSPC, "no space left on device", "the disk is full", _FREE, True),
    (errno.EDQUOT, "disk quota exceeded", "the disk quota is exceeded", _FREE, True),
    (errno.EROFS, "read-only file system", "the file system is read-only", _WRITABLE, True),
    (errno.EACCES, "permission denied", "permission is denied", _WRITABLE, False),
    (errno.ENOTDIR, "not a directory", "a part of the path is a file, not a folder", "pass a folder path", False),
)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def storage_error(error: BaseException, outputs: Sequence[str]) -> UserError | None:
    """A :class:`UserError` when ``error`` (or one it came from) is the storage refusing to write
    under one of ``outputs``; None for anything else (a bug keeps its traceback).

    A refusal that reads can meet too (permission denied, not a directory) counts only when its
    text names one of ``outputs``, so an unreadable input is not blamed on the output.
    """
    for cause in _chain(error):
        text = str(cause)
        for code, words, what, fix, writes_only in _STORAGE:
            if not ((isinstance(cause, OSError) and cause.errno == code) or words in text.lower()):
                continue
            filename = getattr(cause, "filename", None)
            path = str(filename) if filename else max((o for o in outputs if o and o in text), key=len, default="")
            if not any(path.startswith(o) for o in outputs if o) and not writes_only:
                continue
            return UserError(f"cannot write {path or ' or '.join(outputs)}: {what}; {fix}")
    return None


def check_output_folder(path: str) -> None:
    """Fails fast when a local output folder cannot be written: it (or a parent) is a file, or the
    nearest existing folder is on a read-only or full file system or not writable. Remote paths
    (``gs://``, ...) are left to the first write.

    Raises:
      UserError: names the path and the fix.
    """
    if "://" in path:
        return
    existing = os.path.abspath(path)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"output {path} is not a folder: {existing} is a file; pass a folder path (or move the file)")
    stats = os.statvfs(existing)
    for refused, (_, _, what, fix, _) in (
        (stats.f_flag & os.ST_RDONLY, _STORAGE[2]),
        (not os.access(existing, os.W_OK | os.X_OK), _STORAGE[3]),
        (stats.f_bavail == 0, _STORAGE[0]),
    ):
        if refused:
            raise UserError(f"cannot write {path} (in {existing}): {what}; {fix}")


def error_text(error: BaseException) -> str:
    """``"TypeName: message"`` for people: an object's repr in the message (Pillow names the
    in-memory file it was given, ``<_io.BytesIO object at 0x...>``) becomes ``the data``."""
    message = _OBJECT_REPR.sub("the data", str(error)).strip()
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class DriftDetected(UserError):
    """``infer --fail-on-drift``: the run was published and its manifest's ``drift`` section says
    ``detected: true`` (see ``pipelines.infer.drift``)."""

    exit_code = 3
