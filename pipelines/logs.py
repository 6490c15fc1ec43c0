"""What a run prints: our progress by default, the stack's noise only with ``--verbose``.

Three levels (``--verbose`` or ``--quiet``, before or after the command):

- ``quiet``: errors and the command's summary (stdout) only.
- ``normal`` (the default): our own log lines (loggers ``pipelines``, ``models``, ``transforms``:
  each stage's start and end, records read so far, training epochs) and every error; TensorFlow's,
  absl's, CUDA's and Beam's start-up chatter is hidden.
- ``verbose``: everything, TensorFlow's C++ log included.

How the noise is hidden, at each source:

- TensorFlow's C++ log obeys ``TF_CPP_MIN_LOG_LEVEL`` (set here before TensorFlow is imported, and
  inherited by Beam's worker processes): it hides CUDA's ``failed call to cuInit`` and grappler's
  ``remapper failed`` errors, which are harmless on a CPU machine.
- Two lines come before absl's log is initialised and obey no setting (``WARNING: All log messages
  before absl::InitializeLog() ...`` and ``cudart_stub.cc ... Could not find cuda drivers``, once per
  process that imports TensorFlow): :func:`native_stderr_filtered` drops exactly those from file
  descriptor 2, which Beam's worker processes share.
- Python loggers (Beam, absl, TensorFlow, ``py.warnings``) pass a :class:`_Policy` filter: ours at
  INFO and above, the others at ERROR and above, cut to their first line: Beam logs the error of a
  failing step with its traceback and then raises it, and the command shows the raised error once
  (a message for a :class:`~transforms.errors.UserError`, the traceback for a bug).
- Beam's multi-process runner relays each worker's log entry as protobuf text (``Worker: severity:
  WARN timestamp {...}``): :class:`_WorkerEntries` turns it back into ``worker: MESSAGE`` at its own
  level, so it passes the same policy as a log line of this process.

This module imports no TensorFlow, Beam or PIL (the command line imports it at start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator

QUIET, NORMAL, VERBOSE = "quiet", "normal", "verbose"
OWN_LOGGERS = ("pipelines", "models", "transforms")
# Lines written before absl's log is initialised: no log level setting reaches them.
_NATIVE_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} [\d:.]+\s+\d+ cudart_stub\.cc:\d+\] .*)\r?\n$"
)
_WORKER_LOGGER = "apache_beam.runners.portability.local_job_service"
_SEVERITIES = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "NOTICE": 20, "WARN": 30, "ERROR": 40, "CRITICAL": 50}
# Where our packages live (a worker's log entry names the file that logged it).
_OWN_FOLDERS = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name) + os.sep for name in OWN_LOGGERS
)

log = logging.getLogger(__name__)


def configure(level: str = NORMAL) -> None:
    """Sets the log level of this process and of the worker processes it starts.

    Call it before TensorFlow is imported (the C++ log reads its level once, at import).
    """
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if level == VERBOSE else "3"
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)  # a second call (tests invoke the CLI again) replaces ours only
    handler = _Handler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_WorkerEntries())
    handler.addFilter(_Policy(level))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == VERBOSE else logging.INFO)
    logging.captureWarnings(True)
    _NativeFilter.verbose = level == VERBOSE


class _Handler(logging.StreamHandler):
    """The handler :func:`configure` installs: writes to whatever ``sys.stderr`` is at the time."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


class _Policy(logging.Filter):
    """Our loggers at INFO and above (quiet: ERROR), the others at ERROR and cut to their first line
    (verbose: everything, whole)."""

    def __init__(self, level: str):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if self.level == VERBOSE:
            return True
        if record.name.split(".")[0] in OWN_LOGGERS:
            return record.levelno >= (logging.ERROR if self.level == QUIET else logging.INFO)
        if record.levelno < logging.ERROR:
            return False
        record.msg, record.args = record.getMessage().split("\n", 1)[0], ()
        record.exc_info = record.exc_text = record.stack_info = None
        return True


class _WorkerEntries(logging.Filter):
    """Rewrites a worker's relayed log entry (protobuf text) as ``worker: MESSAGE``, at the entry's
    level and under the logger ``pipelines.worker`` when one of our modules logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != _WORKER_LOGGER or record.msg != "Worker: %s" or not record.args:
            return True
        from apache_beam.portability.api import beam_fn_api_pb2  # only when a worker's entry is relayed
        from google.protobuf import text_format

        entry = beam_fn_api_pb2.LogEntry()
        try:
            text_format.Parse(str(record.args[0]), entry)
        except text_format.ParseError:
            return True
        severity = beam_fn_api_pb2.LogEntry.Severity.Enum.Name(entry.severity)
        record.levelno = _SEVERITIES.get(severity, logging.INFO)
        record.levelname = logging.getLevelName(record.levelno)
        record.name = "pipelines.worker" if entry.log_location.startswith(_OWN_FOLDERS) else "apache_beam.worker"
        record.msg, record.args = "worker: %s", (entry.message + (f"\n{entry.trace}" if entry.trace else ""),)
        return True


class _NativeFilter:
    """Copies lines from a pipe to the real stderr, dropping the pre-initialisation lines of absl
    (see the module docstring) unless ``verbose``."""

    verbose = False

    def __init__(self) -> None:
        self.target = os.dup(2)
        read, write = os.pipe()
        sys.stderr.flush()
        os.dup2(write, 2)
        os.close(write)
        self.reader = os.fdopen(read, "rb")
        # Python's own writes (log lines, tracebacks) go straight to the real stderr, so nothing of
        # ours waits in the pipe (or is lost by an os._exit). Open until close().
        sys.stderr = open(  # noqa: SIM115
            os.dup(self.target), "w", buffering=1, encoding=sys.__stderr__.encoding, errors="replace"
        )
        self.thread = threading.Thread(target=self._copy, name="stderr-filter", daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        for line in self.reader:
            if self.verbose or not _NATIVE_NOISE.match(line):
                os.write(self.target, line)

    def close(self) -> None:
        """Restores stderr and waits for the lines still in the pipe (written by this process or
        by worker processes that have ended)."""
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = sys.__stderr__
        os.dup2(self.target, 2)
        self.thread.join(timeout=2)


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Routes file descriptor 2 through :class:`_NativeFilter` for the block (as it is when there is
    no file descriptor 2 to route)."""
    try:
        native = _NativeFilter()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        native.close()


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Logs ``NAME: started`` and ``NAME: finished in S s`` (or ``failed after S s``) around a stage."""
    log.info("%s: started", name)
    started = time.time()
    try:
        yield
    except BaseException:
        log.info("%s: failed after %.0f s", name, time.time() - started)
        raise
    log.info("%s: finished in %.0f s", name, time.time() - started)
