"""What every format's reader is: the raw-record contract, units of work, and unreadable items.

A reader has two steps, both run inside Beam workers (see ``inputs.sources``):
  ``plan_all(paths)``: matched files -> units (small, picklable descriptions of the work: a group
  of image files, or an index/byte range of a container), reading at most each file's header
  (or, for CSV and TFRecord, scanning its line/record boundaries without keeping anything);
  ``read(unit)``: one unit -> raw records.
Both also yield :class:`Unreadable` items for what cannot be read, which become dead letters.

Raw record (the element contract of every reader): a dict ``id`` str (stable: ``mnist/<index>``
for the built-in sample; for image files the path under the input root, e.g. ``7/00012.png``; for
containers ``<file>/<index>``), ``label`` str (``""`` when unknown), ``image`` bytes (the encoded
image, not yet validated) and ``source`` str (the file, or ``builtin:mnist``). Ids, sources and
error texts are always valid UTF-8: a file name that is not (see :func:`text`) is escaped, e.g.
``caf\\xe9.png``, while the reader keeps opening the file by its real name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, NamedTuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.config import ReaderOptions
from transforms import features
from transforms.errors import error_text

SOURCE = "source"
# A unit holds at most this many records and about this many bytes of raw data.
UNIT_RECORDS = 4096
UNIT_BYTES = 16 << 20


def text(name: str) -> str:
    """``name`` as valid UTF-8 text: the bytes of a non-UTF-8 file name (which Python holds as
    surrogates) are escaped as ``\\xNN``, so the same name always gives the same text."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        try:
            raw = name.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that no file name decodes to
            raw = name.encode("utf-8", "backslashreplace")
        return raw.decode("utf-8", "backslashreplace")


class _UnreadableFields(NamedTuple):
    id: str
    source: str
    reason: str
    error: str


class Unreadable(_UnreadableFields):
    """Something a reader could not turn into a record (becomes a dead letter): ``id``, ``source``,
    ``reason`` (a short stable code) and ``error`` (the text for people), all valid UTF-8."""

    __slots__ = ()

    def __new__(cls, id: str, source: str, reason: str, error: str):
        return super().__new__(cls, text(id), text(source), reason, text(error))


class LayoutError(ValueError):
    """A file of the right format whose layout cannot be used (dead letter ``unsupported_layout``)."""


def relative_id(path: str, root: str) -> str:
    """The record id of a file: its path under ``root`` (escaped by :func:`text`)."""
    return text(path[len(root) :].lstrip("/") if path.startswith(root) else path.rsplit("/", 1)[-1])


def too_large(record_id: str, path: str, size: int | str, max_file_bytes: int) -> Unreadable:
    """The dead letter of a file over ``--max-file-bytes`` (``size``: its bytes, or a description)."""
    return Unreadable(
        record_id,
        path,
        "file_too_large",
        f"{path} holds {size} bytes, over --max-file-bytes {max_file_bytes}; raise --max-file-bytes to read it",
    )


def open_file(path: str, compressed: bool = True):
    """Opens ``path`` on any Beam filesystem, decompressing by extension when ``compressed``."""
    kind = CompressionTypes.AUTO if compressed else CompressionTypes.UNCOMPRESSED
    return FileSystems.open(path, compression_type=kind)


def make_record(record_id: str, label: str, image: bytes, source: str) -> dict:
    """A raw record (see the module docstring)."""
    return {features.ID: record_id, features.LABEL: label, features.IMAGE: image, SOURCE: text(source)}


class Reader:
    """Base: ``plan`` / ``read`` / ``shapes`` for one format; see the module docstring.

    Units have ``count`` (records in the unit), ``head(n)`` (the unit cut to its first ``n``
    records) and ``order`` (a sort key: file, first index), which ``sources.LimitUnits`` uses.
    Container formats' units are :class:`RecordRange` s.
    """

    def __init__(self, root: str, options: ReaderOptions, unit_records: int = UNIT_RECORDS):
        self.root, self.options, self.unit_records = root, options, unit_records

    def setup(self) -> None:
        """Per-worker set-up before the first ``read``."""

    def plan(self, path: str) -> Iterator[Any]:
        raise NotImplementedError

    def plan_all(self, paths: list[str]) -> Iterator[Any]:
        """Plans several files (readers that group files into units override this)."""
        for path in paths:
            yield from self.plan(path)

    def read(self, unit) -> Iterator[dict | Unreadable]:
        raise NotImplementedError

    def shapes(self, path: str) -> dict[tuple[int, int, bool], int] | None:
        """``{(height, width, has_colour): count}`` from the header alone, or None when the images
        must be decoded to know (image files, TFRecord).

        Raises:
          Exception: the file cannot be read or used (the message is the reason the job gives).
        """
        return None

    def file_error(self, path: str, error: Exception) -> Unreadable:
        """The dead letter of a file that cannot be read (``truncated_file`` or ``unreadable_file``)."""
        reason = "truncated_file" if isinstance(error, EOFError) else "unreadable_file"
        return Unreadable(relative_id(path, self.root), path, reason, error_text(error))


@dataclasses.dataclass(frozen=True)
class RecordRange:
    """A unit of work: records ``start`` to ``stop - 1`` of ``path`` (formats add how to find them)."""

    path: str
    start: int
    count: int

    @property
    def stop(self) -> int:
        return self.start + self.count

    @property
    def order(self) -> tuple:
        return (self.path, self.start)

    def head(self, n: int) -> RecordRange:
        return dataclasses.replace(self, count=n)


@dataclasses.dataclass(frozen=True)
class Format:
    """One input format: its ``name`` (``--format``), how it is recognised, and its reader.

    Attributes:
      name: the format's name.
      reader: the :class:`Reader` subclass.
      by_name: ``stem -> bool``: the file name (compression suffix removed) says this format.
      by_head: ``head -> bool``: the file's first (decompressed) bytes say this format.
    """

    name: str
    reader: type[Reader]
    by_name: Any = None
    by_head: Any = None
