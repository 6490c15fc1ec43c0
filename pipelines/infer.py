"""The infer job: images -> validated -> RunInference(SavedModel) -> Parquet, in batch or streaming.

:class:`EncodeImages` (no I/O) takes valid raw records (see ``sources``) and returns
``{"tables", "retried", "rejected"}``: Arrow tables of ``parquet_schema``'s columns (about
``ROW_GROUP_BYTES`` each, written as one row group) and dead letters (``dead_letters``) for the
records the model failed on. A batch that fails is retried one record at a time (its good records
come out in ``retried``), so only the bad records are dead-lettered (reason ``inference_failed``).

``build_infer_pipeline`` adds the source (``ReadValidImages``: every input spec the preprocess job
reads) and the sinks, and writes under a folder: ``predictions-*.parquet`` (files are rolled over
at ``MAX_FILE_BYTES``) and ``_rejected/rejected-*.jsonl``. ``run_infer`` writes that into a staging
folder with ``_config.json`` and ``_manifest.json`` and publishes it (``publish``) only when the run
succeeded, as ``output/`` or, with a run id, the Hive partition ``output/run_id=RUN_ID/``. Names
other than the Parquet files start with ``_``, so pandas, pyarrow and Spark read the folder as is.

``build_watch_pipeline`` (``--watch``) lists a folder every ``poll_seconds`` with Beam's
``MatchContinuously``, reads each new file once and writes one set of Parquet files per fixed
window of ``window_seconds`` (``predictions-[START, END)-*.parquet``). The model handler is a parameter
of both builders, so tests inject their own.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import time

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.coders import BooleanCoder
from apache_beam.io import filebasedsink, fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import userstate, window
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from models.export import read_model_info
from pipelines import metrics, publish
from pipelines import parquet_schema as cols
from pipelines.config import InferConfig, write_config
from pipelines.dead_letters import REJECTED_DIR, WriteRejected, rejection
from pipelines.model_handler import HourglassModelHandler, OneAtATime, stack_outputs
from pipelines.readers import FileUnit, ImageFileReader, ReaderOptions, Unreadable
from pipelines.sources import SOURCE, Source, resolve_source
from pipelines.validation import ReadValidImages, validate_read
from transforms import features

log = logging.getLogger(__name__)

PREDICTIONS = "predictions"
# Names starting with "_" are skipped by pandas, pyarrow datasets and Spark reading the folder.
CONFIG_NAME = "_config.json"
REJECTED = "_" + REJECTED_DIR
UNREADABLE = "unreadable"
STAGE = "infer"
# In-memory Arrow bytes per table, i.e. per Parquet row group (before compression).
ROW_GROUP_BYTES = 64 * 1024 * 1024
# A file is closed once this much is written; with one more row group it stays under 512 MB.
MAX_FILE_BYTES = 448 * 1024 * 1024
_KEY_BYTES = 64  # rough in-memory size of a row's id, source and label


class ToArrowFn(beam.DoFn):
    """``PredictionResult`` elements -> ``pa.Table`` elements of ``schema`` (each a future row group).

    Buffers the results of each window until they hold about ``row_group_bytes`` of the written
    outputs, then converts them in one go. (Not ``BatchElements``: Beam's element size sampling
    would pickle every result of a PCollection of lists of results.)
    """

    def __init__(self, schema: pa.Schema, row_group_bytes: int = ROW_GROUP_BYTES):
        self._schema = schema
        self._written = frozenset(schema.names)
        self._row_group_bytes = row_group_bytes
        self._rows = Metrics.counter(metrics.NAMESPACE, "prediction_rows")

    def start_bundle(self):
        self._buffers: dict = {}  # window -> [results, bytes]

    def process(self, result: PredictionResult, w=beam.DoFn.WindowParam):
        buffer = self._buffers.setdefault(w, [[], 0])
        buffer[0].append(result)
        buffer[1] += _KEY_BYTES + sum(v.nbytes for k, v in result.inference.items() if k in self._written)
        if buffer[1] >= self._row_group_bytes:
            del self._buffers[w]
            yield self._table(buffer[0], w)

    def finish_bundle(self):
        for w, (results, _) in self._buffers.items():
            yield self._table(results, w)
        self._buffers = {}

    def _table(self, results: list[PredictionResult], w) -> WindowedValue:
        records = [r.example for r in results]
        keys = {
            cols.ID: [r[features.ID] for r in records],
            cols.SOURCE: [r[SOURCE] for r in records],
            cols.LABEL: [r[features.LABEL] or None for r in records],
        }
        self._rows.inc(len(records))
        table = pa.Table.from_batches([cols.record_batch(self._schema, keys, stack_outputs(results))])
        return WindowedValue(table, w.max_timestamp(), (w,))


class InferenceRejectionFn(beam.DoFn):
    """``(batch of one record, (type, repr, traceback))`` from RunInference -> a dead letter."""

    def __init__(self):
        self._failed = Metrics.counter(metrics.NAMESPACE, f"{STAGE}_rejected_inference_failed")

    def process(self, failed):
        batch, (_, error, _) = failed
        for record in batch:
            self._failed.inc()
            yield rejection(record, STAGE, "inference_failed", error)


class EncodeImages(beam.PTransform):
    """Valid raw records -> ``{"tables", "retried", "rejected"}`` via ``RunInference``.

    ``tables`` and ``retried`` hold ``pa.Table`` elements of ``schema``: ``retried`` those of the
    records of failed batches that succeeded alone (empty unless a batch failed). They are two
    PCollections rather than one Flatten because Beam's local runner materializes a Flatten's whole
    input, which would hold every prediction in memory.

    Args:
      model_handler: yields one ``PredictionResult`` per record with numpy outputs named like the
        columns (see ``model_handler``).
      schema: from ``parquet_schema.prediction_schema``.
    """

    def __init__(self, model_handler: ModelHandler, schema: pa.Schema):
        super().__init__()
        self._handler = model_handler
        self._schema = schema

    def expand(self, records):
        run = RunInference(self._handler, metrics_namespace=metrics.NAMESPACE).with_exception_handling()
        retry = RunInference(OneAtATime(self._handler), metrics_namespace=metrics.NAMESPACE).with_exception_handling()
        results, failed = records | "RunInference" >> run
        retried, still_failed = (
            failed.failed_inferences
            | "SplitFailedBatches" >> beam.FlatMap(lambda bad: bad[0])
            | "RetryOneByOne" >> retry
        )
        return {
            "tables": results | "ToArrow" >> beam.ParDo(ToArrowFn(self._schema)),
            "retried": retried | "RetriedToArrow" >> beam.ParDo(ToArrowFn(self._schema)),
            "rejected": still_failed.failed_inferences | "ToDeadLetters" >> beam.ParDo(InferenceRejectionFn()),
        }


class ParquetTableSink(filebasedsink.FileBasedSink):
    """A Beam file sink of ``pa.Table`` elements, each written as one row group.

    Args:
      prefix: path prefix of the files.
      schema: every table's schema.
      compression: Parquet codec.
      max_file_bytes: roll over to a new file once this much is written (None: one file per
        bundle or window).
      shard_name_template: Beam's shard name template (windowed names for streaming).
      skip_if_empty: write no file for no tables (else one file with the schema and no rows).
    """

    def __init__(
        self,
        prefix: str,
        schema: pa.Schema,
        compression: str,
        max_file_bytes: int | None,
        shard_name_template: str | None = None,
        skip_if_empty: bool = False,
    ):
        super().__init__(
            prefix,
            coder=None,
            file_name_suffix=".parquet",
            shard_name_template=shard_name_template,
            mime_type="application/x-parquet",
            compression_type=CompressionTypes.UNCOMPRESSED,  # Parquet compresses its pages itself
            max_bytes_per_shard=max_file_bytes,
            skip_if_empty=skip_if_empty,
        )
        self._schema = schema
        self._compression = compression

    def open(self, temp_path):
        handle = FileSystems.create(temp_path, self.mime_type, self.compression_type)
        # Beam's writer rolls over to a new file when ``byte_counter.bytes_written`` reaches
        # ``max_bytes_per_shard``; its own counting wrapper is not a file pyarrow can write to.
        self.byte_counter = _BytesWritten(handle)
        return handle, pq.ParquetWriter(handle, self._schema, compression=self._compression)

    def write_record(self, file_handle, value: pa.Table):
        file_handle[1].write_table(value, row_group_size=max(value.num_rows, 1))

    def close(self, file_handle):
        handle, writer = file_handle
        writer.close()
        handle.close()


class _BytesWritten:
    def __init__(self, handle):
        self._handle = handle

    @property
    def bytes_written(self) -> int:
        return self._handle.tell()


class WriteParquet(beam.PTransform):
    """``pa.Table`` elements -> ``PREFIX-*.parquet`` (windowed names for unbounded input)."""

    def __init__(
        self,
        prefix: str,
        schema: pa.Schema,
        compression: str,
        max_file_bytes: int | None = MAX_FILE_BYTES,
        skip_if_empty: bool = False,
    ):
        super().__init__()
        self._args = prefix, schema, compression, max_file_bytes, skip_if_empty

    def expand(self, tables):
        prefix, schema, compression, max_file_bytes, skip_if_empty = self._args
        if tables.is_bounded:
            sink = ParquetTableSink(prefix, schema, compression, max_file_bytes, skip_if_empty=skip_if_empty)
        else:  # several windows' writers are open at once: no per-file byte budget
            sink = ParquetTableSink(prefix, schema, compression, None, "-V-SSSSS-of-NNNNN", skip_if_empty)
        return tables | "Write" >> beam.io.Write(sink)


def build_infer_pipeline(
    p: beam.Pipeline, cfg: InferConfig, source: Source, model_handler: ModelHandler, schema: pa.Schema, output: str
) -> dict:
    """Adds read ``source`` -> validate -> encode -> write (under ``output``) to ``p``; returns the
    PCollections by name (``tables``, ``retried``, ``rejected``)."""
    checked = p | "ReadValidImages" >> ReadValidImages(source, STAGE, cfg.max_pixels)
    encoded = checked["valid"] | "EncodeImages" >> EncodeImages(model_handler, schema)
    return _write(encoded, checked["rejected"], output, schema, cfg.compression)


def _write(encoded: dict, invalid, output: str, schema: pa.Schema, compression: str) -> dict:
    prefix = os.path.join(output, PREDICTIONS)
    _ = encoded["tables"] | "WriteParquet" >> WriteParquet(prefix, schema, compression)
    retried = WriteParquet(prefix + "-retried", schema, compression, skip_if_empty=True)
    _ = encoded["retried"] | "WriteRetriedParquet" >> retried
    rejected = (invalid, encoded["rejected"]) | "MergeRejected" >> beam.Flatten()
    _ = rejected | "WriteRejected" >> WriteRejected(os.path.join(output, REJECTED, "rejected"))
    return {**encoded, "rejected": rejected}


class ReadWatchedFileFn(beam.DoFn):
    """A watched file's ``FileMetadata`` -> its raw record (see ``sources``), or, tagged
    ``unreadable``, a ``readers.Unreadable`` when the file cannot be read."""

    def __init__(self, root: str):
        self._reader = ImageFileReader(root, ReaderOptions())

    def setup(self):
        self._reader.setup()

    def process(self, match):
        for item in self._reader.read(FileUnit((match.path,))):
            yield beam.pvalue.TaggedOutput(UNREADABLE, item) if isinstance(item, Unreadable) else item


class FirstSightingFn(beam.DoFn):
    """``(path, FileMetadata)`` -> the metadata, the first time a path is seen (per-path state)."""

    SEEN = userstate.ReadModifyWriteStateSpec("seen", BooleanCoder())

    def process(self, keyed, seen=beam.DoFn.StateParam(SEEN)):  # noqa: B008 (Beam's state parameter idiom)
        if not seen.read():
            seen.write(True)
            yield keyed[1]


def build_watch_pipeline(
    p: beam.Pipeline,
    cfg: InferConfig,
    model_handler: ModelHandler,
    schema: pa.Schema,
    start: Timestamp,
    stop: Timestamp = MAX_TIMESTAMP,
) -> dict:
    """Adds watch -> read -> validate -> window -> encode -> write (under ``cfg.output``) to ``p``.

    Every ``cfg.poll_seconds`` from ``start`` to ``stop`` the folder ``cfg.watch`` is listed
    (recursively, first-level subfolders name labels as in batch); files already there at the
    first poll are read too. A path is read once: rewriting a file does not read it again.
    Returns the PCollections by name (``tables``, ``retried``, ``rejected``).
    """
    root = os.path.abspath(cfg.watch) if "://" not in cfg.watch else cfg.watch.rstrip("/")
    # Beam's Watch-based deduplication does not wait between polls on the local runners, so the
    # folder is polled by PeriodicImpulse (has_deduplication=False) and deduplicated by path here.
    matches = p | "WatchFolder" >> fileio.MatchContinuously(
        os.path.join(root, "**"),
        interval=cfg.poll_seconds,
        has_deduplication=False,
        start_timestamp=start,
        stop_timestamp=stop,
    )
    read = (
        matches
        | "KeyByPath" >> beam.Map(lambda match: (match.path, match))
        | "FirstSighting" >> beam.ParDo(FirstSightingFn())
        | "Window" >> beam.WindowInto(window.FixedWindows(cfg.window_seconds))
        | "ReadImageFiles" >> beam.ParDo(ReadWatchedFileFn(root)).with_outputs(UNREADABLE, main="records")
    )
    checked = validate_read({"records": read.records, "rejected": read[UNREADABLE]}, STAGE, cfg.max_pixels)
    encoded = checked["valid"] | "EncodeImages" >> EncodeImages(model_handler, schema)
    return _write(encoded, checked["rejected"], cfg.output, schema, cfg.compression)


@dataclasses.dataclass(frozen=True)
class InferResult:
    """What an infer run wrote and counted (``manifest`` is None in watch mode)."""

    output: str
    counts: dict[str, int]
    manifest: dict | None = None

    @property
    def rejected(self) -> int:
        return sum(v for k, v in self.counts.items() if k.startswith(f"{STAGE}_rejected_"))

    def summary(self) -> str:
        """Rows, rejects and RunInference's metrics (inferences, batch sizes, latency), for people."""
        lines = [
            f"wrote {self.counts.get('prediction_rows', 0)} Parquet rows, {self.rejected} rejected "
            f"(of {self.counts.get('records_read', 0)} read) -> {self.output}"
        ]
        dists = (self.manifest or {}).get("metrics", {}).get("distributions", {})
        sizes, latency = dists.get("inference_request_batch_size"), dists.get("inference_batch_latency_micro_secs")
        if sizes and latency:
            lines.append(
                f"RunInference: {self.counts.get('num_inferences', 0)} inferences in {sizes['count']} batches "
                f"(size mean {sizes['mean']:.0f}, max {sizes['max']}), {latency['mean'] / 1000:.1f} ms per batch, "
                f"{self.counts.get('failed_batches_counter', 0)} failed batch(es) retried one by one"
            )
        return "\n".join(lines)


