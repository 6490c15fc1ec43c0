"""The streaming watch (``--watch-mode streaming``): one unbounded Beam pipeline, for streaming runners
(Dataflow, Flink), writing the same window partitions as the micro-batch watch (``watch``).

``build_streaming_pipeline`` lists the folder every ``poll_seconds`` with Beam's
``MatchContinuously``, skips names starting with ``.`` (as ``watch.list_finished`` does), reads
each new path once (per-path state), puts it in the fixed window of ``window_seconds`` it was
listed in, and writes each window's Parquet files and dead letters with ``fileio.WriteToFiles`` as
``OUTPUT/window_start=.../predictions-SSSSS-of-NNNNN.parquet`` and ``.../_rejected/rejected-*.jsonl``;
when both are written, ``_manifest.json`` (rows from the footers, rejects by reason, the files'
ids, the model, and the ``drift`` section of batch runs, binned from the window's ``anomaly_score``,
``is_anomaly`` and ``latent`` columns as read back) is written last. Files appear as the runner's
watermark passes a window's end, so a partition is complete once its ``_manifest.json`` is there.
Reading once across restarts is the runner's (Dataflow's update and drain keep the pipeline's state).

Beam's local runners cannot run this for long (their metrics merging recurses once per bundle and
overflows after about 10 s), and they write windowed files only when the pipeline ends: locally,
:func:`run_streaming` refuses and points to the micro-batch watch. The model handler is a parameter.
"""

from __future__ import annotations

import collections
import json
import logging
import posixpath

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from apache_beam.coders import BooleanCoder
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms import userstate, window
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from models.model_info import ANOMALY_SCORE, IS_ANOMALY, LATENT, Calibration, ModelInfo
from pipelines import counters
from pipelines.config import ImageLimits, InferConfig, write_config
from pipelines.infer import manifest, parquet, publish
from pipelines.infer.drift import drift_counts, drift_report
from pipelines.infer.encode import STAGE, EncodeImages
from pipelines.infer.watch import UNREADABLE, WINDOW_START, ReadWatchedFilesFn, partition_name, watch_root
from pipelines.inputs.formats.image_files import FileUnit
from pipelines.inputs.listing import has_hidden_part
from pipelines.inputs.validation import validate_read
from transforms.errors import UserError

log = logging.getLogger(__name__)

_PARQUET, _REJECTED = "parquet", "rejected"
_DRIFT_COLUMNS = (parquet.ID, ANOMALY_SCORE, IS_ANOMALY, LATENT)


class FirstSightingFn(beam.DoFn):
    """``(path, FileMetadata)`` -> the metadata, the first time a path is seen (per-path state)."""

    SEEN = userstate.ReadModifyWriteStateSpec("seen", BooleanCoder())

    def process(self, keyed, seen=beam.DoFn.StateParam(SEEN)):  # noqa: B008 (Beam's state parameter idiom)
        if not seen.read():
            seen.write(True)
            yield keyed[1]


class ParquetFileSink(fileio.FileSink):
    """``pa.Table`` elements -> one Parquet file (a row group each), for ``fileio.WriteToFiles``."""

    def __init__(self, schema: pa.Schema, compression: str):
        self._schema, self._compression = schema, compression

    def open(self, fh):
        self._writer = pq.ParquetWriter(fh, self._schema, compression=self._compression)

    def write(self, table: pa.Table):
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))

    def flush(self):
        self._writer.close()


def _naming(output: str, prefix: str, suffix: str):
    """File names under the window's partition (its folder created first: a local rename needs it)."""

    def name(w, pane, shard, shards, compression, destination):
        folder = partition_name(float(w.start))
        tf.io.gfile.makedirs(posixpath.join(output, folder, posixpath.dirname(prefix)))
        return f"{folder}/{prefix}-{shard:05d}-of-{shards:05d}{suffix}"

    return name


class WriteWindowManifestFn(beam.DoFn):
    """``(partition, [(kind, file)])`` -> writes the partition's ``_manifest.json`` (last), with its
    ``drift`` against ``calibration`` from the anomaly and latent columns of the partition's Parquet."""

    def __init__(self, output: str, fields: dict, calibration: Calibration | None):
        self._output, self._fields, self._calibration = output, fields, calibration

    def process(self, element, w=beam.DoFn.WindowParam):
        name, files = element
        folder = posixpath.join(self._output, name)
        rejected: collections.Counter = collections.Counter()
        ids = []
        for kind, path in files:
            if kind == _REJECTED:
                with tf.io.gfile.GFile(posixpath.join(self._output, path)) as f:
                    letters = [json.loads(line) for line in f if line.strip()]
                rejected.update(letter["reason"] for letter in letters)
                ids += [letter["id"] for letter in letters]
        columns = collections.defaultdict(list)
        for path in tf.io.gfile.glob(posixpath.join(folder, "*.parquet")):
            with FileSystems.open(path) as f:
                file = pq.ParquetFile(f)
                table = file.read(columns=[c for c in _DRIFT_COLUMNS if c in file.schema_arrow.names])
            for column in table.column_names:
                columns[column] += table.column(column).to_pylist()
        ids += columns[parquet.ID]
        fields = {
            **self._fields,
            WINDOW_START: manifest.iso(float(w.start)),
            "window_end": manifest.iso(float(w.end)),
            "rejected": dict(rejected),
            "records_read": len(ids),
            "files_read": sorted(ids),
            "drift": drift_report(self._drift_counts(columns), self._calibration),
        }
        yield publish.write_manifest(folder, fields)

    def _drift_counts(self, columns: dict[str, list]) -> dict[str, int]:
        if self._calibration is None:
            return {}
        latents = np.array(columns[LATENT], np.float64) if columns[LATENT] else None
        return drift_counts(self._calibration, columns[ANOMALY_SCORE], columns[IS_ANOMALY], latents)


