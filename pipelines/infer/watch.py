"""Streaming inference (``--watch``): encode image files as they land in a folder, one set of files per window.

``build_watch_pipeline`` lists a folder every ``poll_seconds`` with Beam's ``MatchContinuously``,
reads each new file once and writes one set of Parquet files per fixed window of
``window_seconds`` (``predictions-[START, END)-*.parquet``) and its ``_rejected/`` files. The model
handler is a parameter, so tests inject their own.
"""

from __future__ import annotations

import logging
import os

import apache_beam as beam
import pyarrow as pa
from apache_beam.coders import BooleanCoder
from apache_beam.io import fileio
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import userstate, window
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from pipelines import counters
from pipelines.config import InferConfig, ReaderOptions, write_config
from pipelines.infer.encode import STAGE, EncodeImages
from pipelines.infer.parquet import CONFIG_NAME, write_predictions
from pipelines.inputs.formats.base import Unreadable
from pipelines.inputs.formats.image_files import FileUnit, ImageFileReader
from pipelines.inputs.validation import validate_read
from transforms.errors import UserError

log = logging.getLogger(__name__)

UNREADABLE = "unreadable"


class ReadWatchedFileFn(beam.DoFn):
    """A watched file's ``FileMetadata`` -> its raw record (see ``inputs.formats.base``), or, tagged
    ``unreadable``, an ``Unreadable`` when the file cannot be read."""

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
    return write_predictions(encoded, checked["rejected"], cfg.output, schema, cfg.compression)


def run_watch(cfg: InferConfig, options: PipelineOptions, handler: ModelHandler, schema: pa.Schema) -> dict[str, int]:
    """Runs the watch until ``cfg.watch_seconds`` have passed (or forever); returns the counters."""
    if not os.path.isdir(cfg.watch) and "://" not in cfg.watch:
        raise UserError(f"--watch {cfg.watch!r} is not a folder; create it or pass the folder images land in")
    write_config(cfg, cfg.output, CONFIG_NAME)
    start = Timestamp.now()
    stop = start + cfg.watch_seconds if cfg.watch_seconds else MAX_TIMESTAMP
    log.info("watching %s every %gs, %gs windows -> %s", cfg.watch, cfg.poll_seconds, cfg.window_seconds, cfg.output)
    with beam.Pipeline(options=options) as p:
        build_watch_pipeline(p, cfg, handler, schema, start, stop)
    return counters.counters(p.result)
