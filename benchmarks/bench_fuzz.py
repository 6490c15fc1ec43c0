"""Fuzzing preprocess with byte flips of good PNGs and JPEGs: what happens to each damaged file.

Data: ``BENCH_FUZZ_FLIPS`` files (default 400), each a good image (grey and RGB PNGs, RGB JPEGs of
16x16 to 32x32, generated) with one byte, at a random position, set to a random value; seeded, so
every run sees the same files. They go through ``hourglass preprocess --image-size 16x16
--max-reject-fraction 1`` (a subprocess, the real DirectRunner) in ``BENCH_FUZZ_BATCHES`` folders
(default 4), so that a crash costs one batch, not the whole count.
Outcome of each file: ``written`` (its id is in the TFRecords), ``dead-lettered`` by reason (in
``rejected/``), ``crashed`` (its batch's job failed), or ``lost`` (none of these: dropped silently).
``BENCH_FUZZ_CODE`` runs another checkout's code (e.g. ``/work/main`` for the figures before a change).
Figures: the outcome counts, written to ``fuzz.json`` and as a table to ``fuzz.md``.
"""

from __future__ import annotations

import collections
import glob
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

log = logging.getLogger(__name__)

FLIPS = int(os.environ.get("BENCH_FUZZ_FLIPS", "400"))
BATCHES = int(os.environ.get("BENCH_FUZZ_BATCHES", "4"))
HERE = str(pathlib.Path(__file__).resolve().parents[1])
CODE = os.environ.get("BENCH_FUZZ_CODE", HERE)
HOURGLASS = os.path.join(os.path.dirname(sys.executable), "hourglass")
SEED = 14


def good_images(rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """A few good images: (extension, bytes) of grey and RGB PNGs and RGB JPEGs with smooth content."""
    import io

    from PIL import Image

    images = []
    for index in range(12):
        height, width = rng.integers(16, 33, 2)
        rows, cols = np.mgrid[0:height, 0:width]
        base = (rows * (3 + index) + cols * 5 + rng.integers(0, 40, (height, width))) % 256
        pixels = np.stack([base, base[::-1], base[:, ::-1]], -1).astype(np.uint8)
        image = Image.fromarray(pixels[..., 0] if index % 3 == 0 else pixels)
        fmt = "JPEG" if index % 3 == 2 else "PNG"
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        images.append((".jpg" if fmt == "JPEG" else ".png", buffer.getvalue()))
    return images


def flipped_files(root: pathlib.Path, rng: np.random.Generator) -> dict[str, int]:
    """Writes FLIPS damaged files in BATCHES folders; returns id -> batch."""
    images = good_images(rng)
    batches = {}
    for index in range(FLIPS):
        extension, data = images[index % len(images)]
        damaged = bytearray(data)
        damaged[rng.integers(0, len(data))] = rng.integers(0, 256)
        batch = index % BATCHES
        folder = root / f"batch{batch}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"flip{index:05d}{extension}"
        (folder / name).write_bytes(bytes(damaged))
        batches[name] = batch
    return batches


def written_ids(data_dir: str) -> list[str]:
    """The ids in a preprocess output's TFRecords (each once per record)."""
    import tensorflow as tf

    spec = {"id": tf.io.FixedLenFeature([], tf.string)}
    files = glob.glob(os.path.join(data_dir, "*.tfrecord.gz"))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").map(lambda r: tf.io.parse_single_example(r, spec))
    return [e["id"].numpy().decode() for e in dataset]


def run_batch(folder: pathlib.Path, out: pathlib.Path) -> tuple[int, str]:
    """Preprocesses one folder with CODE's hourglass; returns (exit code, the last lines of stderr)."""
    env = {**os.environ, "PYTHONPATH": CODE, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = (
        [sys.executable, "-m", "pipelines.cli"] if (pathlib.Path(CODE) / "pipelines" / "__main__.py").exists() else None
    )
    command = command or [os.path.join(os.path.dirname(sys.executable), "hourglass")]
    flags = ["--image-size", "16x16", "--max-reject-fraction", "1", "--eval-percent", "1"]
    done = subprocess.run(
        [HOURGLASS, "preprocess", "--input", str(folder), "--output", str(out), *flags],
        env=env,
        capture_output=True,
        text=True,
        cwd=CODE,
    )
    return done.returncode, "\n".join(done.stderr.strip().splitlines()[-3:])


def main(out_dir: pathlib.Path) -> dict:
    rng = np.random.default_rng(SEED)
    outcomes: collections.Counter = collections.Counter()
    crashes, duplicates = [], 0
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="hourglass-fuzz-") as temp:
        root = pathlib.Path(temp)
        batches = flipped_files(root / "in", rng)
        for batch in range(BATCHES):
            ids = {name for name, b in batches.items() if b == batch}
            output = root / f"out{batch}"
            code, tail = run_batch(root / "in" / f"batch{batch}", output)
            if code != 0:
                outcomes["crashed"] += len(ids)
                crashes.append({"batch": batch, "exit_code": code, "stderr_tail": tail})
                log.warning("batch %d crashed (exit %d): %s", batch, code, tail)
                continue
            written = written_ids(str(output))
            duplicates += len(written) - len(set(written))
            rejected = {}
            for path in glob.glob(str(output / "rejected" / "*.jsonl")):
                for line in pathlib.Path(path).read_text().splitlines():
                    letter = json.loads(line)
                    rejected[letter["id"]] = letter["reason"]
            outcomes["written"] += len(ids & set(written))
            for name in ids - set(written):
                outcomes[f"dead-lettered: {rejected[name]}" if name in rejected else "lost"] += 1
    figures = {
        "code": CODE,
        "flips": FLIPS,
        "batches": BATCHES,
        "outcomes": dict(sorted(outcomes.items())),
        "duplicated_records": duplicates,
        "crashed_batches": crashes,
        "seconds": round(time.time() - started, 1),
    }
    name = "fuzz" if CODE == HERE else "fuzz-" + pathlib.Path(CODE).name
    (out_dir / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    rows = "\n".join(f"| {outcome} | {count} |" for outcome, count in figures["outcomes"].items())
    (out_dir / f"{name}.md").write_text(
        f"# Byte-flip fuzzing of preprocess ({CODE})\n\n"
        f"`make bench BENCH=fuzz`: {FLIPS} files, each a good PNG or JPEG with one random byte set to a random "
        f"value (seed {SEED}), preprocessed in {BATCHES} jobs. Duplicated records: {duplicates}; crashed jobs: "
        f"{len(crashes)}; {figures['seconds']} s.\n\n| outcome | files |\n| --- | --- |\n{rows}\n"
    )
    return figures