def build_streaming_pipeline(
    p: beam.Pipeline,
    cfg: InferConfig,
    model_handler: ModelHandler,
    schema: pa.Schema,
    info: ModelInfo,
    start: Timestamp,
    stop: Timestamp = MAX_TIMESTAMP,
) -> dict:
    """Adds watch -> read -> validate -> window -> encode -> write partitions -> manifests to ``p``.

    Every ``cfg.poll_seconds`` from ``start`` to ``stop`` the folder ``cfg.watch`` is listed
    (recursively; first-level subfolders name labels as in batch); files already there at the
    first poll are read too. Returns the PCollections by name (``tables``, ``rejected``, ``manifests``).
    """
    root, output = watch_root(cfg.watch), cfg.output.rstrip("/")
    # Beam's Watch-based deduplication does not wait between polls on the local runners, so the
    # folder is polled by PeriodicImpulse (has_deduplication=False) and deduplicated by path here.
    matches = p | "WatchFolder" >> fileio.MatchContinuously(
        FileSystems.join(root, "**"),
        interval=cfg.poll_seconds,
        has_deduplication=False,
        start_timestamp=start,
        stop_timestamp=stop,
    )
    read = (
        matches
        | "Finished" >> beam.Filter(lambda m: not has_hidden_part(m.path[len(root) :].lstrip("/")))
        | "KeyByPath" >> beam.Map(lambda match: (match.path, match))
        | "FirstSighting" >> beam.ParDo(FirstSightingFn())
        | "Window" >> beam.WindowInto(window.FixedWindows(cfg.window_seconds))
        | "AsUnits" >> beam.Map(lambda match: FileUnit((match.path,)))
        | "ReadFiles" >> beam.ParDo(ReadWatchedFilesFn(root)).with_outputs(UNREADABLE, main="records")
    )
    checked = validate_read(
        {"records": read.records, "rejected": read[UNREADABLE]}, STAGE, ImageLimits.of(cfg), decode=False
    )
    encoded = checked["valid"] | "EncodeImages" >> EncodeImages(model_handler, schema)
    tables = (encoded["tables"], encoded["retried"]) | "AllTables" >> beam.Flatten()
    rejected = (checked["rejected"], encoded["rejected"]) | "MergeRejected" >> beam.Flatten()
    written_parquet = tables | "WriteParquet" >> fileio.WriteToFiles(
        output,
        file_naming=_naming(output, parquet.PREDICTIONS, ".parquet"),
        sink=lambda _: ParquetFileSink(schema, cfg.compression),
    )
    written_rejected = (
        rejected
        | "ToJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
        | "WriteRejected"
        >> fileio.WriteToFiles(output, file_naming=_naming(output, f"{parquet.REJECTED}/rejected", ".jsonl"))
    )
    fields = {"watch": root, **manifest.output_fields(cfg, info, schema)}
    manifests = (
        (
            written_parquet
            | "ParquetFiles" >> beam.Map(lambda r: (r.file_name.split("/")[0], (_PARQUET, r.file_name))),
            written_rejected
            | "RejectedFiles" >> beam.Map(lambda r: (r.file_name.split("/")[0], (_REJECTED, r.file_name))),
        )
        | "WrittenFiles" >> beam.Flatten()
        | "ByWindow" >> beam.GroupByKey()
        | "WriteManifests" >> beam.ParDo(WriteWindowManifestFn(output, fields, info.calibration))
    )
    return {"tables": tables, "rejected": rejected, "manifests": manifests}


def run_streaming(
    cfg: InferConfig, options: PipelineOptions, handler: ModelHandler, schema: pa.Schema, info: ModelInfo
) -> dict[str, int]:
    """Runs the streaming pipeline until ``cfg.watch_seconds`` have passed (or forever); returns the counters.

    Raises:
      UserError: on a local runner (see the module docstring).
    """
    runner = options.view_as(StandardOptions).runner
    if runner is None or "direct" in str(runner).lower() or "prism" in str(runner).lower():
        raise UserError(
            "--watch-mode streaming needs a streaming runner (e.g. -- --runner=DataflowRunner --streaming or "
            "--runner=FlinkRunner --streaming); on the local runner use --watch-mode micro-batch (the default)"
        )
    options.view_as(StandardOptions).streaming = True
    write_config(cfg, cfg.output, parquet.CONFIG_NAME)
    start = Timestamp.now()
    stop = start + cfg.watch_seconds if cfg.watch_seconds else MAX_TIMESTAMP
    log.info(
        "streaming: watching %s every %gs, %gs windows -> %s",
        cfg.watch,
        cfg.poll_seconds,
        cfg.window_seconds,
        cfg.output,
    )
    with beam.Pipeline(options=options) as p:
        build_streaming_pipeline(p, cfg, handler, schema, info, start, stop)
    return counters.counters(p.result)
