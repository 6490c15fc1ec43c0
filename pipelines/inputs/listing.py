"""Listing an input: which files a source reads, which it skips (counted) and which it cannot read.

Element contract: :func:`list_entries` yields, for a folder, a glob pattern or one file, what the
listing finds, in path order: a path (``str``; a :class:`RawName` when the name is not UTF-8) or a
:class:`Skipped` (``hidden``, ``repeated_folder``) or an ``Unreadable`` (a folder that cannot be
listed). :func:`check_file` then takes a path to one of: the path (to plan and read), a
:class:`Skipped` (``by_extension``), or an ``Unreadable`` (``unreadable_file``: a dangling link;
``not_a_regular_file``: a device, FIFO or socket, never opened; ``file_too_large``: over
``--max-file-bytes``, for image files, which are read whole). Skipped files are never read and
are not records: jobs count them by reason (``skipped_<reason>`` counters, ``skipped`` in
``stats.json`` and the manifests).

The rules, local files:
  - hidden: a name under the input starting with ``.`` (``.DS_Store``, ``._x.png``, ``.git``) or
    a system file (``Thumbs.db``, ``desktop.ini``); a hidden folder is not searched and counts once;
  - folders are searched recursively and symbolic links to folders are followed; each real
    folder is searched once (``repeated_folder``: a link back to an ancestor, or a second way to a
    folder already searched), so loops end and no file is read twice;
  - an input path that exists is taken literally, even with glob characters (``photos [2024]``);
    one that does not is a glob (``*`` and ``?`` within a folder, ``**`` across, ``[...]`` a set).
On other filesystems (``gs://``, ``s3://``) Beam's ``FileSystems.match`` lists, hidden names are
skipped the same way, and the image reader stops reading at the size limit instead (``base.too_large``).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from typing import NamedTuple

from apache_beam.io.filesystems import FileSystems

from pipelines.config import IMAGES
from pipelines.inputs import formats
from pipelines.inputs.formats.base import Unreadable, relative_id, text, too_large

FOLDER, GLOB, FILE = "folder", "glob", "file"
HIDDEN, BY_EXTENSION, REPEATED_FOLDER = "hidden", "by_extension", "repeated_folder"
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db"})
GLOB_CHARACTERS = re.compile(r"[*?\[]")
# Formats whose files are read whole (the others are read in ranges of at most base.UNIT_BYTES).
READ_WHOLE = frozenset({IMAGES})


class Skipped(NamedTuple):
    """A file (or hidden folder) the listing does not read: its path and the ``reason``."""

    path: str
    reason: str


class RawName(str):
    """A path whose name is not UTF-8 (Python holds the raw bytes as surrogates).

    Beam's coder for ``str`` encodes strict UTF-8 and would fail on it; this subclass is pickled
    instead, so the real name reaches the reader that opens the file. Ids and texts made from it
    are escaped (``base.text``).
    """

    __slots__ = ()

    def __reduce__(self):
        return RawName, (str(self),)


def is_hidden(name: str) -> bool:
    """A hidden or system file's name (see the module docstring)."""
    return name.startswith(".") or name.lower() in SYSTEM_FILES


def has_hidden_part(relative_path: str) -> bool:
    """A path under the input with a hidden file or folder in it (``a/.cache/x.png``)."""
    return any(is_hidden(part) for part in relative_path.split("/"))


def _path(path: str) -> str:
    return path if text(path) is path else RawName(path)


def is_local(path: str) -> bool:
    return "://" not in path


def list_entries(pattern: str, root: str, kind: str) -> Iterator[str | Skipped | Unreadable]:
    """What ``pattern`` (a folder, a glob or a file, per ``kind``; ids are relative to ``root``)
    holds: paths, :class:`Skipped` and ``Unreadable`` items (see the module docstring)."""
    if kind == FILE:
        yield _path(pattern)
    elif not is_local(pattern):
        for metadata in FileSystems.match([pattern if kind == GLOB else FileSystems.join(pattern, "**")])[
            0
        ].metadata_list:
            hidden = has_hidden_part(metadata.path[len(root) :].lstrip("/"))
            yield Skipped(metadata.path, HIDDEN) if hidden else metadata.path
    elif kind == FOLDER:
        yield from _walk(pattern, root, set(), None)
    else:
        base = pattern[: GLOB_CHARACTERS.search(pattern).start()].rsplit("/", 1)[0] or "/"
        yield from _walk(base, root, set(), _glob_regex(pattern))


def _walk(folder: str, root: str, seen: set, matcher: re.Pattern | None) -> Iterator[str | Skipped | Unreadable]:
    """A folder's entries, depth first in name order, following links to folders once each."""
    try:
        info = os.stat(folder)
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        yield Unreadable(relative_id(folder, root), folder, "unreadable_file", f"the folder cannot be listed: {error}")
        return
    real = (info.st_dev, info.st_ino)
    if real in seen:
        yield Skipped(folder, REPEATED_FOLDER)
        return
    seen.add(real)
    for entry in entries:
        path = f"{folder.rstrip('/')}/{entry.name}"
        if is_hidden(entry.name):
            if matcher is None or matcher.match(path):
                yield Skipped(_path(path), HIDDEN)
            continue
        try:
            is_folder = entry.is_dir()  # follows links
        except OSError:  # a link loop on the entry itself: check_file names it
            is_folder = False
        if is_folder:
            yield from _walk(path, root, seen, matcher)
        elif matcher is None or matcher.match(path):
            yield _path(path)


def _glob_regex(pattern: str) -> re.Pattern:
    """Beam's glob rules as a regular expression: ``**`` any path, ``*`` and ``?`` within a folder,
    ``[...]`` a set (``[!...]`` its complement)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        char = pattern[i]
        end = pattern.find("]", i + 2) if char == "[" else -1
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif end != -1:
            inner = pattern[i + 1 : end]
            out.append("[" + ("^" + inner[1:] if inner.startswith("!") else inner).replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


def check_file(path: str, root: str, fmt: str, kind: str, max_file_bytes: int) -> str | Skipped | Unreadable:
    """``path`` if it is to be read, else why not (see the module docstring). A file given as the
    input itself (``kind`` ``file``) is never skipped by its extension."""
    if kind != FILE and formats.skipped_by_extension(path, fmt):
        return Skipped(path, BY_EXTENSION)
    if not is_local(path):  # the reader of a file read whole stops at the limit (``too_large``)
        return path
    record_id = relative_id(path, root)
    try:
        info = os.stat(path)
    except OSError as error:
        return Unreadable(record_id, path, "unreadable_file", _stat_error(path, error))
    if not stat.S_ISREG(info.st_mode):
        return Unreadable(
            record_id,
            path,
            "not_a_regular_file",
            f"{path} is {_file_type(info.st_mode)}, not a regular file; only regular files are read",
        )
    if fmt in READ_WHOLE and info.st_size > max_file_bytes:
        return too_large(record_id, path, info.st_size, max_file_bytes)
    return path


def _stat_error(path: str, error: OSError) -> str:
    if os.path.islink(path):
        target = os.readlink(path)
        if not os.path.exists(path) and error.errno != getattr(os, "ELOOP", None):
            return f"{path} is a symbolic link to {target}, which does not exist; restore it or remove the link"
        return f"{path} is a symbolic link that cannot be followed ({error.strerror}); fix or remove the link"
    return f"{path} cannot be read: {error.strerror}"


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "a special file"