def make_model_handler(cfg: InferConfig) -> HourglassModelHandler:
    """The handler for ``cfg``: the cheaper ``encode`` signature when only latents are written."""
    signature = "encode" if cfg.outputs == (cols.LATENT,) else "serving_default"
    return HourglassModelHandler(cfg.model_dir, cfg.batch_size_min, cfg.batch_size_max, signature)


def run_infer(
    cfg: InferConfig, beam_args: list[str] | None = None, model_handler: ModelHandler | None = None
) -> InferResult:
    """Runs the infer job (batch, or streaming with ``cfg.watch``).

    Args:
      cfg: the job's config.
      beam_args: Beam pipeline options.
      model_handler: defaults to :func:`make_model_handler` (tests pass their own).

    Raises:
      FileNotFoundError: the model folder holds no export.
      ValueError: bad input spec; ``denoised`` asked of a model not trained to denoise; an output
        folder that exists and is not an infer output.
    """
    info = read_model_info(cfg.model_dir)
    if cfg.outputs is not None and cols.DENOISED in cfg.outputs and not cols.is_denoising(info):
        raise ValueError(
            f"--outputs asks for {cols.DENOISED!r} but the model in {cfg.model_dir} was not trained to denoise "
            '(model_info.json has no "denoising": true); drop it from --outputs or train with --noise'
        )
    schema = cols.prediction_schema(info, cfg.outputs or cols.OUTPUT_COLUMNS, cfg.pixels)
    handler = model_handler or make_model_handler(cfg)
    options = PipelineOptions(beam_args or [])
    if cfg.watch is not None:
        return _run_watch(cfg, options, handler, schema)

    source = resolve_source(cfg.input, cfg.reader, cfg.limit)  # fails early on a bad input, before staging
    target = publish.target_dir(cfg.output, cfg.run_id)
    staging = publish.start_staging(target)
    started = time.time()
    try:
        write_config(cfg, staging, CONFIG_NAME)
        with beam.Pipeline(options=options) as p:
            build_infer_pipeline(p, cfg, source, handler, schema, staging)
        counts = metrics.counters(p.result)
        manifest = publish.write_manifest(
            staging,
            {
                "run_id": cfg.run_id,
                "input": cfg.input,
                "model": publish.model_identity(info, cfg.model_dir),
                "columns": schema.names,
                "pixels": cfg.pixels,
                "compression": cfg.compression,
                "records_read": counts.get("records_read", 0),
                "rejected": {
                    k.removeprefix(f"{STAGE}_rejected_"): v
                    for k, v in counts.items()
                    if k.startswith(f"{STAGE}_rejected_")
                },
                "metrics": {"counters": counts, "distributions": metrics.distributions(p.result)},
                "timing": _timing(started),
            },
        )
        publish.publish(staging, target)
    except BaseException:
        publish.discard(staging)
        raise
    log.info("infer counters:\n%s", metrics.format_counters(counts))
    return InferResult(target, counts, manifest)


def _run_watch(cfg: InferConfig, options: PipelineOptions, handler: ModelHandler, schema: pa.Schema) -> InferResult:
    if not os.path.isdir(cfg.watch) and "://" not in cfg.watch:
        raise ValueError(f"--watch {cfg.watch!r} is not a folder; create it or pass the folder images land in")
    write_config(cfg, cfg.output, CONFIG_NAME)
    start = Timestamp.now()
    stop = start + cfg.watch_seconds if cfg.watch_seconds else MAX_TIMESTAMP
    log.info("watching %s every %gs, %gs windows -> %s", cfg.watch, cfg.poll_seconds, cfg.window_seconds, cfg.output)
    with beam.Pipeline(options=options) as p:
        build_watch_pipeline(p, cfg, handler, schema, start, stop)
    counts = metrics.counters(p.result)
    log.info("infer counters:\n%s", metrics.format_counters(counts))
    return InferResult(cfg.output, counts)


def _timing(started: float) -> dict:
    finished = time.time()
    iso = lambda t: datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")  # noqa: E731
    return {"started": iso(started), "finished": iso(finished), "seconds": round(finished - started, 3)}
