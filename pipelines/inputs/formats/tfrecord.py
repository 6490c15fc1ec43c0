"""TFRecord files of ``tf.train.Example`` holding encoded image bytes, read in ranges of records.

The framing (:func:`read_tfrecord`, :func:`skip_tfrecord`) is parsed here with its CRC-32C checks,
so the plan can find record boundaries without TensorFlow and a corrupt record is one dead letter.
Records have ids ``<file>/<index>``; the image is the bytes feature ``image`` (or
``image/encoded``, ``image_raw``; ``--image-key``), the label ``label`` (bytes or int; ``--label-key``).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import BinaryIO

import google_crc32c

from pipelines.config import TFRECORD
from pipelines.inputs.formats.base import Format, Reader, RecordRange, Unreadable, make_record, open_file, relative_id
from transforms import features
from transforms.errors import error_text

DEFAULT_IMAGE_KEYS = ("image", "image/encoded", "image_raw")
DEFAULT_LABEL_KEYS = ("label", "image/class/label", "labels")


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class FramingError(ValueError):
    """A TFRecord file whose record boundaries cannot be found any more (truncated or corrupt)."""


def read_record_length(f: BinaryIO) -> int | None:
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
    length = read_record_length(f)
    if length is None:
        return False
    f.seek(length + 4, 1)
    return True


def read_tfrecord(f: BinaryIO) -> bytes | None:
    """Reads one record's data (None at the end of the file).

    Raises:
      FramingError: corrupt length, truncated file or a data CRC mismatch.
    """
    length = read_record_length(f)
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
class TfRecordUnit(RecordRange):
    """``count`` records of a TFRecord file, the first at byte ``offset``."""

    offset: int


class TfRecordReader(Reader):
    """``tf.train.Example`` records holding encoded image bytes (feature names configurable)."""

    def plan(self, path):
        start = index = 0
        try:
            with open_file(path) as f:
                offset = f.tell()
                while True:
                    if index - start == self.unit_records:
                        yield TfRecordUnit(path, start, index - start, offset=offset)
                        start, offset = index, f.tell()
                    if not skip_tfrecord(f):
                        break
                    index += 1
        except FramingError as error:
            yield Unreadable(
                f"{relative_id(path, self.root)}/{index}",
                path,
                "corrupt_record",
                f"{error}: records from #{index} on cannot be read",
            )
        except Exception as error:
            yield self.file_error(path, error)
            return
        if index > start:
            yield TfRecordUnit(path, start, index - start, offset=offset)

    def read(self, unit: TfRecordUnit):
        from tensorflow.core.example import example_pb2  # only where TFRecords are read

        prefix = relative_id(unit.path, self.root)
        image_keys = (self.options.image_key,) if self.options.image_key else DEFAULT_IMAGE_KEYS
        label_keys = (self.options.label_key,) if self.options.label_key else DEFAULT_LABEL_KEYS
        with open_file(unit.path) as f:
            f.seek(unit.offset)
            for index in range(unit.start, unit.stop):
                record_id = f"{prefix}/{index}"
                try:
                    example = example_pb2.Example.FromString(read_tfrecord(f))
                except Exception as error:  # CRC mismatch, not an Example
                    yield Unreadable(record_id, unit.path, "corrupt_record", error_text(error))
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
                yield make_record(record_id, label, feature[image_key].bytes_list.value[0], unit.path)


def _feature_text(feature) -> str:
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else []
    if not values:
        return features.UNKNOWN_LABEL
    value = values[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(int(value)) if float(value).is_integer() else str(value)


FORMAT = Format(
    TFRECORD,
    TfRecordReader,
    by_name=lambda stem, extension: extension in (".tfrecord", ".tfrecords", ".tfrec"),
    by_head=lambda head: len(head) >= 12 and struct.unpack("<I", head[8:12])[0] == masked_crc32c(head[:8]),
)
