"""The preprocess job: images -> validated -> split -> tf.Transform -> gzipped TFRecords + stats.json.

:class:`PreprocessImages` (no I/O) takes valid raw records (see ``sources``) twice: ``records``
(split, transformed and returned) and ``analyze`` (the same records from a second read, whose train
split feeds the full-pass analyzers; it may be the same PCollection). Reading twice lets both passes
stream from the files: no step holds the dataset between analysis and transform. It returns
``train`` and ``eval`` (PCollections of Arrow ``RecordBatch``es of the transformed features, see
``transforms.features``), ``transform_fn``, ``metadata`` (the TFRecords' schema), ``analyzers``
(one dict: the analyzer values) and ``label_counts`` (``((split, label), count)``).
Records go to tf.Transform as Arrow RecordBatches (tfx-bsl TFXIO) and come out as RecordBatches
that tfx-bsl encodes as ``tf.Example``: no per-record Python dicts on the hot path.

``build_preprocess_pipeline`` adds the source and the sinks; it writes, under ``output``:
``train-*.tfrecord.gz``, ``eval-*.tfrecord.gz``, ``transform_output/`` (``transform_fn/`` and
``transformed_metadata/``), ``rejected/rejected-*.jsonl``, ``stats.json`` and ``config.json``.
The full-pass analyzers see the train split only, so nothing of the eval split leaks into them.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import tempfile

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.public import tfxio

from models.input_pipeline import TRANSFORM_DIR
from pipelines import metrics
from pipelines.config import PreprocessConfig, write_config
from pipelines.dead_letters import REJECTED_DIR, WriteRejected
from pipelines.images import encode_png
from pipelines.probe import resolve_image_spec
from pipelines.sources import Source, resolve_source
from pipelines.validation import ReadValidImages, RereadValidImages
from transforms import features
from transforms.image_ops import ImageSpec
from transforms.preprocessing import make_preprocessing_fn, raw_feature_spec

log = logging.getLogger(__name__)

TRAIN, EVAL = "train", "eval"
LABELS = "labels"
STATS_JSON = "stats.json"
# Records per Arrow RecordBatch handed to tf.Transform.
BATCH_SIZE = 1000
# stats.json lists at most this many vocabulary entries (the file in transform_output has all).
_VOCABULARY_SHOWN = 1000


def is_eval(record_id: str, eval_percent: int) -> bool:
    """Deterministic split: a stable hash of the id, independent of order, runner and run."""
    bucket = int.from_bytes(hashlib.sha256(record_id.encode("utf-8")).digest()[:8], "big") % 100
    return bucket < eval_percent


def raw_tensor_adapter_config() -> tfxio.TensorAdapterConfig:
    """How tf.Transform reads our raw RecordBatches (the Arrow layout of tf.Example features)."""
    schema = schema_utils.schema_from_feature_spec(raw_feature_spec())
    return tfxio.TFExampleBeamRecord(
        physical_format="inmem", telemetry_descriptors=["hourglass"], schema=schema
    ).TensorAdapterConfig()


def to_record_batch(records: list[dict], arrow_schema: pa.Schema) -> pa.RecordBatch:
    """Raw records -> one RecordBatch of the raw features (each a one-element list, as TFXIO reads them)."""
    offsets = pa.array(np.arange(len(records) + 1, dtype=np.int64))
    columns = []
    for field in arrow_schema:
        values = [r[field.name] for r in records]
        if values and isinstance(values[0], str):
            values = [v.encode("utf-8") for v in values]
        columns.append(pa.LargeListArray.from_arrays(offsets, pa.array(values, pa.large_binary())))
    return pa.RecordBatch.from_arrays(columns, schema=arrow_schema)


class ToRecordBatches(beam.PTransform):
    """Raw records -> RecordBatches of up to ``BATCH_SIZE`` records."""

    def __init__(self, arrow_schema: pa.Schema):
        super().__init__()
        self._schema = arrow_schema

    def expand(self, records):
        return (
            records
            | "Batch" >> beam.BatchElements(min_batch_size=BATCH_SIZE // 4, max_batch_size=BATCH_SIZE)
            | "ToArrow" >> beam.Map(to_record_batch, self._schema)
        )


def _values(batch: pa.RecordBatch, name: str) -> pa.Array:
    """A transformed feature's values, one per row (its list column flattened)."""
    return batch.column(name).flatten()


