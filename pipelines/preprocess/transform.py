"""The preprocess transform: valid raw records -> split -> tf.Transform -> Arrow batches (no I/O).

:class:`PreprocessImages` takes valid raw records (see ``inputs.formats.base``) in lists (the batches
of a batched read, ``inputs.validation``: Beam moves a list, not each record, from step to step)
twice: ``analyze`` (whose train split feeds the full-pass analyzers) and ``records`` (the same
records from a second read, split, transformed and returned; it may be the same PCollection). Reading twice lets both
passes stream from the files: no step holds the dataset between analysis and transform. It returns
``train`` and ``eval`` (PCollections of Arrow ``RecordBatch``es of the transformed features, see
``transforms.features``), ``transform_fn``, ``metadata`` (the TFRecords' schema), ``analyzers``
(one dict: the analyzer values) and ``label_counts`` (``((split, label), count)``).
Records go to tf.Transform as Arrow RecordBatches (tfx-bsl TFXIO) and come out as RecordBatches
that tfx-bsl encodes as ``tf.Example`` (:class:`EncodeExamplesFn`): no per-record Python dicts on
the hot path. The full-pass analyzers see the train split only, so nothing of the eval split leaks
into them.
"""

from __future__ import annotations

import collections
import hashlib
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.public import tfxio

from pipelines.counters import NAMESPACE
from pipelines.inputs.images import encode_png
from transforms import features
from transforms.image_spec import ImageSpec
from transforms.layout import EVAL, TRAIN, split_counter
from transforms.preprocessing import make_preprocessing_fn, raw_feature_spec

LABELS = "labels"
# Records per Arrow RecordBatch handed to tf.Transform.
BATCH_SIZE = 1000


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
    """Lists of raw records -> RecordBatches of up to ``BATCH_SIZE`` records (or one list, when longer)."""

    def __init__(self, arrow_schema: pa.Schema):
        super().__init__()
        self._schema = arrow_schema

    def expand(self, batches):
        return (
            batches
            | "Batch"
            >> beam.BatchElements(min_batch_size=BATCH_SIZE // 4, max_batch_size=BATCH_SIZE, element_size_fn=len)
            | "ToArrow" >> beam.Map(_lists_to_record_batch, self._schema)
        )


def _lists_to_record_batch(lists: list[list[dict]], arrow_schema: pa.Schema) -> pa.RecordBatch:
    return to_record_batch([record for records in lists for record in records], arrow_schema)


def train_part(records: list[dict], eval_percent: int):
    """A list of raw records -> the list of its train records, when there are any."""
    train = [r for r in records if not is_eval(r[features.ID], eval_percent)]
    if train:
        yield train


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
        self._counters = {split: Metrics.counter(NAMESPACE, split_counter(split)) for split in (TRAIN, EVAL)}

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
    """``{"records", "analyze"}`` lists of valid raw records -> ``{"train", "eval", "transform_fn", "metadata",
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
        analyze = inputs["analyze"] | "KeepTrain" >> beam.FlatMap(train_part, eval_percent)
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
                    | "StatsInput" >> beam.Create([[blank]])
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
