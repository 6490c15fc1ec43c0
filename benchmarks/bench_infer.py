"""Images/s of ``hourglass infer`` vs. calling the same SavedModel directly, and its peak memory.

Set-up (cached under ``OUT/infer-work``): preprocess ``builtin:mnist``, train a dense model for
two epochs, and write shifted digits as PNG files (``benchmarks.digits``): ``N`` files in one
folder and ``2N`` in another (``N`` = 50,000 by default, ``HOURGLASS_BENCH_INFER_N`` overrides).

Measured, each as a fresh process so start-up counts on both sides:
  ours: ``hourglass infer --model-dir M --input FOLDER --output O`` with its defaults (the
    DirectRunner), on ``N`` and on ``2N`` files (wall time and peak RSS);
  baseline: the same SavedModel's ``serving_default`` on the same files read into memory, in
    batches of 1,024, outputs into one Arrow table and one ``pyarrow.parquet.write_table``.
Figures: images/s of both and their ratio (target >= 0.6; best of two alternating runs each, as
the machine is shared), the CPU-time ratio, and our peak RSS at ``N`` and ``2N`` (target: no
growth with ``N``). Written to ``OUT/infer.json`` and ``OUT/infer.md``.
"""

from __future__ import annotations

import logging
import os
import pathlib
import subprocess
import sys
import time

from benchmarks import report
from benchmarks.digits import digit_pngs

log = logging.getLogger(__name__)

N = int(os.environ.get("HOURGLASS_BENCH_INFER_N", "50000"))
REPEATS = 2


def main(out_dir: pathlib.Path) -> dict:
    work = out_dir / "infer-work"
    model_dir = _trained_model(work)
    small, large = digit_pngs(work / f"images-{N}", N), digit_pngs(work / f"images-{2 * N}", 2 * N)
    baseline = [sys.executable, "-c", _BASELINE, str(model_dir), str(small), str(work / "baseline.parquet")]
    # Alternate the two and keep each one's best run: the machine is shared, so load comes and goes.
    base_runs, our_runs = [], []
    for _ in range(REPEATS):
        base_runs.append(_timed(baseline))
        our_runs.append(_timed(_hourglass(model_dir, small, work / "out-n")))
    base = min(base_runs, key=lambda r: r["seconds"])
    ours = min(our_runs, key=lambda r: r["seconds"])
    ours_2n = _timed(_hourglass(model_dir, large, work / "out-2n"))
    figures = {
        "images": N,
        "machine": f"{os.cpu_count()} cores, shared with other jobs (best of {REPEATS} alternating runs)",
        "baseline_images_per_s": round(N / base["seconds"], 1),
        "ours_images_per_s": round(N / ours["seconds"], 1),
        "ratio": round(base["seconds"] / ours["seconds"], 3),
        "cpu_ratio": round(base["cpu_seconds"] / ours["cpu_seconds"], 3),
        "baseline": base,
        "ours": ours,
        "ours_2n": ours_2n,
        "peak_rss_growth_2n_vs_n": round(ours_2n["peak_rss_mb"] / ours["peak_rss_mb"], 3),
        "all_runs": {"baseline": base_runs, "ours": our_runs},
        "command": " ".join(_hourglass(model_dir, small, work / "out-n")),
    }
    report.write(out_dir, "infer", figures)
    return figures


def _hourglass(model_dir: pathlib.Path, images: pathlib.Path, out: pathlib.Path) -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "hourglass")
    return [script, "infer", "--model-dir", str(model_dir), "--input", str(images), "--output", str(out)]


def _timed(args: list[str]) -> dict:
    """Runs ``args``; returns wall and CPU seconds and the process tree's peak RSS (``wait4``)."""
    started = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{args[0]} failed:\n{output.decode(errors='replace')[-3000:]}")
    log.info("%s: %.1f s", "baseline" if args[1] == "-c" else f"hourglass infer on {args[5]}", seconds)
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


def _trained_model(work: pathlib.Path) -> pathlib.Path:
    model_dir = work / "model"
    if (model_dir / "saved_model" / "model_info.json").exists():
        return model_dir
    from models.config import ModelConfig, TrainConfig
    from models.training import train
    from pipelines.config import BUILTIN_MNIST, PreprocessConfig
    from pipelines.preprocess.job import run_preprocess

    run_preprocess(PreprocessConfig(input=BUILTIN_MNIST, output=str(work / "data")))
    train(TrainConfig(str(work / "data"), str(model_dir), ModelConfig("dense", latent_dim=32), epochs=2))
    return model_dir


# The baseline, run as its own process: files -> memory -> SavedModel in batches -> one Parquet file.
_BASELINE = """
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, pyarrow as pa, pyarrow.parquet as pq, tensorflow as tf
model_dir, folder, out = sys.argv[1:]
paths = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if f.endswith(".png"))
images = []
for path in paths:
    with open(path, "rb") as f:
        images.append(f.read())
serve = tf.saved_model.load(os.path.join(model_dir, "saved_model")).signatures["serving_default"]
outputs = {}
for start in range(0, len(images), 1024):
    result = serve(images=tf.constant(images[start:start + 1024]))
    for name, value in result.items():
        outputs.setdefault(name, []).append(value.numpy())
outputs = {name: np.concatenate(parts) for name, parts in outputs.items()}
def lists(values):
    flat = values.reshape(len(values), -1)
    offsets = pa.array(np.arange(0, flat.size + 1, flat.shape[1], dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat.reshape(-1))
table = pa.table({
    "id": [os.path.relpath(p, folder) for p in paths],
    "source": paths,
    "label": [os.path.relpath(p, folder).split(os.sep)[0] for p in paths],
    "latent": lists(outputs["latent"]),
    "reconstruction": lists(outputs["reconstruction"]),
    "reconstruction_error": outputs["reconstruction_error"],
})
pq.write_table(table, out, compression="snappy")
"""
