"""Validation: keeps the images the transform graph can decode, dead-letters the rest.

Input: raw records (see ``inputs.formats.base``). Main output: the same records, with ``image`` re-encoded
losslessly as PNG when it is not a PNG or a grey/RGB JPEG (BMP, GIF's first frame, TIFF, WebP, CMYK
JPEG, ...; see ``images.to_tf_readable``). Output ``rejected``: dead-letter records
(``inputs.dead_letters``) for empty files (``empty_file``), non-images (``not_an_image``), images over
``max_pixels`` (``too_many_pixels``), truncated or corrupt images (``corrupt_image``: an image
signature, but the data does not decode) and modes with no 8/16-bit equivalent
(``unsupported_mode``), plus everything the readers could not read (see ``inputs.formats``).
Plain PNGs are proven whole by ``images.check_png`` (chunk CRCs, exact inflated size); other images
by decoding them with Pillow.
"""

from __future__ import annotations

import io

import apache_beam as beam
from apache_beam.metrics import Metrics
from PIL import Image

from pipelines.config import DEFAULT_MAX_PIXELS
from pipelines.counters import NAMESPACE, count
from pipelines.inputs.dead_letters import CountRejectedFn, from_unreadable, rejection
from pipelines.inputs.images import PNG_SIGNATURE, PixelError, check_png, has_image_signature, to_tf_readable
from pipelines.inputs.sources import ReadImages, ReadUnits, Source
from transforms import features
from transforms.layout import RECORDS_READ

REJECTED = "rejected"


class ValidateImageFn(beam.DoFn):
    """Proves each image whole (plain PNGs by a fast structural check, everything else by decoding
    it with Pillow); see the module docstring. With ``counted``, counts ``records_read`` and
    ``<stage>_valid_images``."""

    def __init__(self, stage: str, max_pixels: int = DEFAULT_MAX_PIXELS, counted: bool = True):
        self._stage = stage
        self._max_pixels = max_pixels
        self._counted = counted
        self._read = Metrics.counter(NAMESPACE, RECORDS_READ)
        self._valid = Metrics.counter(NAMESPACE, f"{stage}_valid_images")

    def process(self, record):
        if self._counted:
            self._read.inc()
        data = record[features.IMAGE]
        try:
            readable = self._check(data)
        except PixelError as error:
            yield beam.pvalue.TaggedOutput(REJECTED, rejection(record, self._stage, error.reason, str(error)))
            return
        if self._counted:
            self._valid.inc()
        yield record if readable is data else {**record, features.IMAGE: readable}

    def _check(self, data: bytes) -> bytes:
        """The bytes to pass on (``data`` or a PNG re-encoding). Raises PixelError."""
        if not data:
            raise PixelError("empty_file", "the file has zero bytes")
        if data.startswith(PNG_SIGNATURE) and check_png(data, self._max_pixels) is not None:
            return data
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as error:
            raise PixelError("too_many_pixels", str(error)) from error
        except Exception as error:  # Pillow raises several types for "not an image".
            reason = "corrupt_image" if has_image_signature(data) else "not_an_image"
            raise PixelError(reason, f"{type(error).__name__}: {error}") from error
        pixels = image.width * image.height
        if pixels > self._max_pixels:
            raise PixelError(
                "too_many_pixels",
                f"{image.width}x{image.height} = {pixels} pixels is over --max-pixels {self._max_pixels}",
            )
        try:
            image.load()
        except Exception as error:  # truncated data, bad CRCs, decoder errors.
            raise PixelError("corrupt_image", f"{type(error).__name__}: {error}") from error
        return to_tf_readable(image, data)


class ValidateImages(beam.PTransform):
    """raw records -> ``{"valid": records, "rejected": dead letters}``."""

    def __init__(self, stage: str, max_pixels: int = DEFAULT_MAX_PIXELS, counted: bool = True):
        super().__init__()
        self._fn = ValidateImageFn(stage, max_pixels, counted)

    def expand(self, records):
        outputs = records | "Validate" >> beam.ParDo(self._fn).with_outputs(REJECTED, main="valid")
        return {"valid": outputs.valid, "rejected": outputs[REJECTED]}


def validate_read(read: dict, stage: str, max_pixels: int, counted: bool = True) -> dict:
    """Reader output ``{"records", "rejected"}`` -> validated ``{"valid", "rejected"}``, counted or not."""
    unreadable = read["rejected"]
    if counted:
        unreadable = unreadable | "CountUnreadable" >> count(RECORDS_READ)
    checked = read["records"] | "Validate" >> ValidateImages(stage, max_pixels, counted)
    dead = unreadable | "DeadLetters" >> beam.Map(from_unreadable, stage)
    rejected = (dead, checked["rejected"]) | "FlattenRejected" >> beam.Flatten()
    if counted:
        rejected = rejected | "CountRejected" >> beam.ParDo(CountRejectedFn())
    return {"valid": checked["valid"], "rejected": rejected}


class ReadValidImages(beam.PTransform):
    """Reads ``source``, counts ``records_read`` and the rejects by reason, and validates:
    pbegin -> ``{"valid", "rejected", "units"}`` (``units``: see :class:`RereadValidImages`)."""

    def __init__(self, source: Source, stage: str, max_pixels: int = DEFAULT_MAX_PIXELS):
        super().__init__()
        self._source, self._stage, self._max_pixels = source, stage, max_pixels

    def expand(self, pbegin):
        read = pbegin | "ReadImages" >> ReadImages(self._source)
        return {**validate_read(read, self._stage, self._max_pixels, counted=True), "units": read["units"]}


class RereadValidImages(beam.PTransform):
    """The units of a :class:`ReadValidImages` -> the same ``{"valid", "rejected"}`` again, uncounted.

    A second pass that streams from the files instead of holding the first pass's records.
    """

    def __init__(self, source: Source, stage: str, max_pixels: int = DEFAULT_MAX_PIXELS):
        super().__init__()
        self._source, self._stage, self._max_pixels = source, stage, max_pixels

    def expand(self, units):
        read = units | "ReadUnits" >> ReadUnits(self._source, counted=False)
        return validate_read(read, self._stage, self._max_pixels, counted=False)
