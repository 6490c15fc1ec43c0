"""Validation: keeps the images the transform graph can decode, dead-letters the rest.

Input: raw records (see ``sources``). Main output: the same records, with ``image`` re-encoded as
PNG when Pillow reads the format but TensorFlow does not (TIFF, WebP, ...) or when the mode is one
TensorFlow cannot decode (CMYK, ...). Output ``rejected``: dead-letter records (``dead_letters``)
for empty files (``empty_file``), non-images (``not_an_image``), images over ``max_pixels``
(``too_many_pixels``) and truncated or corrupt images (``corrupt_image``: an image signature, but
Pillow cannot decode it).
"""

from __future__ import annotations

import io

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from PIL import Image

from pipelines.dead_letters import rejection
from pipelines.images import TF_FORMATS, TF_MODES, encode_png, has_image_signature
from pipelines.metrics import count
from pipelines.sources import ReadImages
from transforms import features

REJECTED = "rejected"
DEFAULT_MAX_PIXELS = 64_000_000


class ValidateImageFn(beam.DoFn):
    """Decodes each image once with Pillow to prove it is whole; see the module docstring."""

    def __init__(self, stage: str, max_pixels: int = DEFAULT_MAX_PIXELS):
        self._stage = stage
        self._max_pixels = max_pixels
        self._valid = Metrics.counter("hourglass", f"{stage}_valid_images")
        self._reencoded = Metrics.counter("hourglass", f"{stage}_reencoded_images")

    def process(self, record):
        data = record[features.IMAGE]
        if not data:
            yield self._reject(record, "empty_file", "the file has zero bytes")
            return
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as error:
            yield self._reject(record, "too_many_pixels", str(error))
            return
        except Exception as error:  # Pillow raises several types for "not an image".
            reason = "corrupt_image" if has_image_signature(data) else "not_an_image"
            yield self._reject(record, reason, f"{type(error).__name__}: {error}")
            return
        pixels = image.width * image.height
        if pixels > self._max_pixels:
            yield self._reject(
                record,
                "too_many_pixels",
                f"{image.width}x{image.height} = {pixels} pixels is over --max-pixels {self._max_pixels}",
            )
            return
        try:
            image.load()
        except Exception as error:  # truncated data, bad CRCs, decoder errors.
            yield self._reject(record, "corrupt_image", f"{type(error).__name__}: {error}")
            return
        self._valid.inc()
        if image.format in TF_FORMATS and image.mode in TF_MODES:
            yield record
            return
        self._reencoded.inc()
        converted = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        yield {**record, features.IMAGE: encode_png(np.asarray(converted))}

    def _reject(self, record, reason, error):
        Metrics.counter("hourglass", f"{self._stage}_rejected_{reason}").inc()
        return beam.pvalue.TaggedOutput(REJECTED, rejection(record, self._stage, reason, error))


class ValidateImages(beam.PTransform):
    """raw records -> ``{"valid": records, "rejected": dead letters}``."""

    def __init__(self, stage: str, max_pixels: int = DEFAULT_MAX_PIXELS):
        super().__init__()
        self._fn = ValidateImageFn(stage, max_pixels)

    def expand(self, records):
        outputs = records | "Validate" >> beam.ParDo(self._fn).with_outputs(REJECTED, main="valid")
        return {"valid": outputs.valid, "rejected": outputs[REJECTED]}


class ReadValidImages(beam.PTransform):
    """Reads ``source``, counts ``records_read`` and validates: ``{"valid", "rejected"}``."""

    def __init__(self, source: str, stage: str, max_pixels: int = DEFAULT_MAX_PIXELS, limit: int | None = None):
        super().__init__()
        self._source, self._stage, self._max_pixels, self._limit = source, stage, max_pixels, limit

    def expand(self, pbegin):
        return (
            pbegin
            | "ReadImages" >> ReadImages(self._source, self._limit)
            | "CountRead" >> count("records_read")
            | "Validate" >> ValidateImages(self._stage, self._max_pixels)
        )
