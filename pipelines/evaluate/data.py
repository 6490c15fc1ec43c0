"""The images an evaluation looks at, in memory: from a preprocess output or read from a source.

Element contract: :class:`Examples` holds N records as parallel fields: ``ids`` and ``labels``
(str, ``""`` when unknown), ``pixels`` float32 ``(N, H, W, C)`` in [0, 1] (the reconstruction
target, as the model sees the image) and ``images`` (N encoded images, what the model takes).

Two ways in, one contract out:
- :func:`read_split` reads a split of the preprocess TFRecords. They hold transformed pixels, not
  the original bytes, so each image is re-encoded as an 8-bit PNG of its pixels for the model. At
  the model's size that is lossless for 8-bit sources; pixels that preprocessing resized are
  rounded to the nearest 1/255 (under 0.002), well below any reconstruction error of interest.
- :func:`read_images` reads a source (``builtin:mnist`` or a folder) with the same readers and
  validation as the other jobs (a small Beam pipeline; rejects go to ``OUTPUT/rejected/``), and
  takes the pixels from the model's own embedded transform, so resizing and scaling match training.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from models.input_pipeline import load_transform_output, split_files
from pipelines import counters
from pipelines.config import EvaluateConfig, ImageLimits
from pipelines.evaluate.exported import ExportedModel
from pipelines.inputs.dead_letters import WriteRejected, first_errors
from pipelines.inputs.images import encode_png
from pipelines.inputs.sources import Source, no_images, resolve_source
from pipelines.inputs.validation import ReadValidImages
from pipelines.runner import local_runner
from transforms import features
from transforms.errors import UserError
from transforms.layout import REJECTED_DIR, rejected_by_reason

log = logging.getLogger(__name__)

STAGE = "evaluate"
_READ_BATCH = 512


@dataclasses.dataclass(frozen=True)
class Examples:
    """N records as parallel fields (see the module docstring)."""

    ids: list[str]
    labels: list[str]
    pixels: np.ndarray
    images: list[bytes]

    def __len__(self) -> int:
        return len(self.ids)


def read_split(data_dir: str, split: str, max_examples: int) -> Examples:
    """The first ``max_examples`` records of one split of a preprocess output.

    Raises:
      UserError: the split has no TFRecords, or they hold no record (names the fix).
    """
    wanted = (features.ID, features.LABEL, features.PIXELS)
    spec = {k: v for k, v in load_transform_output(data_dir).transformed_feature_spec().items() if k in wanted}
    dataset = (
        tf.data.TFRecordDataset(split_files(data_dir, split), compression_type="GZIP")
        .take(max_examples)
        .batch(_READ_BATCH)
        .map(lambda records: tf.io.parse_example(records, spec))
    )
    ids, labels, pixels = [], [], []
    for batch in dataset:
        ids += [v.decode("utf-8") for v in batch[features.ID].numpy()]
        labels += [v.decode("utf-8") for v in batch[features.LABEL].numpy()]
        pixels.append(batch[features.PIXELS].numpy())
    if not ids:
        raise UserError(
            f"the {split} split of {data_dir} holds no records; preprocess more images or change --eval-percent"
        )
    stacked = np.concatenate(pixels).astype(np.float32)
    images = [encode_png(np.round(np.clip(p, 0.0, 1.0) * 255).astype(np.uint8)) for p in stacked]
    return Examples(ids, labels, stacked, images)


def read_images(cfg: EvaluateConfig, model: ExportedModel, beam_args: list[str] | None = None) -> Examples:
    """Reads and validates ``cfg.input`` (rejects to ``cfg.output/rejected/``); keeps the first
    ``cfg.max_examples`` by id.

    Raises:
      UserError: bad source, or no readable image in it.
    """
    resolved = resolve_source(cfg.input, cfg.reader, cfg.limit)
    rejected = os.path.join(cfg.output, REJECTED_DIR)
    with tempfile.TemporaryDirectory(prefix="hourglass-evaluate-") as temp:
        prefix = os.path.join(temp, "records")
        options = PipelineOptions(beam_args or [])
        with beam.Pipeline(runner=local_runner(options), options=options) as p:
            build_read_pipeline(p, resolved, prefix, os.path.join(rejected, "rejected"), ImageLimits.of(cfg))
        counts = counters.counters(p.result)
        log.info("evaluate read counters:\n%s", counters.format_counters(counts))
        records = sorted(_read_records(tf.io.gfile.glob(prefix + "*")), key=lambda r: r[0])
    counters.check_accounting(counts, STAGE, len(records))
    if not records:
        raise no_images(cfg.input, first_errors(rejected), sum(rejected_by_reason(counts, STAGE).values()))
    records = records[: cfg.max_examples]
    ids, labels, images = (list(column) for column in zip(*records, strict=True))
    return Examples(ids, labels, model.pixels(images), images)


def build_read_pipeline(
    p: beam.Pipeline, source: Source, prefix: str, rejected_prefix: str, limits: ImageLimits
) -> dict:
    """Adds read -> validate -> write ``tf.train.Example`` (id, label, image) TFRecords at ``prefix``."""
    checked = p | "ReadValidImages" >> ReadValidImages(source, STAGE, limits)
    _ = (
        checked["valid"]
        | "ToExample" >> beam.Map(_to_example)
        | "WriteRecords" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=".tfrecord")
    )
    _ = checked["rejected"] | "WriteRejected" >> WriteRejected(rejected_prefix)
    return checked


def _to_example(record: dict) -> bytes:
    def feature(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                features.ID: feature(record[features.ID].encode("utf-8")),
                features.LABEL: feature(record[features.LABEL].encode("utf-8")),
                features.IMAGE: feature(record[features.IMAGE]),
            }
        )
    ).SerializeToString()


def _read_records(files: list[str]) -> list[tuple[str, str, bytes]]:
    spec = {key: tf.io.FixedLenFeature([], tf.string) for key in (features.ID, features.LABEL, features.IMAGE)}
    rows = []
    for serialized in tf.data.TFRecordDataset(files):
        parsed = tf.io.parse_single_example(serialized, spec)
        rows.append(
            (
                parsed[features.ID].numpy().decode("utf-8"),
                parsed[features.LABEL].numpy().decode("utf-8"),
                parsed[features.IMAGE].numpy(),
            )
        )
    return rows
