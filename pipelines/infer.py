"""The infer job: images -> validated -> RunInference(SavedModel) -> Parquet.

:class:`EncodeImages` (no I/O) takes valid raw records (see ``sources``) and returns Parquet rows
(dicts of ``parquet_schema``'s columns). ``build_infer_pipeline`` adds the source and the sinks and
writes, under ``output``: ``predictions-*.parquet``, ``rejected/rejected-*.jsonl`` and
``config.json``. The model handler is a parameter, so tests can inject another.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from models.export import read_model_info
from pipelines import metrics
from pipelines import parquet_schema as cols
from pipelines.config import InferConfig, write_config
from pipelines.dead_letters import REJECTED_DIR, WriteRejected
from pipelines.model_handler import HourglassModelHandler
from pipelines.sources import SOURCE, resolve_source
from pipelines.validation import ReadValidImages
from transforms import features

log = logging.getLogger(__name__)

PREDICTIONS = "predictions"


class ToParquetRowFn(beam.DoFn):
    """``PredictionResult(record, outputs)`` -> one Parquet row dict."""

    def __init__(self):
        self._rows = Metrics.counter(metrics.NAMESPACE, "prediction_rows")

    def process(self, result):
        record, outputs = result.example, result.inference
        self._rows.inc()
        yield {
            cols.ID: record[features.ID],
            cols.SOURCE: record[SOURCE],
            cols.LABEL: record[features.LABEL] or None,
            cols.LATENT: outputs["latent"].astype("float32").ravel().tolist(),
            cols.RECONSTRUCTION: outputs["reconstruction"].astype("float32").ravel().tolist(),
            cols.RECONSTRUCTION_ERROR: float(outputs["reconstruction_error"]),
        }


class EncodeImages(beam.PTransform):
    """Valid raw records -> prediction rows, batched through ``RunInference(model_handler)``."""

    def __init__(self, model_handler: ModelHandler):
        super().__init__()
        self._handler = model_handler

    def expand(self, records):
        return records | "RunInference" >> RunInference(self._handler) | "ToRows" >> beam.ParDo(ToParquetRowFn())


def build_infer_pipeline(p: beam.Pipeline, cfg: InferConfig, model_handler: ModelHandler, schema) -> dict:
    """Adds read -> validate -> encode -> write to ``p``; returns the PCollections by name."""
    source = resolve_source(cfg.input, cfg.reader, cfg.limit)
    checked = p | "ReadValidImages" >> ReadValidImages(source, "infer", cfg.max_pixels)
    rows = checked["valid"] | "EncodeImages" >> EncodeImages(model_handler)
    _ = rows | "WriteParquet" >> beam.io.WriteToParquet(
        os.path.join(cfg.output, PREDICTIONS), schema, codec="snappy", file_name_suffix=".parquet"
    )
    _ = checked["rejected"] | "WriteRejected" >> WriteRejected(os.path.join(cfg.output, REJECTED_DIR, "rejected"))
    return {"rows": rows, "rejected": checked["rejected"]}


@dataclasses.dataclass(frozen=True)
class InferResult:
    """What an infer run wrote and counted."""

    output: str
    counts: dict[str, int]


def run_infer(cfg: InferConfig, beam_args: list[str] | None = None) -> InferResult:
    """Runs the infer job.

    Raises:
      FileNotFoundError: the model folder holds no export.
      ValueError: bad input spec.
    """
    resolve_source(cfg.input, cfg.reader, cfg.limit)  # fails early on a bad input
    info = read_model_info(cfg.model_dir)
    write_config(cfg, cfg.output)
    handler = HourglassModelHandler(cfg.model_dir, cfg.batch_size_min, cfg.batch_size_max)
    with beam.Pipeline(options=PipelineOptions(beam_args or [])) as p:
        build_infer_pipeline(p, cfg, handler, cols.prediction_schema(info))
    counts = metrics.counters(p.result)
    log.info("infer counters:\n%s", metrics.format_counters(counts))
    return InferResult(cfg.output, counts)
