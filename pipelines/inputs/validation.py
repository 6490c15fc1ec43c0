"""Validation: keeps the images the transform graph can decode, dead-letters the rest.

Input: raw records (see ``inputs.formats.base``). Main output: the same records, with ``image`` re-encoded
losslessly as PNG when TensorFlow's decoder cannot read it as it is (BMP, GIF's first frame, TIFF,
WebP, CMYK JPEG, ...; see ``images.to_tf_readable``). Output ``rejected``: dead-letter records
(``inputs.dead_letters``) for empty files (``empty_file``), non-images (``not_an_image``), images over
the limits (``too_many_pixels``: ``max_pixels``, or ``max_decoded_bytes`` of decoded pixels), truncated
or corrupt images (``corrupt_image``: an image signature, but the data does not decode) and modes
with no 8/16-bit equivalent (``unsupported_mode``), plus everything the readers could not read (see
``inputs.formats``).

Header checks: a plain PNG (``images.png_header``) is read from its chunks, anything else is opened
by Pillow. Each image is decoded once here, after the header checks bound its size: images that pass as they
are by the decoder that counts, ``transforms.image_ops`` (the op of the transform graph and of the
exported model, so a file it refuses is one ``corrupt_image`` dead letter with its message, never a
failed batch later); the others by Pillow, which re-encodes them. Records are validated in batches
(:class:`ValidateImagesFn`): one call of the compiled decoder proves a whole batch, and only a batch
holding a file it refuses is decoded again image by image, to find that file and its message. One
call decodes at most ``max_decoded_bytes`` of pixels (one image at the limit), whatever the batch.
With ``decode=False`` the images that pass as they are get the header checks only: for a consumer
that decodes them anyway with the same op, in batches, and dead-letters a refusal itself with
:func:`check_decodes`' reason and message (infer: the model decodes in its graph), With
``known`` (the first pass's verdicts: the ids it rejected and the ids it re-encoded), a second pass
over the same records checks nothing it has proved (:class:`RereadValidImages`): it drops the
rejected records, re-encodes the re-encoded ones again and passes the others on untouched, so each
image is opened by Pillow and decoded by TensorFlow once across both passes.
"""

from __future__ import annotations

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics import Metrics
from PIL import Image

from pipelines.config import ImageLimits
from pipelines.counters import NAMESPACE, count
from pipelines.inputs.dead_letters import CountRejectedFn, from_unreadable, rejection
from pipelines.inputs.images import (
    PixelError,
    decoded_bytes,
    has_image_signature,
    open_image,
    passes_as_is,
    png_header,
    to_tf_readable,
)
from pipelines.inputs.sources import BATCH_WEIGHT, ReadImages, ReadUnits, Source, record_weight
from transforms import features
from transforms.errors import error_text
from transforms.image_ops import decoded_shapes, decoder_message
from transforms.layout import RECORDS_READ

REJECTED = "rejected"
CONVERTED = "converted"
DEFAULT_LIMITS = ImageLimits()
_NOT_AN_IMAGE = "not a PNG, JPEG, GIF, BMP, TIFF or WebP image (no decoder recognises its first bytes)"
_UNREADABLE_HEADER = "starts like an image but its header does not decode (truncated or damaged)"


