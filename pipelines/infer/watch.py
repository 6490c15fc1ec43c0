"""The watch (``--watch``, ``--watch-mode micro-batch``, the default): encode image files as they land in
a folder, and publish each window as it closes, on any runner.

Every ``poll_seconds`` the loop lists the watched folder (recursively, on any Beam filesystem) and
takes the files it has not read yet. A name starting with ``.`` (a file or a folder, at any level)
is never read, so a writer that writes ``.name.part`` beside its final name and then renames it is
safe. A file belongs to the window in which it was first listed (windows ``window_seconds`` wide,
aligned to the epoch, in UTC). The files of the open window are encoded by bounded Beam jobs
(micro-batches, :func:`build_files_pipeline`, on the local runner with ``bundle_files``' light
sinks): one whenever ``BATCH_FILES`` files are waiting and
one when the window ends, each writing into the window's hidden staging folder. When the window
has ended, the loop writes the window's ``_manifest.json`` (``window_start``, ``window_end``,
``files_read``, ``files_vanished``, rows, rejects by reason, ``drift``, the model's identity, the batches) and
publishes the folder by one rename (``publish``) as the Hive partition
``OUTPUT/window_start=2026-12-01T20%3A54%3A00Z/`` (``:`` escaped as Spark writes it; pandas,
pyarrow, DuckDB and Spark read the value back as ``2026-12-01T20:54:00Z``). A window in which no
file landed publishes nothing.

Read once: the ids of the files read (their paths under the watched folder) are kept in
``OUTPUT/_watched.json``, written after every published window, and the manifests of the
partitions published since it are added at start, so a restarted watch goes on where it stopped;
ids of files no longer in the folder are dropped from it, so it holds at most the folder's files.
A file that vanishes between listing and reading is skipped (counter ``watch_files_vanished``), not
dead-lettered, and read if it comes back. A restart inside a window already published adds to
that partition (its earlier files are copied into the new staging folder).

Stopping: the first SIGTERM or SIGINT (or the end of ``watch_seconds``) lets the running batch
finish, encodes the open window's waiting files, publishes it and returns (exit 0); a second one
exits at once (code 128 + signal) after deleting the open window's staging folder, so nothing
partial is ever visible (its files are read again by the next watch). The model handler is a
parameter; the model is loaded once for the whole watch (held across the batches' pipelines).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import posixpath
import signal
import threading
import time
import urllib.parse
import uuid

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from models.model_info import Calibration, ModelInfo
from pipelines import counters
from pipelines.config import ImageLimits, InferConfig, ReaderOptions, write_config
from pipelines.counters import NAMESPACE
from pipelines.infer import drift, manifest, parquet, publish
from pipelines.infer.bundle_files import WriteLinesFn, WriteTablesFn
from pipelines.infer.encode import STAGE, EncodeImages
from pipelines.inputs.formats.base import Unreadable
from pipelines.inputs.formats.image_files import FILES_PER_UNIT, FileUnit, ImageFileReader
from pipelines.inputs.listing import has_hidden_part
from pipelines.inputs.validation import validate_read
from pipelines.runner import local_runner
from transforms.errors import UserError

log = logging.getLogger(__name__)

UNREADABLE = "unreadable"
VANISHED = "watch_files_vanished"
WINDOW_START = "window_start"
STATE = "_watched.json"
# A batch is run as soon as this many files wait (else when the window ends): bounds the work left
# when a window ends, while a trickle of files costs one Beam job per window.
BATCH_FILES = 1000


def watch_root(folder: str) -> str:
    """The watched folder as ids are relative to (absolute for local paths)."""
    return folder.rstrip("/") if "://" in folder else os.path.abspath(folder)


def window_start(seconds: float, width: float) -> float:
    """The start of the ``width``-second window holding the POSIX time ``seconds``."""
    return math.floor(seconds / width) * width


def partition_name(start: float) -> str:
    """``window_start=2026-12-01T20%3A54%3A00Z``: the Hive partition of the window starting at ``start``."""
    value = manifest.iso(start).replace("+00:00", "Z")
    return f"{WINDOW_START}={urllib.parse.quote(value, safe='')}"


def list_finished(root: str) -> dict[str, str]:
    """``{id: path}`` of the files under ``root`` whose path under it has no hidden part (names
    starting with ``.``, which include files still being written under a temporary name; ``listing``)."""
    found = {}
    for metadata in FileSystems.match([FileSystems.join(root, "**")])[0].metadata_list:
        record_id = metadata.path[len(root) :].lstrip("/")
        if record_id and not has_hidden_part(record_id):
            found[record_id] = metadata.path
    return found


class ReadWatchedFilesFn(beam.DoFn):
    """A :class:`FileUnit` -> its raw records (see ``inputs.formats.base``) and, tagged
    ``unreadable``, the ``Unreadable`` items; a file gone since the listing is only counted."""

    def __init__(self, root: str):
        self._reader = ImageFileReader(root, ReaderOptions())
        self._vanished = Metrics.counter(NAMESPACE, VANISHED)

    def setup(self):
        self._reader.setup()

    def process(self, unit: FileUnit):
        for path in unit.paths:
            item = self._reader.read_file(path)
            if not isinstance(item, Unreadable):
                yield item
            elif FileSystems.exists(path):
                yield beam.pvalue.TaggedOutput(UNREADABLE, item)
            else:
                self._vanished.inc()


def build_files_pipeline(
    p: beam.Pipeline,
    cfg: InferConfig,
    root: str,
    paths: list[str],
    model_handler: ModelHandler,
    schema: pa.Schema,
    output: str,
    light: bool = True,
    calibration: Calibration | None = None,
) -> dict:
    """Adds read ``paths`` (image files under ``root``) -> validate -> encode -> write (under
    ``output``) to ``p``; returns the PCollections by name (``tables``, ``retried``, ``rejected``).

    ``light`` writes one file per bundle (``bundle_files``: the local runner), else Beam's file sinks;
    ``calibration`` (the model's) counts the drift bins.
    """
    units = [FileUnit(tuple(paths[i : i + FILES_PER_UNIT])) for i in range(0, len(paths), FILES_PER_UNIT)]
    read = (
        p
        | "Files" >> beam.Create(units, reshuffle=len(units) > 1)
        | "ReadFiles" >> beam.ParDo(ReadWatchedFilesFn(root)).with_outputs(UNREADABLE, main="records")
    )
    checked = validate_read(
        {"records": read.records, "rejected": read[UNREADABLE]}, STAGE, ImageLimits.of(cfg), decode=False
    )
    encoded = checked["valid"] | "EncodeImages" >> EncodeImages(model_handler, schema, calibration)
    if not light:
        return parquet.write_predictions(encoded, checked["rejected"], output, schema, cfg.compression)
    prefix = posixpath.join(output, parquet.PREDICTIONS)
    _ = encoded["tables"] | "WriteTables" >> beam.ParDo(WriteTablesFn(prefix, schema, cfg.compression))
    retried = WriteTablesFn(prefix + "-retried", schema, cfg.compression)
    _ = encoded["retried"] | "WriteRetriedTables" >> beam.ParDo(retried)
    rejected = (checked["rejected"], encoded["rejected"]) | "MergeRejected" >> beam.Flatten()
    _ = rejected | "WriteRejected" >> beam.ParDo(WriteLinesFn(posixpath.join(output, parquet.REJECTED, "rejected")))
    return {**encoded, "rejected": rejected}


class DoneSet:
    """The ids of the files read by the watches of one output (see the module docstring)."""

    def __init__(self, output: str, ids: set[str], last: str | None):
        self._path = posixpath.join(output, STATE)
        self.ids, self.last = ids, last

    @classmethod
    def load(cls, output: str) -> DoneSet:
        state = {}
        if tf.io.gfile.exists(posixpath.join(output, STATE)):
            with tf.io.gfile.GFile(posixpath.join(output, STATE)) as f:
                state = json.load(f)
        ids, last = set(state.get("files", ())), state.get("partition")
        names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(output)) if tf.io.gfile.isdir(output) else []
        for name in names:  # partitions published after the state was last written (or all, without one)
            if name.startswith(WINDOW_START + "=") and (last is None or name >= last):
                with contextlib.suppress(tf.errors.NotFoundError):
                    ids.update(publish.read_manifest(posixpath.join(output, name)).get("files_read", ()))
                    last = name
        return cls(output, ids, last)

    def keep_only(self, listed: dict[str, str]) -> None:
        """Forgets the ids that are no longer in the folder."""
        self.ids.intersection_update(listed)

    def add(self, ids, partition: str) -> None:
        """Adds the files of a published partition and writes the state (temporary file, then rename)."""
        self.ids.update(ids)
        self.last = max(self.last or partition, partition)
        temp = posixpath.join(posixpath.dirname(self._path), f".{STATE}.tmp")
        with tf.io.gfile.GFile(temp, "w") as f:
            json.dump({"partition": self.last, "files": sorted(self.ids)}, f)
        tf.io.gfile.rename(temp, self._path, overwrite=True)


class _Watch:
    """What every window of one watch shares: the config, Beam options, handler and schema."""

    def __init__(self, cfg: InferConfig, options: PipelineOptions, handler, schema: pa.Schema, info: ModelInfo):
        self.cfg, self.options, self.handler, self.schema = cfg, options, handler, schema
        self.calibration = info.calibration
        self.root, self.output = watch_root(cfg.watch), cfg.output.rstrip("/")
        self.fields = manifest.output_fields(cfg, info, schema)
        self.token = uuid.uuid4().hex[:8]  # keeps file names of this watch apart from earlier ones
        self.batches = 0
        self.local = _is_local(options)


class _Window:
    """The open window: its staging folder, the files waiting and read, the counters so far."""

    def __init__(self, watch: _Watch, start: float):
        self.start, self.end = start, start + watch.cfg.window_seconds
        self.target = posixpath.join(watch.output, partition_name(start))
        self.previous = publish.read_manifest(self.target) if tf.io.gfile.exists(self.target) else None
        self.staging = publish.start_staging(self.target)
        if self.previous:  # a restart inside a published window: keep what it holds
            _copy_outputs(self.target, self.staging)
        self.pending: dict[str, str] = {}
        self.read: set[str] = set()  # by this watch
        self.counts: dict[str, int] = {}  # of this watch
        self.batches: list[dict] = []
        self.opened = time.time()

    def knows(self, record_id: str) -> bool:
        return record_id in self.pending or record_id in self.read

    def encode(self, watch: _Watch) -> None:
        """Runs one batch over the waiting files into the staging folder."""
        if not self.pending:
            return
        ids = sorted(self.pending)
        paths = [self.pending[i] for i in ids]
        watch.batches += 1
        tag = f"{watch.token}-{watch.batches:05d}"
        out = posixpath.join(self.staging, f".batch-{tag}")
        started = time.time()
        with beam.Pipeline(runner=local_runner(watch.options), options=watch.options) as p:
            build_files_pipeline(
                p, watch.cfg, watch.root, paths, watch.handler, watch.schema, out, watch.local, watch.calibration
            )
        counts = counters.counters(p.result)
        _move_outputs(out, self.staging, tag)
        if counts.get(VANISHED):
            ids = [i for i, path in zip(ids, paths, strict=True) if FileSystems.exists(path)]
        self.read.update(ids)
        self.pending = {}
        self.counts = manifest.add_counts(self.counts, counts)
        seconds = round(time.time() - started, 3)
        self.batches.append({"files": len(paths), "seconds": seconds, "finished": manifest.iso(time.time())})
        log.info("%s: encoded %d files in %.1f s", posixpath.basename(self.target), len(paths), seconds)
        del p
        gc.collect()  # each batch builds a new pipeline: let its objects go before the next one

    def publish(self, watch: _Watch, stopped: bool) -> dict:
        """Writes the manifest and renames the staging folder into place; returns the manifest."""
        now = time.time()
        previous = self.previous or {}
        counts = manifest.add_counts(previous.get("metrics", {}).get("counters", {}), self.counts)
        read = self.read.union(previous.get("files_read", ()))
        fields = {
            WINDOW_START: manifest.iso(self.start),
            "window_end": manifest.iso(self.end),
            "closed": "stopped" if stopped else "window_end",
            "watch": watch.root,
            "files_read": sorted(read),
            "files_vanished": counts.get(VANISHED, 0),
            **watch.fields,
            **manifest.count_fields(counts, watch.calibration),
            "batches": previous.get("batches", []) + self.batches,
            "timing": manifest.timing(self.opened, now),
            "published_seconds_after_window_end": round(now - self.end, 3),
        }
        write_config(watch.cfg, self.staging, parquet.CONFIG_NAME)
        written = publish.write_manifest(self.staging, fields)
        publish.publish(self.staging, self.target)
        log.info(
            "published %s: %d rows, %d rejected, %d files (%.1f s after the window's end)",
            self.target,
            written["rows"],
            sum(written["rejected"].values()),
            len(read),
            now - self.end,
        )
        return written


def _move_outputs(batch_dir: str, staging: str, tag: str) -> None:
    """Moves one batch's files into the window's staging folder, ``tag`` added to their names
    (``predictions-TAG-00000-of-00001.parquet``, ``_rejected/rejected-TAG-...jsonl``); empty dead-letter
    files are dropped."""
    for folder, _, names in tf.io.gfile.walk(batch_dir):
        relative = folder[len(batch_dir) :].strip("/")
        for name in names:
            source = posixpath.join(folder, name)
            if relative and tf.io.gfile.stat(source).length == 0:
                continue
            prefix, rest = name.split("-", 1)
            tf.io.gfile.makedirs(posixpath.join(staging, relative))
            tf.io.gfile.rename(source, posixpath.join(staging, relative, f"{prefix}-{tag}-{rest}"))
    tf.io.gfile.rmtree(batch_dir)


def _copy_outputs(target: str, staging: str) -> None:
    """Copies a published window's Parquet and dead-letter files into a new staging folder."""
    for folder, _, names in tf.io.gfile.walk(target):
        relative = folder[len(target) :].strip("/")
        for name in names:
            if relative or name.endswith(".parquet"):
                tf.io.gfile.makedirs(posixpath.join(staging, relative))
                tf.io.gfile.copy(posixpath.join(folder, name), posixpath.join(staging, relative, name))


class _StopSignals:
    """SIGTERM and SIGINT while the watch runs (see the module docstring); installed only in the
    main thread, the previous handlers restored after."""

    def __init__(self):
        self.requested = threading.Event()
        self.staging: str | None = None  # the open window's staging folder
        self._publishing = False
        self._exit_after: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def wait(self, seconds: float) -> None:
        self.requested.wait(max(seconds, 0.0))

    @contextlib.contextmanager
    def publishing(self):
        """A second signal inside waits for the renames to end."""
        self._publishing = True
        try:
            yield
        finally:
            self._publishing = False
            if self._exit_after is not None:
                self._exit_now(self._exit_after)

    def _handle(self, signum, _frame):
        if not self.requested.is_set():
            log.info("%s: publishing the open window, then stopping (send it again to stop at once)", _name(signum))
            self.requested.set()
        elif self._publishing:
            self._exit_after = signum
        else:
            self._exit_now(signum)

    def _exit_now(self, signum: int):
        if self.staging is not None:
            publish.discard(self.staging)
        log.warning(
            "%s again: stopped at once; the open window was not published (its files are read again)", _name(signum)
        )
        logging.shutdown()
        os._exit(128 + signum)


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def _is_local(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    return runner is None or "direct" in str(runner).lower()


def run_watch(
    cfg: InferConfig, options: PipelineOptions, handler: ModelHandler, schema: pa.Schema, info: ModelInfo
) -> tuple[dict[str, int], list[dict]]:
    """Runs the watch until stopped (see the module docstring); returns the counters added over
    the windows and the manifests of the windows published.

    Raises:
      UserError: ``cfg.watch`` is not a folder, or ``cfg.output`` is inside it.
    """
    watch = _Watch(cfg, options, handler, schema, info)
    if "://" not in cfg.watch and not os.path.isdir(cfg.watch):
        raise UserError(f"--watch {cfg.watch!r} is not a folder; create it or pass the folder images land in")
    if (watch.output + "/").startswith(watch.root + "/"):
        raise UserError(f"--output {cfg.output!r} is inside --watch {cfg.watch!r}; write the predictions elsewhere")
    done = DoneSet.load(watch.output)
    # Held for the whole watch, so that each batch's RunInference finds the model loaded (``shared``).
    model = handler.load_model() if watch.local else None
    deadline = time.time() + cfg.watch_seconds if cfg.watch_seconds else math.inf
    log.info(
        "watching %s every %gs, %gs windows -> %s/%s=... (%d files read before)",
        watch.root,
        cfg.poll_seconds,
        cfg.window_seconds,
        watch.output,
        WINDOW_START,
        len(done.ids),
    )
    totals: dict[str, int] = {}
    published: list[dict] = []
    window: _Window | None = None

    def close(stopped: bool) -> None:
        nonlocal window, totals
        window.encode(watch)
        with stop.publishing():
            published.append(window.publish(watch, stopped))
            stop.staging = None
        done.add(window.read, posixpath.basename(window.target))
        totals = manifest.add_counts(totals, window.counts)
        target, window = window.target, None
        if cfg.fail_on_drift:
            drift.check(published[-1]["drift"], target)

    with _StopSignals() as stop:
        try:
            while True:
                now = time.time()
                if window is not None and now >= window.end:
                    close(stopped=False)
                if stop.requested.is_set() or now >= deadline:
                    break
                listed = list_finished(watch.root)
                done.keep_only(listed)
                new = {i: p for i, p in listed.items() if i not in done.ids and not (window and window.knows(i))}
                if new:
                    if window is None:
                        window = _Window(watch, window_start(now, cfg.window_seconds))
                        stop.staging = window.staging
                    window.pending.update(new)
                    if len(window.pending) >= BATCH_FILES:
                        window.encode(watch)
                wake = min(now + cfg.poll_seconds, window.end if window else math.inf, deadline)
                stop.wait(wake - time.time())
            if window is not None:
                close(stopped=True)
        except BaseException:
            if window is not None:
                publish.discard(window.staging)
            raise
    del model
    return totals, published
