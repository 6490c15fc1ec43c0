"""Preprocess throughput and memory: ``hourglass preprocess`` with 2 workers vs a plain Python loop.

Data: N PNGs (default 50,000) and 2N more, real digits all different (``benchmarks.digits``), cached
under ``OUT/preprocess-work``.
Ours: ``hourglass preprocess --image-size 28x28 --channels 1 -- --direct_running_mode=multi_processing
--direct_num_workers=2`` (read, validate, split, tf.Transform analyzers over train + transform,
gzipped TFRecords, stats.json), as a subprocess. Two worker processes, not threads: with
``--direct_running_mode=multi_threading`` Beam's DirectRunner lost whole units of files on 200,000
PNGs (300 and 500 records in two runs, with no error: a race in Beam's in-process data channel,
``results/multi-threading-loss.md``; preprocess now refuses the mode), and was slower there (75 s against 62 s).
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
import sys
import time

import numpy as np

from benchmarks import report
from benchmarks.digits import digit_pngs
from benchmarks.processes import timed

log = logging.getLogger(__name__)

N = int(os.environ.get("BENCH_PREPROCESS_N", "50000"))
# Each run is repeated; the figures use the fastest (least disturbed on a shared machine) of each.
REPEATS = int(os.environ.get("BENCH_PREPROCESS_REPEATS", "2"))
BEAM_ARGS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
OURS_FLAGS = ["--image-size", "28x28", "--channels", "1"]


def preprocess_command(folder: pathlib.Path, output: pathlib.Path) -> list[str]:
    """Ours: ``hourglass preprocess`` of the PNGs under ``folder`` with 2 worker processes."""
    hourglass = os.path.join(os.path.dirname(sys.executable), "hourglass")
    return [hourglass, "preprocess", "--input", str(folder), "--output", str(output), *OURS_FLAGS, "--", *BEAM_ARGS]


def baseline_command(folder: pathlib.Path, output: pathlib.Path) -> list[str]:
    """The baseline (:func:`baseline`) as its own process, on the PNGs under ``folder``."""
    pattern = str(folder / "*" / "*.png")
    return [sys.executable, "-m", "benchmarks.bench_preprocess", "baseline", pattern, str(folder), str(output)]


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

    from pipelines.preprocess.transform import raw_tensor_adapter_config, to_record_batch
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


def _record(runs: dict, name: str, images: int, timed: tuple[float, int]) -> None:
    """Keeps the fastest time and the largest peak memory of the repeats of run ``name``."""
    seconds, peak, _ = timed
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
    small, large = digit_pngs(work / f"images-{N}", N), digit_pngs(work / f"images-{2 * N}", 2 * N)
    inputs = {"N": (small, N), "2N": (large, 2 * N)}
    load_before = os.getloadavg()
    runs: dict[str, dict] = {}
    for repeat in range(REPEATS):
        for size, (folder, count) in inputs.items():
            base_out = work / f"baseline-{size}.tfrecord.gz"
            base_log = work / f"baseline-{size}.log"
            _record(runs, f"baseline_{size}", count, timed(baseline_command(folder, base_out), base_log))
            ours_out = work / f"ours-{size}-{repeat}"
            _record(runs, f"ours_{size}", count, timed(preprocess_command(folder, ours_out), work / f"ours-{size}.log"))
            written, baseline_written = _count_records(str(ours_out / "*.tfrecord.gz")), _count_records(str(base_out))
            if written != count or baseline_written != count:
                raise RuntimeError(f"{size}: ours wrote {written}, the baseline {baseline_written}, of {count} images")
            shutil.rmtree(ours_out)
            log.info("repeat %d, %s: %s", repeat, size, {k: v for k, v in runs.items() if k.endswith(size)})
    figures = _figures(runs)
    figures["tft_io_cpu_us_per_record"] = tft_io_costs(sorted(glob.glob(str(small / "*" / "*.png")))[:2000])
    figures["conditions"] = {
        "cpus": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "note": "machine shared with other jobs; ratios are measured in the same run, interleaved",
        "ours": f"hourglass preprocess {' '.join(OURS_FLAGS)} -- {' '.join(BEAM_ARGS)}",
        "repeats": REPEATS,
        "baseline": "plain Python loop: Pillow decode, tf.train.Example, tf.io.TFRecordWriter(GZIP)",
    }
    report.write(out_dir, "preprocess", figures, _table(figures))
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