class ValidateImagesFn(beam.DoFn):
    """A batch (list) of raw records -> each valid record (``batched``: one list of them, when not
    empty), dead letters under ``rejected`` and the ids of the valid records it re-encoded under
    ``converted``: the header checks against the limits, then one decode for a batch of at most
    ``sources.BATCH_WEIGHT`` (see the module docstring). With ``counted``, counts ``records_read`` and
    ``<stage>_valid_images``; with ``decode=False``, header checks only; with the side inputs
    ``rejected_ids`` and ``converted_ids`` (sets of a first pass's ids), a second pass."""

    def __init__(
        self,
        stage: str,
        limits: ImageLimits = DEFAULT_LIMITS,
        counted: bool = True,
        decode: bool = True,
        batched: bool = False,
    ):
        self._stage = stage
        self._limits = limits
        self._counted = counted
        self._decode = decode
        self.batched = batched
        self._read = Metrics.counter(NAMESPACE, RECORDS_READ)
        self._valid = Metrics.counter(NAMESPACE, f"{stage}_valid_images")

    def process(
        self, records: list[dict], rejected_ids: frozenset = frozenset(), converted_ids: frozenset | None = None
    ):
        if self._counted:
            self._read.inc(len(records))
        checked, to_decode = [], []  # (record, bytes to pass on or the PixelError); (entry, decoded bytes)
        for record in records:
            if record[features.ID] in rejected_ids:
                continue  # a second pass: the first one dead-lettered it
            if converted_ids is not None and record[features.ID] not in converted_ids:
                checked.append([record, record[features.IMAGE]])  # a second pass: proved as it is
                continue
            try:
                readable, size = self._check(record[features.IMAGE])
            except PixelError as error:
                readable = error
            checked.append([record, readable])
            if self._decode and readable is record[features.IMAGE]:
                to_decode.append((checked[-1], size))
        for chunk in _decode_chunks(to_decode, self._limits.max_decoded_bytes):
            for entry, error in zip(chunk, _decode_errors([e[1] for e in chunk]), strict=True):
                if error is not None:
                    entry[1] = error
        valid = []
        for record, readable in checked:
            if isinstance(readable, PixelError):
                yield beam.pvalue.TaggedOutput(REJECTED, rejection(record, self._stage, readable.reason, str(readable)))
            elif readable is record[features.IMAGE]:
                valid.append(record)
            else:
                valid.append({**record, features.IMAGE: readable})
                yield beam.pvalue.TaggedOutput(CONVERTED, record[features.ID])
        if self._counted:
            self._valid.inc(len(valid))
        if not self.batched:
            yield from valid
        elif valid:
            yield valid

    def _check(self, data: bytes) -> tuple[bytes, int]:
        """The bytes to pass on: ``data`` itself, still to be decoded by TensorFlow's decoder, or a
        PNG re-encoding of what Pillow decoded; and the bytes its pixels decode to. A plain PNG
        within the limits is checked from its chunks without Pillow (``images.png_header``).
        Raises PixelError."""
        if not data:
            raise PixelError("empty_file", "the file has zero bytes")
        plain = png_header(data)
        if plain is not None and plain[0] <= self._limits.max_pixels and plain[1] <= self._limits.max_decoded_bytes:
            return data, plain[1]  # a plain PNG within the limits: what Pillow would say (the rest goes to Pillow)
        try:
            image = open_image(data)
        except Image.DecompressionBombError as error:
            raise PixelError("too_many_pixels", str(error)) from error
        except Image.UnidentifiedImageError as error:  # its message holds the repr of the BytesIO
            if has_image_signature(data):
                raise PixelError("corrupt_image", _UNREADABLE_HEADER) from error
            raise PixelError("not_an_image", _NOT_AN_IMAGE) from error
        except Exception as error:  # Pillow raises several types for "not an image".
            reason = "corrupt_image" if has_image_signature(data) else "not_an_image"
            raise PixelError(reason, error_text(error)) from error
        size = self._check_size(image)
        if passes_as_is(image):
            return data, size
        try:
            image.load()
        except Exception as error:  # truncated data, bad CRCs, decoder errors.
            raise PixelError("corrupt_image", error_text(error)) from error
        return to_tf_readable(image, data), size

    def _check_size(self, image: Image.Image) -> int:
        """The bytes the image decodes to; raises PixelError ``too_many_pixels`` when the header
        declares more than the limits allow."""
        max_pixels, max_bytes = self._limits
        pixels = image.width * image.height
        if pixels > max_pixels:
            raise PixelError(
                "too_many_pixels", f"{image.width}x{image.height} = {pixels} pixels is over --max-pixels {max_pixels}"
            )
        size = decoded_bytes(image)
        if size > max_bytes:
            raise PixelError(
                "too_many_pixels",
                f"{image.width}x{image.height} {image.mode} decodes to {size} bytes, over --max-decoded-bytes "
                f"{max_bytes}; shrink the image or raise --max-decoded-bytes",
            )
        return size


class ValidateImages(beam.PTransform):
    """raw records -> ``{"valid": records, "rejected": dead letters, "converted": ids}`` by ``fn``;
    ``known`` (optional): a first pass's ``(rejected ids, converted ids)``, singleton PCollections of
    sets (see :class:`ValidateImagesFn`). A ``batched`` ``fn`` takes lists of records (the batches of
    a batched read) and gives lists of valid records."""

    def __init__(self, fn: ValidateImagesFn, known: tuple | None = None):
        super().__init__()
        self._fn = fn
        self._side = tuple(beam.pvalue.AsSingleton(ids) for ids in known or ())

    def expand(self, records):
        if not self._fn.batched:
            records = records | "Batch" >> beam.BatchElements(
                min_batch_size=1, max_batch_size=BATCH_WEIGHT, element_size_fn=record_weight
            )
        outputs = records | "Validate" >> beam.ParDo(self._fn, *self._side).with_outputs(
            REJECTED, CONVERTED, main="valid"
        )
        return {"valid": outputs.valid, "rejected": outputs[REJECTED], CONVERTED: outputs[CONVERTED]}


def _decode_chunks(entries: list[tuple[list, int]], budget: int):
    """``(entry, decoded bytes)`` pairs -> lists of entries whose decoded pixels add up to at most
    ``budget`` (an entry alone may reach it), so one decode call never holds more than one image at
    the limit: a batch of small files can decode to gigabytes."""
    chunk, total = [], 0
    for entry, size in entries:
        if chunk and total + size > budget:
            yield chunk
            chunk, total = [], 0
        chunk.append(entry)
        total += size
    if chunk:
        yield chunk


def _decode_errors(images: list[bytes]) -> list[PixelError | None]:
    """For each image, None when TensorFlow's decoder reads it, else its ``corrupt_image`` error."""
    if not images:
        return []
    try:
        decoded_shapes(tf.constant(images))
        return [None] * len(images)
    except tf.errors.InvalidArgumentError:  # rare: find the culprits one by one
        return [_decode_error(data) for data in images]


