"""The preprocess job: images -> validated -> split -> tf.Transform -> gzipped TFRecords.

:class:`PreprocessImages` (no I/O) takes raw records (see ``sources``) and returns the transformed
``train`` and ``eval`` PCollections (dicts of the transformed features, see
``transforms.features``), the ``transform_fn`` and the ``rejected`` dead letters.
``build_preprocess_pipeline`` adds the sources and sinks; it writes, under ``output``:
``train-*.tfrecord.gz``, ``eval-*.tfrecord.gz``, ``transform_output/`` (``transform_fn/`` and
``transformed_metadata/``), ``rejected/rejected-*.jsonl`` and ``config.json``.
The full-pass analyzers see the train split only, so nothing of the eval split leaks into them.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import os
import tempfile

import apache_beam as beam
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from models.input_pipeline import TRANSFORM_DIR
from pipelines import metrics
from pipelines.config import PreprocessConfig, write_config
from pipelines.dead_letters import REJECTED_DIR, WriteRejected
from pipelines.probe import resolve_image_spec
from pipelines.sources import check_source
from pipelines.validation import ReadValidImages
from transforms import features
from transforms.image_ops import ImageSpec
from transforms.preprocessing import make_preprocessing_fn, raw_feature_spec

log = logging.getLogger(__name__)

TRAIN, EVAL = "train", "eval"


def is_eval(record_id: str, eval_percent: int) -> bool:
    """Deterministic split: a stable hash of the id, independent of order, runner and run."""
    bucket = int.from_bytes(hashlib.sha256(record_id.encode("utf-8")).digest()[:8], "big") % 100
    return bucket < eval_percent


class PreprocessImages(beam.PTransform):
    """Valid raw records -> ``{"train", "eval", "transform_fn", "metadata"}``.

    ``train``/``eval`` hold transformed feature dicts; ``metadata`` is their tf.Transform
    metadata (for the TFRecord coder).

    Args:
      spec: the image shape and resize policy.
      normalize: ``unit`` or ``standardize``.
      eval_percent: share of ids that go to eval.
      temp_dir: tf.Transform's scratch folder.
    """

    def __init__(self, spec: ImageSpec, normalize: str, eval_percent: int, temp_dir: str):
        super().__init__()
        self._preprocessing_fn = make_preprocessing_fn(spec, normalize)
        self._eval_percent = eval_percent
        self._temp_dir = temp_dir

    def expand(self, records):
        eval_percent = self._eval_percent
        raw = records | "ToRawFeatures" >> beam.Map(lambda r: {k: r[k] for k in features.RAW_FEATURES})
        train, evaluation = raw | "SplitById" >> beam.Partition(
            lambda r, _: int(is_eval(r[features.ID], eval_percent)), 2
        )
        train = train | "CountTrain" >> metrics.count("train_records")
        evaluation = evaluation | "CountEval" >> metrics.count("eval_records")
        raw_metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_feature_spec()))
        with tft_beam.Context(temp_dir=self._temp_dir):
            transform_fn = (train, raw_metadata) | "AnalyzeTrain" >> tft_beam.AnalyzeDataset(self._preprocessing_fn)
            train_out, metadata = (
                (train, raw_metadata),
                transform_fn,
            ) | "TransformTrain" >> tft_beam.TransformDataset()
            eval_out, _ = ((evaluation, raw_metadata), transform_fn) | "TransformEval" >> tft_beam.TransformDataset()
        return {TRAIN: train_out, EVAL: eval_out, "transform_fn": transform_fn, "metadata": metadata}


def build_preprocess_pipeline(p: beam.Pipeline, cfg: PreprocessConfig, spec: ImageSpec, temp_dir: str) -> dict:
    """Adds read -> validate -> preprocess -> write to ``p``; returns the PCollections by name."""
    checked = p | "ReadValidImages" >> ReadValidImages(cfg.input, "preprocess", cfg.max_pixels, cfg.limit)
    out = checked["valid"] | "PreprocessImages" >> PreprocessImages(spec, cfg.normalize, cfg.eval_percent, temp_dir)
    coder = tft.coders.ExampleProtoCoder(out["metadata"].schema)
    for split in (TRAIN, EVAL):
        _ = (
            out[split]
            | f"Encode{split.title()}" >> beam.Map(coder.encode)
            | f"Write{split.title()}"
            >> beam.io.WriteToTFRecord(
                os.path.join(cfg.output, split),
                file_name_suffix=".tfrecord.gz",
                compression_type=beam.io.filesystem.CompressionTypes.GZIP,
            )
        )
    _ = out["transform_fn"] | "WriteTransformFn" >> tft_beam.WriteTransformFn(os.path.join(cfg.output, TRANSFORM_DIR))
    _ = checked["rejected"] | "WriteRejected" >> WriteRejected(os.path.join(cfg.output, REJECTED_DIR, "rejected"))
    return {**out, "rejected": checked["rejected"]}


@dataclasses.dataclass(frozen=True)
class PreprocessResult:
    """What a preprocess run wrote and counted."""

    output: str
    spec: ImageSpec
    counts: dict[str, int]

    @property
    def rejected(self) -> int:
        return sum(v for k, v in self.counts.items() if k.startswith("preprocess_rejected_"))


def run_preprocess(cfg: PreprocessConfig, beam_args: list[str] | None = None) -> PreprocessResult:
    """Runs the preprocess job and checks its counts.

    Raises:
      ValueError: bad input spec, images of several shapes without ``image_size``, an empty input,
        or more rejects than ``max_reject_fraction`` (the message names the worst reasons).
    """
    check_source(cfg.input)
    options = PipelineOptions(beam_args or [])
    spec = resolve_image_spec(cfg, options)
    write_config(cfg, cfg.output)
    log.info("preprocessing %s as %dx%dx%d images into %s", cfg.input, *spec.shape, cfg.output)
    with tempfile.TemporaryDirectory(prefix="hourglass-tft-") as local_temp:
        temp_dir = options.get_all_options().get("temp_location") or local_temp
        with beam.Pipeline(options=options) as p:
            build_preprocess_pipeline(p, cfg, spec, temp_dir)
        counts = metrics.counters(p.result)
    log.info("preprocess counters:\n%s", metrics.format_counters(counts))
    result = PreprocessResult(cfg.output, spec, counts)
    check_rejects(result.counts, cfg.max_reject_fraction, cfg.input)
    return result


def check_rejects(counts: dict[str, int], max_fraction: float, source: str) -> None:
    """Fails on an empty input, or when rejects exceed ``max_fraction`` of the records read.

    Raises:
      ValueError: naming the input, the counts and the worst reasons.
    """
    read = counts.get("records_read", 0)
    if read == 0:
        raise ValueError(f"input {source!r} holds no records; check the path or pattern")
    reasons = collections.Counter(
        {k.removeprefix("preprocess_rejected_"): v for k, v in counts.items() if k.startswith("preprocess_rejected_")}
    )
    rejected = sum(reasons.values())
    if rejected / read > max_fraction:
        worst = ", ".join(f"{reason} ({n})" for reason, n in reasons.most_common(3))
        raise ValueError(
            f"{rejected} of {read} records of {source!r} were rejected, over --max-reject-fraction {max_fraction}; "
            f"worst reasons: {worst}. See the rejected/ folder for each record, fix the input or raise the limit"
        )