def analyzer_values(batch_and_passthrough, spec: ImageSpec, vocabulary_path: str) -> dict:
    """The ``stats_*`` outputs of one transformed example (plus the vocabulary file) -> a JSON-able dict."""
    batch = batch_and_passthrough[0]

    def column(name):
        return _values(batch, name).to_numpy()

    def summary(values):
        per_pixel = values.reshape(spec.shape)
        return {
            "min": float(values.min()),
            "mean": float(values.mean()),
            "max": float(values.max()),
            "per_channel_mean": [float(v) for v in per_pixel.mean(axis=(0, 1))],
        }

    with FileSystems.open(vocabulary_path) as f:
        vocabulary = [line.decode("utf-8") for line in f.read().splitlines()]
    return {
        "split": TRAIN,
        "examples": int(column(features.STATS_EXAMPLES)[0]),
        "pixel_min": float(column(features.STATS_PIXEL_MIN)[0]),
        "pixel_max": float(column(features.STATS_PIXEL_MAX)[0]),
        "pixel_mean": summary(column(features.STATS_PIXEL_MEAN)),
        "pixel_stddev": summary(column(features.STATS_PIXEL_STDDEV)),
        "label_vocabulary": vocabulary,
    }


class SplitBatchFn(beam.DoFn):
    """Transformed ``(RecordBatch, passthrough)`` -> its train rows (main output) and eval rows
    (``eval``) by the id hash, counting records per split and ``((split, label), n)`` (``labels``)."""

    def __init__(self, eval_percent: int):
        self._eval_percent = eval_percent
        self._counters = {split: Metrics.counter(metrics.NAMESPACE, f"{split}_records") for split in (TRAIN, EVAL)}

    def process(self, batch_and_passthrough):
        batch = batch_and_passthrough[0]
        ids = _values(batch, features.ID).to_pylist()
        in_eval = np.array([is_eval(i.decode("utf-8"), self._eval_percent) for i in ids], dtype=bool)
        labels = np.array(_values(batch, features.LABEL).to_pylist(), dtype=object)
        for split, mask in ((TRAIN, ~in_eval), (EVAL, in_eval)):
            rows = int(mask.sum())
            if not rows:
                continue
            self._counters[split].inc(rows)
            for label, n in collections.Counter(labels[mask]).items():
                yield beam.pvalue.TaggedOutput(LABELS, ((split, label.decode("utf-8")), n))
            part = batch if rows == len(ids) else batch.filter(pa.array(mask))
            yield part if split == TRAIN else beam.pvalue.TaggedOutput(EVAL, part)


class PreprocessImages(beam.PTransform):
    """``{"records", "analyze"}`` valid raw records -> ``{"train", "eval", "transform_fn", "metadata",
    "analyzers", "label_counts"}``; see the module docstring.

    Args:
      spec: the image shape, resize and colour policy.
      normalize: ``unit`` or ``standardize``.
      eval_percent: share of ids that go to eval.
      temp_dir: tf.Transform's scratch folder.
    """

    def __init__(self, spec: ImageSpec, normalize: str, eval_percent: int, temp_dir: str):
        super().__init__()
        self._spec = spec
        self._preprocessing_fn = make_preprocessing_fn(spec, normalize)
        self._eval_percent = eval_percent
        self._temp_dir = temp_dir

    def expand(self, inputs):
        eval_percent = self._eval_percent
        adapter = raw_tensor_adapter_config()
        analyze = inputs["analyze"] | "KeepTrain" >> beam.Filter(lambda r: not is_eval(r[features.ID], eval_percent))
        blank = {features.ID: "", features.LABEL: "", features.IMAGE: encode_png(np.zeros(self._spec.shape, np.uint8))}
        with tft_beam.Context(temp_dir=self._temp_dir):
            transform_fn = (
                analyze | "AnalyzeToArrow" >> ToRecordBatches(adapter.arrow_schema),
                adapter,
            ) | "AnalyzeTrain" >> tft_beam.AnalyzeDataset(self._preprocessing_fn)
            transformed, metadata = (
                (inputs["records"] | "ToArrow" >> ToRecordBatches(adapter.arrow_schema), adapter),
                transform_fn,
            ) | "Transform" >> tft_beam.TransformDataset(
                exclude_outputs=list(features.STATS_FEATURES), output_record_batches=True
            )
            stats, _ = (
                (
                    self.pipeline
                    | "StatsInput" >> beam.Create([blank])
                    | "StatsToArrow" >> ToRecordBatches(adapter.arrow_schema),
                    adapter,
                ),
                transform_fn,
            ) | "EvaluateAnalyzers" >> tft_beam.TransformDataset(
                exclude_outputs=list(features.TRANSFORMED_FEATURES), output_record_batches=True
            )
        split = transformed | "SplitById" >> beam.ParDo(SplitBatchFn(eval_percent)).with_outputs(
            EVAL, LABELS, main=TRAIN
        )
        vocabulary = transform_fn[0] | "VocabularyPath" >> beam.Map(
            lambda path: os.path.join(path, "assets", features.LABEL_VOCABULARY)
        )
        analyzers = stats | "AnalyzerValues" >> beam.Map(
            analyzer_values, self._spec, beam.pvalue.AsSingleton(vocabulary)
        )
        return {
            TRAIN: split[TRAIN],
            EVAL: split[EVAL],
            "transform_fn": transform_fn,
            "metadata": metadata,
            "analyzers": analyzers,
            "label_counts": split[LABELS] | "CountLabels" >> beam.CombinePerKey(sum),
        }