def _decode_error(data: bytes) -> PixelError | None:
    try:
        check_decodes(data)
    except PixelError as error:
        return error
    return None


def check_decodes(data: bytes) -> None:
    """Decodes ``data`` with the decoder that counts.

    Raises:
      PixelError: ``corrupt_image``, with the decoder's message.
    """
    try:
        decoded_shapes(tf.constant([data]))
    except tf.errors.InvalidArgumentError as error:
        raise PixelError("corrupt_image", f"TensorFlow's decoder: {decoder_message(error)}") from error


def count_items(pcolls, label: str, batched: tuple[bool, ...] = ()):
    """How many elements the PCollections hold together: a singleton PCollection of an int
    (``batched[i]``: the i-th PCollection holds lists, which count by their length)."""
    sizes = [
        pcoll | f"{label}One{i}" >> beam.Map(len if i < len(batched) and batched[i] else _one)
        for i, pcoll in enumerate(pcolls)
    ]
    return sizes | f"{label}Flatten" >> beam.Flatten() | f"{label}Sum" >> beam.CombineGlobally(sum)


def _one(_) -> int:
    return 1


def validate_read(
    read: dict,
    stage: str,
    limits: ImageLimits,
    counted: bool = True,
    decode: bool = True,
    known: tuple | None = None,
    batched: bool = False,
) -> dict:
    """Reader output ``{"records", "rejected"}`` -> validated ``{"valid", "rejected", "converted"}``,
    counted or not (``decode``, ``batched``: see :class:`ValidateImagesFn`; ``known``: :class:`ValidateImages`)."""
    unreadable = read["rejected"]
    if counted:
        unreadable = unreadable | "CountUnreadable" >> count(RECORDS_READ)
    fn = ValidateImagesFn(stage, limits, counted, decode, batched)
    checked = read["records"] | "Validate" >> ValidateImages(fn, known)
    dead = unreadable | "DeadLetters" >> beam.Map(from_unreadable, stage)
    rejected = (dead, checked["rejected"]) | "FlattenRejected" >> beam.Flatten()
    if counted:
        rejected = rejected | "CountRejected" >> beam.ParDo(CountRejectedFn())
    return {"valid": checked["valid"], "rejected": rejected, CONVERTED: checked[CONVERTED]}


class ReadValidImages(beam.PTransform):
    """Reads ``source``, counts ``records_read`` and the rejects by reason, and validates:
    pbegin -> ``{"valid", "rejected", "converted", "units", "read", "skipped"}`` (``units``: see
    :class:`RereadValidImages`; ``read``: a singleton, the records and unreadable items out of the
    reader, counted apart from what is written and rejected; ``skipped``: reasons of files skipped).
    With ``batched``, ``valid`` holds lists of valid records (one per batch the reader made)."""

    def __init__(self, source: Source, stage: str, limits: ImageLimits = DEFAULT_LIMITS, batched: bool = False):
        super().__init__()
        self._source, self._stage, self._limits, self._batched = source, stage, limits, batched

    def expand(self, pbegin):
        read = pbegin | "ReadImages" >> ReadImages(self._source, self._batched)
        return {
            **validate_read(read, self._stage, self._limits, counted=True, batched=self._batched),
            "units": read["units"],
            "read": count_items((read["records"], read["rejected"]), "Read", (self._batched, False)),
            "skipped": read["skipped"],
        }


class RereadValidImages(beam.PTransform):
    """A :class:`ReadValidImages`' output -> its valid records again, uncounted: ``{"valid", "rejected",
    "converted"}``.

    A second pass that streams from the files instead of holding the first pass's records. It trusts
    the first pass's verdicts (see :class:`ValidateImagesFn`): it drops the records that pass
    rejected and checks and re-encodes only the ones it re-encoded. ``batched``: as
    :class:`ReadValidImages`.
    """

    def __init__(self, source: Source, stage: str, limits: ImageLimits = DEFAULT_LIMITS, batched: bool = False):
        super().__init__()
        self._source, self._stage, self._limits, self._batched = source, stage, limits, batched

    def expand(self, first: dict):
        rejected = first[REJECTED] | "RejectedIds" >> beam.Map(lambda r: r[features.ID])
        known = tuple(
            ids
            | f"{name}IdSet" >> beam.CombineGlobally(beam.combiners.ToSetCombineFn())
            | f"{name}Frozen" >> beam.Map(frozenset)
            for name, ids in (("Rejected", rejected), ("Converted", first[CONVERTED]))
        )
        # The id sets as side inputs of a step before the reader: without them there, Beam fuses this
        # reader into the first pass (both read the same units) and holds every record it reads, image
        # bytes and all, until the sets are ready: memory in the input's size. So only the units wait.
        units = first["units"] | "AfterFirstPass" >> beam.Map(_unit, *(beam.pvalue.AsSingleton(ids) for ids in known))
        read = units | "ReadUnits" >> ReadUnits(self._source, counted=False, batched=self._batched)
        return validate_read(
            read, self._stage, self._limits, counted=False, decode=False, known=known, batched=self._batched
        )


def _unit(unit, *_first_pass_ids):
    return unit
