"""Fixed start-up of ``hourglass preprocess`` and ``hourglass infer`` (issue #18): before vs after.

"Before" is the code at the git ref ``BENCH_STARTUP_BEFORE`` (default ``trial``), exported with
``git archive`` into ``OUT/startup-work/before``; "after" is this checkout. Each command runs as a
fresh process with ``PYTHONPATH`` set to its tree (Beam's workers inherit it), measured by
``benchmarks.processes.timed`` (wall, CPU of the process tree), alternating before and after for
``BENCH_STARTUP_REPEATS`` rounds (default 3) and keeping each one's best.

Inputs (``benchmarks.digits``): 1 and 100 digit PNGs (28x28). Commands:
``bench_preprocess.preprocess_command`` (``--image-size 28x28 --channels 1``, 2 worker processes)
and ``bench_infer.infer_command`` (2 worker threads) on a dense model trained once
(``bench_infer``'s set-up). Figures per command, input and side: wall seconds launch to exit, CPU
seconds, and the time to the first record (launch to the log line ``<stage>: first record
validated``, where the log has it). Writes ``OUT/startup.md`` and ``OUT/startup.json``.
"""

from __future__ import annotations

import datetime
import io
import logging
import os
import pathlib
import shutil
import subprocess
import tarfile
import time

from benchmarks import report
from benchmarks.bench_infer import infer_command, trained_model
from benchmarks.bench_preprocess import preprocess_command
from benchmarks.digits import digit_pngs
from benchmarks.processes import first_record_at, timed

log = logging.getLogger(__name__)

BEFORE = os.environ.get("BENCH_STARTUP_BEFORE", "trial")
REPEATS = int(os.environ.get("BENCH_STARTUP_REPEATS", "3"))
SIZES = (1, 100)
REPO = pathlib.Path(__file__).resolve().parent.parent


def main(out_dir: pathlib.Path) -> dict:
    work = out_dir / "startup-work"
    trees = {"before": _export(BEFORE, work / "before"), "after": REPO}
    model_dir = trained_model(work)
    commands = {}
    for size in SIZES:
        pngs = digit_pngs(work / f"pngs-{size}", size)
        commands[f"preprocess, {size} PNG"] = lambda out, pngs=pngs: preprocess_command(pngs, out)
        commands[f"infer, {size} PNG"] = lambda out, pngs=pngs: infer_command(model_dir, pngs, out)
    load_before = os.getloadavg()
    runs = {name: {side: [] for side in trees} for name in commands}
    for round_ in range(REPEATS):
        for name, command in commands.items():
            for side, tree in trees.items():
                log_path = work / f"{side}.log"
                shutil.rmtree(work / "out", ignore_errors=True)  # each run writes a new output
                launched = time.time()
                seconds, _, cpu = timed(command(work / "out"), log_path, {**os.environ, "PYTHONPATH": str(tree)})
                first = first_record_at(log_path.read_text(errors="replace"))
                runs[name][side].append(
                    {
                        "seconds": round(seconds, 2),
                        "cpu_s": round(cpu, 1),
                        "first_record_s": None if first is None else round(first - launched, 2),
                    }
                )
                log.info("round %d, %s, %s: %.1f s wall, %.1f s CPU", round_ + 1, name, side, seconds, cpu)
    figures = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "before": BEFORE,
        "after": _describe(),
        "cpus": os.cpu_count(),
        "load_average_before": round(load_before[0], 1),
        "load_average_after": round(os.getloadavg()[0], 1),
        "repeats": REPEATS,
        "best": {name: {side: _best(done) for side, done in sides.items()} for name, sides in runs.items()},
        "runs": runs,
    }
    report.write(out_dir, "startup", figures, _table(figures))
    return figures


def _best(done: list[dict]) -> dict:
    """The smallest of each figure over the rounds."""
    firsts = [r["first_record_s"] for r in done if r["first_record_s"] is not None]
    return {
        "seconds": min(r["seconds"] for r in done),
        "cpu_s": min(r["cpu_s"] for r in done),
        "first_record_s": min(firsts) if firsts else None,
    }


def _export(ref: str, folder: pathlib.Path) -> pathlib.Path:
    """The tree of ``ref`` in ``folder`` (written once per ref's commit)."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", ref], check=True, capture_output=True, text=True)
    marker = folder / ".commit"
    if marker.exists() and marker.read_text() == commit.stdout:
        return folder
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    marker.write_text(commit.stdout)
    return folder


def _describe() -> str:
    head = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return head.stdout.strip()


def _table(figures: dict) -> str:
    lines = [
        "# Start-up of preprocess and infer: before and after",
        "",
        f"{figures['date']}; {figures['cpus']} cores shared with other jobs (load average "
        f"{figures['load_average_before']} before, {figures['load_average_after']} after); best of "
        f"{figures['repeats']} alternating rounds. Before: `{figures['before']}`; after: `{figures['after']}`.",
        "",
        "| command, input | wall before | wall after | CPU before | CPU after | first record before "
        "| first record after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def shown(value):
        return "" if value is None else f"{value:,} s"

    for name, best in figures["best"].items():
        before, after = best["before"], best["after"]
        lines.append(
            f"| {name} | {shown(before['seconds'])} | {shown(after['seconds'])} | {shown(before['cpu_s'])} | "
            f"{shown(after['cpu_s'])} | {shown(before['first_record_s'])} | {shown(after['first_record_s'])} |"
        )
    lines += [
        "",
        "Wall: launch to exit. CPU: user + system of the process tree (Beam's workers included). First "
        "record: launch to the log line `<stage>: first record validated` (blank: no run's log had it). "
        "Preprocess: "
        "`hourglass preprocess --image-size 28x28 --channels 1 -- --direct_running_mode=multi_processing "
        "--direct_num_workers=2`; infer: `hourglass infer --model-dir M -- --direct_num_workers=2 "
        "--direct_running_mode=multi_threading`.",
        f"Command: `BENCH_STARTUP_BEFORE={figures['before']} python -m benchmarks startup`.",
    ]
    return "\n".join(lines) + "\n"
