"""Arrays: IDX (``*-images-idx3-ubyte[.gz]``, as MNIST ships them), NPY and NPZ, read by index ranges.

:func:`read_idx_header` and :func:`read_npy_header` return an :class:`ArrayHeader` (dtype, shape,
data offset) so that any index range is read by seeking to ``offset + index * item_bytes``, never
by loading the array. Units are index ranges of the image array (:class:`ArrayUnit`); records have
ids ``<file>/<index>`` and lossless PNG images (``images.array_to_png``). Labels come from a
sibling file (IDX: ``*-labels-idx1-ubyte``; NPY: ``y.npy`` beside ``x.npy``, ``*_labels.npy``, or
``--labels FILE``) or the NPZ key ``y``/``labels`` (``--image-key``, ``--label-key``).

A header is not trusted with the work it asks for: at plan time the records it declares are compared
with the bytes the file holds (:meth:`ArrayRef.whole_count`), units cover only the whole records
present, and a file that cannot hold what it declares is one ``truncated_file`` dead letter (id: the
file) beside its intact records. A range found short at read time (a gzip stream cut inside) keeps
its whole records too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import struct
import zipfile
from typing import BinaryIO

import numpy as np
from apache_beam.io.filesystems import FileSystems

from pipelines.config import IDX, NPY, NPZ
from pipelines.inputs.formats.base import (
    UNIT_BYTES,
    Format,
    LayoutError,
    Reader,
    RecordRange,
    Unreadable,
    make_record,
    open_file,
    relative_id,
)
from pipelines.inputs.images import PixelError, array_to_png
from transforms import features

log = logging.getLogger(__name__)

_IDX_NAME = re.compile(r"idx[1-4]-ubyte")
DEFAULT_IMAGE_KEYS = ("x", "images")
DEFAULT_LABEL_KEYS = ("y", "labels")


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
        """The whole elements of ``[start, stop)`` that the file holds (fewer when it ends early),
        read by seeking (``f`` is positioned anywhere)."""
        f.seek(self.offset + start * self.item_bytes)
        try:
            data = f.read((stop - start) * self.item_bytes)
        except EOFError:  # a compressed stream cut inside: keep the elements before the cut
            f.seek(self.offset + start * self.item_bytes)
            data = b""
            with contextlib.suppress(EOFError):
                while len(data) < (stop - start) * self.item_bytes:
                    data += f.read(self.item_bytes)
        whole = len(data) // self.item_bytes if self.item_bytes else stop - start
        return np.frombuffer(data[: whole * self.item_bytes], self.dtype).reshape((whole, *self.shape[1:]))


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


# Deflate expands at most about 1032:1, which bounds what a gzip file can hold.
_MAX_DEFLATE_RATIO = 1032


def stored_bytes(path: str) -> int | None:
    """The (decompressed) bytes of a file, from its size and, for gzip, its trailer; None when unknown.

    A gzip trailer holds the size modulo 2**32: the largest such size the compressed bytes can
    inflate to is an upper bound, exact below 4 GiB.
    """
    size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    if not path.endswith(".gz"):
        return size
    if size < 18:  # shorter than a gzip header and trailer
        return 0
    with open_file(path, compressed=False) as f:
        f.seek(size - 4)
        (modulo,) = struct.unpack("<I", f.read(4))
    most = size * _MAX_DEFLATE_RATIO
    return modulo + max(0, (most - modulo) // (1 << 32)) * (1 << 32)


@dataclasses.dataclass(frozen=True)
class ArrayRef:
    """One on-disk array: a file (IDX or NPY) or an NPZ ``member``, its parsed header and ``size``,
    the bytes the file or member holds (header included; None when unknown)."""

    path: str
    header: ArrayHeader
    member: str | None = None
    size: int | None = None

    @property
    def name(self) -> str:
        return self.path + (f"/{self.member}" if self.member else "")

    def whole_count(self) -> int:
        """How many of the declared elements the bytes hold whole (the declared count when unknown)."""
        header = self.header
        if self.size is None or not header.item_bytes:
            return header.count
        return min(header.count, max(0, self.size - header.offset) // header.item_bytes)

    @contextlib.contextmanager
    def open(self):
        with open_file(self.path) as f:
            if self.member is None:
                yield f
            else:
                with zipfile.ZipFile(f) as archive, archive.open(self.member) as member:
                    yield member

    def read(self, start: int, stop: int) -> np.ndarray:
        """The whole elements of ``[start, stop)`` present (see :meth:`ArrayHeader.read`)."""
        with self.open() as f:
            return self.header.read(f, start, stop)


def truncation(images: ArrayRef, labels: ArrayRef | None, root: str) -> Unreadable | None:
    """The one dead letter of a file whose images (or labels) are not all there, else None."""
    for ref in (images, labels):
        if ref is not None and ref.whole_count() < ref.header.count:
            header = ref.header
            return Unreadable(
                relative_id(images.path, root),
                images.path,
                "truncated_file",
                f"{ref.name} declares {header.count} elements of shape {header.shape[1:]} "
                f"({header.count * header.item_bytes} bytes) but holds {max(0, ref.size - header.offset)}: "
                f"only its first {ref.whole_count()} are whole and were read; the file is cut short or its "
                "header is wrong",
            )
    return None


@dataclasses.dataclass(frozen=True)
class ArrayUnit(RecordRange):
    """An index range of the image array ``images`` (``path`` is its file)."""

    images: ArrayRef
    labels: ArrayRef | None
    label_error: str | None  # set when the labels cannot be paired with the images


def _check_image_array(header: ArrayHeader) -> None:
    shape = header.shape
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 2, 3, 4)):
        raise LayoutError(f"images must be (N, H, W) or (N, H, W, C) with C in 1..4 (channels last), got shape {shape}")
    if header.dtype.kind not in "biuf":
        raise LayoutError(f"images must hold numbers (uint8, uint16, float, ...), got dtype {header.dtype}")


def _labels_to_text(values: np.ndarray) -> list[str]:
    if values.dtype.kind in "SU":
        return [v.decode("utf-8", "replace").strip() if isinstance(v, bytes) else str(v).strip() for v in values]
    if values.dtype.kind == "f":
        return [str(int(v)) if float(v).is_integer() else str(v) for v in values]
    return [str(int(v)) for v in values]


class ArrayReader(Reader):
    """Shared by IDX, NPY and NPZ: units are index ranges of the image array."""

    def _arrays(self, path: str) -> tuple[ArrayRef | None, ArrayRef | None]:
        """The image array of ``path`` (None when it holds labels only) and its labels (or None)."""
        raise NotImplementedError

    def plan(self, path):
        try:
            images, labels = self._arrays(path)
            if images is None:
                return
            _check_image_array(images.header)
        except LayoutError as error:
            yield Unreadable(relative_id(path, self.root), path, "unsupported_layout", str(error))
            return
        except Exception as error:
            yield self.file_error(path, error)
            return
        label_error = None
        if labels is not None and (
            labels.header.count != images.header.count or int(np.prod(labels.header.shape[1:], dtype=np.int64)) != 1
        ):
            label_error = (
                f"{labels.name} holds labels of shape "
                f"{labels.header.shape} for {images.header.count} images: one label per image is needed; "
                "fix the labels (or pass --labels FILE)"
            )
        paired = (images,) if labels is None or label_error else (images, labels)
        present = min(ref.whole_count() for ref in paired)
        truncated = truncation(images, labels, self.root)
        if truncated is not None:
            yield truncated
        step = max(1, min(self.unit_records, UNIT_BYTES // max(1, images.header.item_bytes)))
        for start in range(0, present, step):
            count = min(step, present - start)
            yield ArrayUnit(images.path, start, count, images=images, labels=labels, label_error=label_error)

    def read(self, unit: ArrayUnit):
        prefix = relative_id(unit.path, self.root)
        ids = [f"{prefix}/{index}" for index in range(unit.start, unit.stop)]
        if unit.label_error:
            for record_id in ids:
                yield Unreadable(record_id, unit.path, "label_count_mismatch", unit.label_error)
            return
        try:
            pixels = unit.images.read(unit.start, unit.stop)
            labels = _labels_to_text(unit.labels.read(unit.start, unit.stop).reshape(-1)) if unit.labels else None
        except Exception as error:
            failed = self.file_error(unit.path, error)
            for record_id in ids:
                yield failed._replace(id=record_id)
            return
        whole = min(len(pixels), len(labels) if labels is not None else len(pixels))
        if whole < unit.count:  # the file ended early after all (a gzip stream cut inside)
            first, last = unit.start + whole, unit.stop - 1
            missing = f"{prefix}/{first}" + (f"..{last}" if last > first else "")
            yield Unreadable(missing, unit.path, "truncated_file", f"the file ends before record {first} of {last + 1}")
        for offset, record_id in enumerate(ids[:whole]):
            try:
                image = array_to_png(pixels[offset], self.options.pixel_max)
            except PixelError as error:
                yield Unreadable(record_id, unit.path, error.reason, str(error))
                continue
            label = labels[offset] if labels else features.UNKNOWN_LABEL
            yield make_record(record_id, label, image, unit.path)

    def shapes(self, path):
        images, _ = self._arrays(path)
        if images is None:
            return {}
        _check_image_array(images.header)
        shape = images.header.shape
        colour = len(shape) == 4 and shape[3] >= 3
        return {(shape[1], shape[2], colour): images.whole_count()}


def _sibling_labels(path: str, pairs: tuple[tuple[str, str], ...]) -> str | None:
    """The first existing file named like ``path`` with one of the (pattern, replacement) pairs."""
    directory, name = path.rsplit("/", 1) if "/" in path else ("", path)
    for pattern, replacement in pairs:
        candidate = re.sub(pattern, replacement, name)
        if candidate != name:
            full = f"{directory}/{candidate}" if directory else candidate
            if FileSystems.exists(full):
                return full
    return None


class _PairedArrayReader(ArrayReader):
    """Files of one array each (IDX, NPY): 1-D arrays are labels, read with the images they pair
    with by name (``_LABEL_NAMES``: (pattern, replacement) pairs) or ``--labels FILE``."""

    _LABEL_NAMES: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def _header(f) -> ArrayHeader:
        raise NotImplementedError

    def _arrays(self, path):
        with open_file(path) as f:
            header = self._header(f)
        if len(header.shape) == 1:  # a labels array: read with its images
            return None, None
        images = ArrayRef(path, header, size=stored_bytes(path))
        labels_path = self.options.labels or _sibling_labels(path, self._LABEL_NAMES)
        if labels_path is None:
            log.warning("no labels file found for %s: its records are unlabelled", path)
            return images, None
        with open_file(labels_path) as f:
            return images, ArrayRef(labels_path, self._header(f), size=stored_bytes(labels_path))


class IdxReader(_PairedArrayReader):
    """``*-images-idx3-ubyte[.gz]`` with the matching ``*-labels-idx1-ubyte[.gz]``."""

    _LABEL_NAMES = ((r"images(.*)idx3", r"labels\1idx1"), (r"idx3", "idx1"))
    _header = staticmethod(read_idx_header)


class NpyReader(_PairedArrayReader):
    """``.npy`` arrays, paired with a labels array such as ``y.npy`` for ``x.npy``."""

    _LABEL_NAMES = (
        (r"images", "labels"),
        (r"^[xX](?=[._-])", "y"),
        (r"\.npy$", "_labels.npy"),
        (r"\.npy$", "-labels.npy"),
    )
    _header = staticmethod(read_npy_header)


class NpzReader(ArrayReader):
    """``.npz`` archives: the image and label arrays by key (defaults ``x``/``images``, ``y``/``labels``)."""

    def _arrays(self, path):
        with open_file(path) as f, zipfile.ZipFile(f) as archive:
            names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
            image_key = _pick_key(self.options.image_key, DEFAULT_IMAGE_KEYS, names, "image")
            label_key = _pick_key(self.options.label_key, DEFAULT_LABEL_KEYS, names, "label", True)
            refs = []
            for key in (image_key, label_key):
                if key is None:
                    refs.append(None)
                    continue
                with archive.open(key + ".npy") as member:
                    header = read_npy_header(member)
                refs.append(ArrayRef(path, header, key + ".npy", archive.getinfo(key + ".npy").file_size))
        return refs[0], refs[1]


def _pick_key(option: str | None, defaults: tuple[str, ...], names, what: str, optional: bool = False) -> str | None:
    if option == "none" and optional:
        return None
    if option is not None:
        if option not in names:
            raise LayoutError(f"no {what} array {option!r}; arrays: {', '.join(names)}")
        return option
    found = next((n for n in defaults if n in names), None)
    if found is None and not optional:
        raise LayoutError(
            f"no {what} array named {' or '.join(defaults)}; arrays: {', '.join(names)}; pass --{what}-key NAME"
        )
    return found


FORMAT_IDX = Format(
    IDX,
    IdxReader,
    by_name=lambda stem, extension: bool(_IDX_NAME.search(stem)),
    by_head=lambda head: len(head) >= 4 and head[:2] == b"\x00\x00" and head[2] in _IDX_DTYPES and 1 <= head[3] <= 4,
)
FORMAT_NPY = Format(
    NPY,
    NpyReader,
    by_name=lambda stem, extension: extension == ".npy",
    by_head=lambda head: head.startswith(b"\x93NUMPY"),
)
FORMAT_NPZ = Format(
    NPZ,
    NpzReader,
    by_name=lambda stem, extension: extension == ".npz",
    by_head=lambda head: head.startswith(b"PK\x03\x04"),
)
