"""What a run prints: our progress by default, errors and the summary with --quiet, the stack's log with
--verbose; worker entries as text; progress lines while Beam runs."""

import json
import logging
import re
import subprocess

import apache_beam as beam
import pytest
from apache_beam.portability.api import beam_fn_api_pb2
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.counters import LogProgressFn
from pipelines.logs import NORMAL, QUIET, VERBOSE, _Policy, _WorkerEntries, stage
from tests.helpers import HOURGLASS, ROOT

# Lines of TensorFlow, absl, CUDA, grappler and Beam that a normal run used to print.
NOISE = [
    r"absl::InitializeLog",
    r"^[IWE]\d{4} \d\d:\d\d:\d\d",  # absl-format C++ log lines (cudart_stub, cuda_platform, grappler)
    r"cuInit",
    r"remapper failed",
    r"Missing pipeline option \(runner\)",
    r"Resource module is not available",
    r"No shards found to finalize",
    r"Worker: severity",
    r"timestamp \{",
]


def _noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(re.search(p, line) for p in NOISE)]


def _hourglass(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([HOURGLASS, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.slow
@pytest.mark.integration
def test_a_normal_run_shows_our_progress_and_none_of_the_noise(tmp_path):
    done = _hourglass("preprocess", "--input", "builtin:mnist", "--limit", "30", "--output", "data", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _noise(done.stderr) == []
    lines = done.stderr.splitlines()
    assert any(line.endswith("preprocess: started") for line in lines)
    assert any(re.search(r"preprocess: finished in \d+ s$", line) for line in lines)
    assert any(f"into {tmp_path / 'data'}" in line for line in lines)
    assert done.stdout.startswith("wrote ") and f"-> {tmp_path / 'data'}" in done.stdout
    written = json.loads((tmp_path / "data" / "config.json").read_text())
    assert written["output"] == str(tmp_path / "data")  # resolved against the working directory


@pytest.mark.slow
@pytest.mark.integration
def test_quiet_leaves_only_the_summary(tmp_path):
    args = ("preprocess", "--quiet", "--input", "builtin:mnist", "--limit", "30", "--output", "d")  # after the command
    done = _hourglass(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""
    assert done.stdout.splitlines() == [f"wrote {_split_counts(tmp_path / 'd')}, 0 rejected -> {tmp_path / 'd'}"]


def _split_counts(data) -> str:
    splits = json.loads((data / "stats.json").read_text())["splits"]
    return f"{splits['train']['records']} train + {splits['eval']['records']} eval records"


@pytest.mark.integration
def test_verbose_brings_back_tensorflows_log_and_errors_stay_readable(tmp_path):
    args = ("preprocess", "--config", "missing.yaml", "--input", "builtin:mnist", "--output", "d")
    quiet = _hourglass(*args, cwd=tmp_path)  # reading a config imports TensorFlow, then fails
    verbose = _hourglass("--verbose", *args, cwd=tmp_path)  # before the command
    assert quiet.returncode == verbose.returncode == 1
    assert quiet.stderr.splitlines() == ["Error: config file missing.yaml not found"]
    assert re.search(r"^[IWE]\d{4} .*\.cc:\d+\]", verbose.stderr, re.MULTILINE)  # TensorFlow's C++ log
    assert verbose.stderr.splitlines()[-1] == "Error: config file missing.yaml not found"


@pytest.mark.parametrize(
    "argv", [["--verbose", "--quiet", "models"], ["--verbose", "train", "--quiet", "--data", "d", "--model-dir", "m"]]
)
def test_verbose_and_quiet_exclude_each_other(argv):
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2 and "pass at most one of --verbose and --quiet" in result.output


def _relayed(severity: str, message: str, location: str) -> logging.LogRecord:
    """A worker's log entry as Beam's multi-process runner relays it (protobuf text)."""
    entry = beam_fn_api_pb2.LogEntry(
        severity=beam_fn_api_pb2.LogEntry.Severity.Enum.Value(severity), message=message, log_location=location
    )
    entry.timestamp.seconds = 1
    logger = "apache_beam.runners.portability.local_job_service"
    return logging.LogRecord(logger, logging.WARNING, __file__, 1, "Worker: %s", (str(entry).replace("\n", " "),), None)


def test_worker_entries_become_text_at_their_own_level():
    beam_warning = _relayed("WARN", "Discarding unparseable args", "/venv/apache_beam/options/pipeline_options.py:1")
    ours = _relayed("INFO", "preprocess: 5 records validated so far", f"{ROOT / 'pipelines' / 'counters.py'}:40")
    batching = _relayed("INFO", "BatchElements statistics", "/venv/apache_beam/transforms/util.py:9")
    failure = _relayed("ERROR", "could not read x.png", "/venv/apache_beam/runners/worker/sdk_worker.py:9")
    for record in (beam_warning, ours, failure, batching):
        assert _WorkerEntries().filter(record)
    assert batching.name == "apache_beam.worker"  # Beam's transforms/ is not ours
    assert beam_warning.getMessage() == "worker: Discarding unparseable args"
    assert (beam_warning.levelname, beam_warning.name) == ("WARNING", "apache_beam.worker")
    assert (ours.levelname, ours.name) == ("INFO", "pipelines.worker")
    assert "timestamp" not in ours.getMessage() and "severity" not in ours.getMessage()
    shown = {
        level: [r.getMessage() for r in (beam_warning, ours, failure) if _Policy(level).filter(r)]
        for level in (QUIET, NORMAL, VERBOSE)
    }
    assert shown[QUIET] == ["worker: could not read x.png"]
    assert shown[NORMAL] == ["worker: preprocess: 5 records validated so far", "worker: could not read x.png"]
    assert len(shown[VERBOSE]) == 3


def test_stage_lines_name_the_stage_and_its_outcome(caplog):
    caplog.set_level(logging.INFO, logger="pipelines")
    with stage("train"):
        pass
    with pytest.raises(KeyError), stage("infer"):
        raise KeyError("x")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["train: started", "train: finished in 0 s", "infer: started", "infer: failed after 0 s"]


def test_progress_is_logged_while_records_pass(caplog):
    caplog.set_level(logging.INFO, logger="pipelines")
    with TestPipeline() as p:
        out = p | beam.Create([1, 2, 3]) | beam.ParDo(LogProgressFn("infer", "validated", every_seconds=0))
        assert_that(out, equal_to([1, 2, 3]))
    messages = [r.getMessage() for r in caplog.records if r.name == "pipelines.counters"]
    assert messages[0] == "infer: first record validated"  # where the start-up ends (benchmarks time it)
    assert messages[-1] == "infer: 3 records validated so far (this worker)"