class EncodeExamplesFn(beam.DoFn):
    """RecordBatch -> serialized ``tf.Example``s (tfx-bsl's C++ encoder)."""

    def __init__(self, schema: schema_pb2.Schema):
        self._schema = schema.SerializeToString()

    def setup(self):
        self._encoder = tfxio.RecordBatchToExamplesEncoder(schema_pb2.Schema.FromString(self._schema))

    def process(self, batch):
        yield from self._encoder.encode(batch)


def make_stats(
    info: dict,
    analyzers: dict,
    label_counts: list[tuple[tuple[str, str], int]],
    rejected: list[tuple[str, int]],
) -> dict:
    """The ``stats.json`` document: counts per split and label, rejects by reason, the image
    policy (``info``) and the analyzer values."""
    splits = {split: {"records": 0, "labels": {}} for split in (TRAIN, EVAL)}
    for (split, label), n in sorted(label_counts):
        splits[split]["records"] += n
        splits[split]["labels"][label or "(unlabelled)"] = n
    by_reason = dict(sorted(rejected, key=lambda item: (-item[1], item[0])))
    written = sum(s["records"] for s in splits.values())
    # tf.Transform writes a placeholder entry into an empty vocabulary: keep the labels seen in train.
    vocabulary = [v for v in analyzers["label_vocabulary"] if v in splits[TRAIN]["labels"]]
    analyzers = {
        **analyzers,
        "label_vocabulary": vocabulary[:_VOCABULARY_SHOWN],
        "label_vocabulary_size": len(vocabulary),
    }
    return {
        **info,
        "records": {"read": written + sum(by_reason.values()), "written": written, "rejected": sum(by_reason.values())},
        "splits": splits,
        "rejected_by_reason": by_reason,
        "analyzers": analyzers,
    }


def channel_policy(spec: ImageSpec) -> str:
    """A sentence describing how images reach ``spec.channels``."""
    target = "grey (RGB by ITU-R BT.601 luma)" if spec.channels == 1 else "RGB (grey repeated)"
    return (
        f"{spec.channels} channel{'s' if spec.channels > 1 else ''}: {target}; alpha composited on "
        f"background {list(spec.background)}; palettes expanded; 16-bit scaled to [0, 1]"
    )


