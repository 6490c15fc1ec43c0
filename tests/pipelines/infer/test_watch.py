"""The watch: windows published while it runs, read once across restarts, hidden and vanished files,
a clean stop; the real console script in a subprocess, and an injected handler in process."""

import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import time

import duckdb
import pyarrow.dataset as ds
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.utils.timestamp import Timestamp

from models.model_info import ModelInfo
from pipelines.config import InferConfig
from pipelines.counters import counters
from pipelines.infer import parquet, publish
from pipelines.infer.job import run_infer
from pipelines.infer.streaming import build_streaming_pipeline
from pipelines.infer.watch import STATE, VANISHED, build_files_pipeline, list_finished, partition_name
from tests.conftest import write_image_tree
from tests.helpers import HOURGLASS, ROOT, read_rejected
from tests.pipelines.infer.test_infer import FakeHandler, _fake_model_dir


def _drop(folder, name: str, data: bytes) -> None:
    """Writes ``name`` the safe way: beside it as ``.name.part``, then renamed."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.parent / f".{path.name}.part"
    part.write_bytes(data)
    part.rename(path)


def _partitions(out) -> list:
    return sorted(p for p in out.iterdir() if p.name.startswith("window_start="))


def _rows(out) -> list[dict]:
    return ds.dataset(out, format="parquet", partitioning="hive").to_table(columns=["id", "window_start"]).to_pylist()


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no {what} after {seconds} s")


def test_partition_names_escape_the_colons_and_read_back_as_the_utc_start():
    start = datetime.datetime(2026, 12, 1, 20, 54, tzinfo=datetime.UTC).timestamp()
    assert partition_name(start) == "window_start=2026-12-01T20%3A54%3A00Z"


def test_only_finished_files_are_listed(tmp_path):
    for name in ("cat/1.png", "cat/.2.png.part", ".hidden/3.png", "dog/.cache/4.png", "5.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert sorted(list_finished(str(tmp_path))) == ["5.png", "cat/1.png"]


def test_a_file_gone_between_listing_and_reading_is_counted_not_dead_lettered(image_tree, tmp_path):
    root, _ = image_tree
    model_dir = _fake_model_dir(tmp_path / "m")
    cfg = InferConfig(model_dir=model_dir, output=str(tmp_path / "o"), watch=str(root))
    schema = parquet.prediction_schema(ModelInfo.read(model_dir))
    paths = [str(root / "cat" / "000.png"), str(root / "cat" / "gone.png")]
    p = TestPipeline()
    build_files_pipeline(p, cfg, str(root), paths, FakeHandler(), schema, str(tmp_path / "batch"))
    result = p.run()
    result.wait_until_finish()
    counts = counters(result)
    assert counts[VANISHED] == 1 and counts["prediction_rows"] == 1 and counts["records_read"] == 1
    assert read_rejected(tmp_path / "batch" / "_rejected") == []


def _watch(tmp_path, watched, seconds: float, window_seconds: float, handler=None):
    cfg = InferConfig(
        model_dir=_fake_model_dir(tmp_path / "m") if not (tmp_path / "m").exists() else str(tmp_path / "m"),
        output=str(tmp_path / "o"),
        watch=str(watched),
        window_seconds=window_seconds,
        poll_seconds=0.5,
        watch_seconds=seconds,
    )
    return run_infer(cfg, model_handler=handler or FakeHandler())


@pytest.mark.slow
@pytest.mark.parametrize("window_seconds", [1, 10**9], ids=["new-window", "same-window"])
def test_a_restarted_watch_reads_only_the_files_it_has_not_published(tmp_path, window_seconds):
    images = tmp_path / "all"
    write_image_tree(images)
    watched = tmp_path / "in"
    for name in ("cat/000.png", "cat/001.png", "dog/000.png"):
        _drop(watched, name, (images / name).read_bytes())
    first = _watch(tmp_path, watched, 1.5, window_seconds)
    assert first.counts["records_read"] == 3
    _drop(watched, "emu/000.png", (images / "emu/000.png").read_bytes())
    _drop(watched, "emu/bad.png", b"not an image")
    second = _watch(tmp_path, watched, 1.5, window_seconds)
    assert second.counts["records_read"] == 2 and second.counts["prediction_rows"] == 1
    rows = _rows(tmp_path / "o")
    assert sorted(r["id"] for r in rows) == ["cat/000.png", "cat/001.png", "dog/000.png", "emu/000.png"]
    partitions = _partitions(tmp_path / "o")
    assert len(partitions) == (1 if window_seconds > 1000 else 2)
    pattern = str(tmp_path / "o" / "window_start=*" / "*.parquet")
    starts = duckdb.sql(f"SELECT DISTINCT window_start FROM read_parquet('{pattern}', hive_partitioning = true)")
    assert sorted(s for (s,) in starts.fetchall()) == sorted({r["window_start"] for r in rows})
    assert all(s.endswith("Z") and ":" in s for (s,) in starts.fetchall())  # decoded from %3A
    read = [f for p in partitions for f in publish.read_manifest(p)["files_read"]]
    assert sorted(read) == ["cat/000.png", "cat/001.png", "dog/000.png", "emu/000.png", "emu/bad.png"]
    assert [r["id"] for p in partitions for r in read_rejected(p / "_rejected")] == ["emu/bad.png"]
    state = json.loads((tmp_path / "o" / STATE).read_text())
    assert sorted(state["files"]) == sorted(read)
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]  # no staging left


def test_streaming_mode_refuses_the_local_runner(tmp_path):
    (tmp_path / "in").mkdir()
    cfg = InferConfig(
        model_dir=_fake_model_dir(tmp_path / "m"),
        output=str(tmp_path / "o"),
        watch=str(tmp_path / "in"),
        watch_mode="streaming",
    )
    with pytest.raises(ValueError, match="needs a streaming runner"):
        run_infer(cfg, model_handler=FakeHandler())


class SlowHandler(FakeHandler):
    """Touches ``marker`` when a batch starts, then takes 30 s over it."""

    def __init__(self, marker: str):
        super().__init__()
        self._marker = marker

    def run_inference(self, batch, model, inference_args=None):
        with open(self._marker, "w"):
            pass
        time.sleep(30)
        return super().run_inference(batch, model, inference_args)


_SLOW_WATCH = """
import sys
sys.path.insert(0, {root!r})
from pipelines.config import InferConfig
from pipelines.infer.job import run_infer
from pipelines.infer.streaming import build_streaming_pipeline
from tests.pipelines.infer.test_watch import SlowHandler
cfg = InferConfig(model_dir={model!r}, output={out!r}, watch={watched!r}, window_seconds=1, poll_seconds=0.5)
run_infer(cfg, model_handler=SlowHandler({marker!r}))
"""


@pytest.mark.slow
def test_a_second_sigterm_stops_at_once_leaving_nothing_visible(tmp_path):
    watched = tmp_path / "in"
    write_image_tree(watched)
    script = _SLOW_WATCH.format(
        root=str(ROOT),
        model=_fake_model_dir(tmp_path / "m"),
        out=str(tmp_path / "o"),
        watched=str(watched),
        marker=str(tmp_path / "encoding"),
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait_for(lambda: (tmp_path / "encoding").exists(), 300, "batch running")
    assert list((tmp_path / "o").glob(".window_start=*.staging"))
    child.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    child.send_signal(signal.SIGTERM)
    started = time.time()
    code = child.wait(timeout=20)
    log = child.stdout.read().decode()
    assert code == 128 + signal.SIGTERM and time.time() - started < 10, log
    assert "stopped at once" in log and "Traceback" not in log
    assert sorted(os.listdir(tmp_path / "o")) == []  # no partition, no staging, no state


@pytest.mark.slow
@pytest.mark.integration
def test_a_long_watch_publishes_each_window_while_running_and_stops_cleanly(trained, tmp_path):
    """The console script watching for more than 60 s: three bursts, bad files among them."""
    images = tmp_path / "all"
    write_image_tree(images)
    watched, out = tmp_path / "in", tmp_path / "o"
    watched.mkdir()
    args = [HOURGLASS, "infer", "--model-dir", trained[0].model_dir, "--watch", str(watched), "--output", str(out)]
    args += ["--window-seconds", "15", "--poll-seconds", "2"]
    log_path = tmp_path / "watch.log"
    good, bad = [], []
    with open(log_path, "wb") as log_file:
        child = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
        started = time.time()
        _wait_for(lambda: "watching" in log_path.read_text(), 300, "start")
        (watched / "cat").mkdir()
        (watched / "cat" / ".never.png.part").write_bytes((images / "cat/000.png").read_bytes())  # never renamed
        for burst, label in enumerate(("cat", "dog", "emu")):
            for i in range(6):
                name = f"{label}/{i:03d}.png"
                _drop(watched, name, (images / name).read_bytes())
                good.append(name)
            _drop(watched, f"{label}/broken-{burst}.png", b"\x89PNG\r\n\x1a\n garbage")
            bad.append(f"{label}/broken-{burst}.png")
            if burst == 0:  # the first window is published, and readable, while the watch runs
                first = _wait_for(lambda: list(out.glob("window_start=*/_manifest.json")), 120, "first window")
                assert child.poll() is None
                assert {r["id"] for r in _rows(out)} <= set(good)
            time.sleep(20)
        while time.time() - started < 65:
            time.sleep(1)
        assert child.poll() is None
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=120)
    log = log_path.read_text()
    assert code == 0, log
    assert "Traceback" not in log
    partitions = _partitions(out)
    assert len(partitions) >= 3 and first
    manifests = [publish.read_manifest(p) for p in partitions]
    rows = _rows(out)
    assert sorted(r["id"] for r in rows) == sorted(good)  # every good file exactly once
    assert sorted(r["id"] for p in partitions for r in read_rejected(p / "_rejected")) == sorted(bad)
    for partition, m in zip(partitions, manifests, strict=True):
        start = m["window_start"].replace("+00:00", "Z")
        assert partition.name == partition_name(datetime.datetime.fromisoformat(m["window_start"]).timestamp())
        assert {r["window_start"] for r in rows if r["id"] in m["files_read"]} <= {start}
        assert m["rows"] + sum(m["rejected"].values()) == len(m["files_read"]) == m["records_read"]
        assert m["model"]["model_hash"] and m["rejected"] in ({}, {"corrupt_image": 1})
    latencies = [m["published_seconds_after_window_end"] for m in manifests if m["closed"] == "window_end"]
    assert latencies and max(latencies) < 15 + 2 + 15  # within about a window + a poll of its end (loaded machine)
    print(f"window publication latency (s): {latencies}")
    assert manifests[-1]["closed"] in ("stopped", "window_end")


@pytest.mark.slow
def test_the_streaming_pipeline_writes_the_same_window_partitions(tmp_path):
    """A few seconds on the local runner (longer runs overflow its metrics merging; see ``streaming``)."""
    images = tmp_path / "all"
    write_image_tree(images)
    watched = tmp_path / "in"
    good = [f"cat/{i:03d}.png" for i in range(3)]
    for name in good:
        _drop(watched, name, (images / name).read_bytes())
    _drop(watched, "dog/bad.png", b"not an image")
    (watched / "cat" / ".003.png.part").write_bytes((images / "cat/003.png").read_bytes())
    model_dir = _fake_model_dir(tmp_path / "m", calibrated=True)
    info = ModelInfo.read(model_dir)
    cfg = InferConfig(model_dir=model_dir, output=str(tmp_path / "o"), watch=str(watched), window_seconds=2)
    cfg = dataclasses.replace(cfg, poll_seconds=1, watch_mode="streaming")
    start = Timestamp.now()
    handler = FakeHandler(anomalous=True)
    with TestPipeline() as p:
        build_streaming_pipeline(p, cfg, handler, parquet.prediction_schema(info), info, start, start + 3)
    assert sorted(r["id"] for r in _rows(tmp_path / "o")) == good
    partitions = _partitions(tmp_path / "o")
    manifests = [publish.read_manifest(p) for p in partitions]
    assert sorted(f for m in manifests for f in m["files_read"]) == [*good, "dog/bad.png"]
    assert sum(m["rows"] for m in manifests) == 3 and [m["rejected"] for m in manifests if m["rejected"]] == [
        {"not_an_image": 1}
    ]
    for partition, m in zip(partitions, manifests, strict=True):
        assert partition.name == partition_name(datetime.datetime.fromisoformat(m["window_start"]).timestamp())
        # Drift from the window's own rows: every one scored 1 and flagged, latents (byte lengths) far off.
        drift = m["drift"]
        assert drift["reference_examples"] == 500 and drift.get("examples", 0) == m["rows"]
        if m["rows"]:
            assert drift["flagged"]["count"] == m["rows"] and drift["errors"]["ks_statistic"] == 1.0
            assert drift["latent"]["psi_max"] > 5 and drift["latent"]["psi_max_dim"] == 0
            assert drift["detected"] == bool(drift["reasons"])  # how many rows a window got decides the p-values