def build_preprocess_pipeline(
    p: beam.Pipeline, cfg: PreprocessConfig, source: Source, spec: ImageSpec, temp_dir: str
) -> dict:
    """Adds read -> validate -> preprocess -> write to ``p``; returns the PCollections by name."""
    checked = p | "ReadValidImages" >> ReadValidImages(source, "preprocess", cfg.max_pixels)
    again = checked["units"] | "RereadValidImages" >> RereadValidImages(source, "preprocess", cfg.max_pixels)
    out = {"records": checked["valid"], "analyze": again["valid"]} | "PreprocessImages" >> PreprocessImages(
        spec, cfg.normalize, cfg.eval_percent, temp_dir
    )
    schema = out["metadata"].schema
    for split in (TRAIN, EVAL):
        _ = (
            out[split]
            | f"Encode{split.title()}" >> beam.ParDo(EncodeExamplesFn(schema))
            | f"Write{split.title()}"
            >> beam.io.WriteToTFRecord(
                os.path.join(cfg.output, split),
                file_name_suffix=".tfrecord.gz",
                compression_type=beam.io.filesystem.CompressionTypes.GZIP,
            )
        )
    _ = (out["transform_fn"][0], out["metadata"]) | "WriteTransformFn" >> tft_beam.WriteTransformFn(
        os.path.join(cfg.output, TRANSFORM_DIR)
    )
    rejected = checked["rejected"]
    _ = rejected | "WriteRejected" >> WriteRejected(os.path.join(cfg.output, REJECTED_DIR, "rejected"))
    info = {
        "input": cfg.input,
        "format": source.format,
        "image": {
            "height": spec.height,
            "width": spec.width,
            "channels": spec.channels,
            "resize": spec.resize,
            "background": list(spec.background),
            "channel_policy": channel_policy(spec),
        },
        "normalize": cfg.normalize,
        "eval_percent": cfg.eval_percent,
    }
    reasons = (
        rejected | "Reasons" >> beam.Map(lambda r: r["reason"]) | "CountReasons" >> beam.combiners.Count.PerElement()
    )
    stats = (
        p
        | "StatsInfo" >> beam.Create([info])
        | "MakeStats"
        >> beam.Map(
            make_stats,
            beam.pvalue.AsSingleton(out["analyzers"]),
            beam.pvalue.AsList(out["label_counts"]),
            beam.pvalue.AsList(reasons),
        )
    )
    _ = (
        stats
        | "StatsToJson" >> beam.Map(lambda s: json.dumps(s, indent=2, sort_keys=True))
        | "WriteStats"
        >> beam.io.WriteToText(os.path.join(cfg.output, STATS_JSON), shard_name_template="", num_shards=1)
    )
    return {**out, "rejected": rejected, "stats": stats}


@dataclasses.dataclass(frozen=True)
class PreprocessResult:
    """What a preprocess run wrote and counted."""

    output: str
    spec: ImageSpec
    counts: dict[str, int]

    @property
    def rejected(self) -> int:
        return sum(v for k, v in self.counts.items() if k.startswith("preprocess_rejected_"))

    @property
    def stats(self) -> dict:
        with FileSystems.open(os.path.join(self.output, STATS_JSON)) as f:
            return json.loads(f.read())


def run_preprocess(cfg: PreprocessConfig, beam_args: list[str] | None = None) -> PreprocessResult:
    """Runs the preprocess job and checks its counts.

    Raises:
      ValueError: bad input spec, images of several shapes without ``image_size``, an empty input,
        or more rejects than ``max_reject_fraction`` (the message names the worst reasons).
    """
    source = resolve_source(cfg.input, cfg.reader, cfg.limit)  # fails early on a bad input
    options = PipelineOptions(beam_args or [])
    spec = resolve_image_spec(cfg, source, options)
    write_config(cfg, cfg.output)
    log.info("preprocessing %s as %dx%dx%d images into %s", cfg.input, *spec.shape, cfg.output)
    with tempfile.TemporaryDirectory(prefix="hourglass-tft-") as local_temp:
        temp_dir = options.get_all_options().get("temp_location") or local_temp
        with beam.Pipeline(options=options) as p:
            build_preprocess_pipeline(p, cfg, source, spec, temp_dir)
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
    if rejected == read:
        worst = ", ".join(f"{reason} ({n})" for reason, n in reasons.most_common(3))
        raise ValueError(
            f"none of the {read} records of {source!r} could be used; reasons: {worst}. See the rejected/ folder"
        )
    if rejected / read > max_fraction:
        worst = ", ".join(f"{reason} ({n})" for reason, n in reasons.most_common(3))
        raise ValueError(
            f"{rejected} of {read} records of {source!r} were rejected, over --max-reject-fraction {max_fraction}; "
            f"worst reasons: {worst}. See the rejected/ folder for each record, fix the input or raise the limit"
        )
