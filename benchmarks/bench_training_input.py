"""Training throughput fed by our TFRecords input pipeline vs. the same data already in memory.

Every run trains the same model (same initial weights, batch, epochs) with the same
``models.training.Trainer`` step under the same strategy; only the input differs:

- ``tfrecords``: ``models.input_pipeline.SplitInput``, exactly what ``hourglass train`` iterates (the
  gzipped TFRecords read and parsed, kept in memory when they fit ``--cache-mb``, shuffled with a
  per-epoch seed, batched, prefetched); its first pass (which fills the cache) is timed too;
- ``in_memory``: the parsed train split held as tensors, shuffled and batched by ``tf.data``;
- ``tfrecords_from_disk``: ``SplitInput`` without the cache (``--cache-mb 0``), as for a split too
  large for memory: the records read from disk every epoch (the shards interleaved by parallel
  readers), shuffled as records, batched, parsed a batch at a time in parallel, prefetched.

Target: ``tfrecords / in_memory >= 0.9`` and ``tfrecords_from_disk / in_memory >= 0.9`` (the
input pipeline is not the bottleneck). The runs alternate for ``ROUNDS`` rounds and each keeps its
best round, because the machine is shared. ``main`` measures the built-in sample, and with
``HOURGLASS_BENCH_TRAINING_DATA=DATA`` also :func:`scale_row` on that preprocess output (the
from-disk row, which ``bench_scale`` calls too), and writes ``OUT/training_input.json`` and ``.md``.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import pathlib
import time

import keras
import tensorflow as tf

import models.kinds  # noqa: F401  (registers every kind)
from benchmarks import report
from models import input_pipeline
from models.config import ModelConfig
from models.input_pipeline import SplitInput
from models.registry import build_autoencoder
from models.training import Trainer
from pipelines.config import PreprocessConfig
from pipelines.preprocess.job import run_preprocess
from transforms import features

log = logging.getLogger(__name__)

BATCH_SIZE = 128
EPOCHS = 10  # the default of --epochs
ROUNDS = 3
# The scale row (``bench_scale``): a larger split, so fewer epochs and rounds.
SCALE_EPOCHS = 3
SCALE_ROUNDS = 4
# A preprocess output to measure the scale row on as well (e.g. 20,000 PNGs preprocessed).
SCALE_DATA = os.environ.get("HOURGLASS_BENCH_TRAINING_DATA")
SEED = 0
TARGET = 0.9
CACHE_MB = 1024  # the default of --cache-mb
MODEL = ModelConfig("dense", latent_dim=32)


def main(out_dir: pathlib.Path) -> dict:
    data_dir = out_dir / "training_input_data"
    if not (data_dir / input_pipeline.TRANSFORM_DIR).exists():
        run_preprocess(PreprocessConfig(input="builtin:mnist", output=str(data_dir)))
    tft_output = input_pipeline.load_transform_output(str(data_dir))
    files = input_pipeline.split_files(str(data_dir), "train")
    cache = input_pipeline.fits_in_memory(files, tft_output, CACHE_MB)
    run = _Comparison(data_dir)
    best = run.best({"tfrecords": cache, "in_memory": None, "tfrecords_from_disk": False}, EPOCHS, ROUNDS)
    figures = {
        "examples": run.examples,
        "epochs": EPOCHS,
        "batch_size": BATCH_SIZE,
        "model": run.model,
        "tfrecords_cached_in_memory": cache,
        "tfrecords_examples_per_second": round(best["tfrecords"]["all"]),
        "in_memory_examples_per_second": round(best["in_memory"]["all"]),
        "ratio": round(best["tfrecords"]["all"] / best["in_memory"]["all"], 3),
        "ratio_after_first_epoch": round(best["tfrecords"]["after_first"] / best["in_memory"]["after_first"], 3),
        "tfrecords_from_disk_examples_per_second": round(best["tfrecords_from_disk"]["all"]),
        "ratio_from_disk": round(best["tfrecords_from_disk"]["all"] / best["in_memory"]["all"], 3),
        "target_ratio": TARGET,
        "date": datetime.date.today().isoformat(),
    }
    if SCALE_DATA:
        figures["scale"] = scale_row(pathlib.Path(SCALE_DATA), out_dir)
    report.write(out_dir, "training_input", figures, _table(figures))
    return figures


def scale_row(data: pathlib.Path, work: pathlib.Path) -> dict:
    """Training fed from disk every epoch (``SplitInput`` without the cache, as ``--cache-mb 0``)
    vs. the same split held in memory, on the preprocess output ``data``: ``SCALE_EPOCHS`` epochs,
    best of ``SCALE_ROUNDS`` alternating rounds. (``work`` is unused: nothing is written.)"""
    run = _Comparison(data)
    best = run.best({"in_memory": None, "tfrecords_from_disk": False}, SCALE_EPOCHS, SCALE_ROUNDS)
    ours, baseline = best["tfrecords_from_disk"]["all"], best["in_memory"]["all"]
    return {
        "measure": "train, data read from disk every epoch",
        "ours": round(ours),
        "baseline": round(baseline),
        "ratio": round(ours / baseline, 3),
        "unit": "examples/s",
        "target": TARGET,
        "examples": run.examples,
        "epochs": SCALE_EPOCHS,
        "train_files": len(run.files),
        "model": run.model,
    }


class _Comparison:
    """The same model trained from the same initial weights on one split, fed by each variant."""

    def __init__(self, data_dir: pathlib.Path):
        self.tft_output = input_pipeline.load_transform_output(str(data_dir))
        self.shape = input_pipeline.image_shape(self.tft_output)
        self.files = input_pipeline.split_files(str(data_dir), "train")
        self.strategy = tf.distribute.get_strategy()
        self.model = f"{MODEL.kind}, latent {MODEL.latent_dim}, {'x'.join(map(str, self.shape))} images"
        self._tensors = None

    @property
    def examples(self) -> int:
        return int(self._in_memory_tensors()[features.INPUTS].shape[0])

    def best(self, variants: dict[str, bool | None], epochs: int, rounds: int) -> dict[str, dict[str, float]]:
        """Each variant's best examples/s over ``rounds`` alternating rounds of ``epochs`` epochs:
        ``all`` epochs and ``after_first``. A variant is ``None`` (in memory) or ``SplitInput``'s cache flag."""
        initial = _initial_weights(self.shape)
        tracing_batch = _first_batch(self.files, self.tft_output)
        best = {name: {"all": 0.0, "after_first": 0.0} for name in variants}
        for round_ in range(rounds):
            for name, cache in variants.items():
                batches = self._in_memory() if cache is None else self._split_input(cache, epochs)
                seconds = _epoch_seconds(self.strategy, self.shape, initial, batches, epochs, tracing_batch)
                examples = self.examples
                rates = {
                    "all": epochs * examples / sum(seconds),
                    "after_first": (epochs - 1) * examples / sum(seconds[1:]),
                }
                log.info(
                    "round %d, %s: %.0f examples/s (%.0f after the first epoch)", round_ + 1, name, *rates.values()
                )
                best[name] = {k: max(best[name][k], v) for k, v in rates.items()}
        return best

    def _in_memory_tensors(self) -> dict[str, tf.Tensor]:
        if self._tensors is None:
            self._tensors = _load_all(self.files, self.tft_output)
        return self._tensors

    def _in_memory(self):
        tensors = self._in_memory_tensors()
        examples = int(tensors[features.INPUTS].shape[0])

        def batches(epoch: int):
            dataset = tf.data.Dataset.from_tensor_slices(tensors).shuffle(examples, seed=SEED * 100_003 + epoch)
            return self.strategy.experimental_distribute_dataset(dataset.batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE))

        return batches

    def _split_input(self, cache: bool, epochs: int):
        split = SplitInput(self.strategy, self.files, self.tft_output, BATCH_SIZE, cache, epochs=epochs)
        return functools.partial(split.batches, True, SEED)


def _table(figures: dict) -> str:
    return "\n".join(
        [
            f"# Training input: examples/s fed from the TFRecords vs. held in memory ({figures['date']})",
            "",
            f"Model {figures['model']}, batch {figures['batch_size']}, {figures['epochs']} epochs over "
            f"{figures['examples']} examples, best of {ROUNDS} alternating rounds on a shared 2-core machine. "
            "Produced by `make bench BENCH=training_input` (`python -m benchmarks training_input`).",
            "",
            "| feed | examples/s | ratio to in memory | target |",
            "| --- | ---: | ---: | ---: |",
            f"| in memory (tensors, shuffled and batched by tf.data) | {figures['in_memory_examples_per_second']} "
            "| 1 | |",
            f"| TFRecords, cached after the first epoch (`--cache-mb {CACHE_MB}`) | "
            f"{figures['tfrecords_examples_per_second']} | **{figures['ratio']}** | >= {TARGET} |",
            f"| TFRecords read from disk every epoch (`--cache-mb 0`) | "
            f"{figures['tfrecords_from_disk_examples_per_second']} | **{figures['ratio_from_disk']}** | >= {TARGET} |",
            "",
            *_scale_lines(figures.get("scale")),
        ]
    )


def _scale_lines(row: dict | None) -> list[str]:
    if row is None:
        return []
    return [
        f"From disk every epoch on a larger split (`HOURGLASS_BENCH_TRAINING_DATA`, {row['train_files']} train "
        f"file(s)): {row['examples']} examples, {row['epochs']} epochs, best of {SCALE_ROUNDS} alternating rounds.",
        "",
        "| feed | examples/s | ratio to in memory | target |",
        "| --- | ---: | ---: | ---: |",
        f"| in memory | {row['baseline']} | 1 | |",
        f"| TFRecords read from disk every epoch | {row['ours']} | **{row['ratio']}** | >= {row['target']} |",
        "",
    ]


def _load_all(files: list[str], tft_output) -> dict[str, tf.Tensor]:
    """The whole split, parsed, as tensors (the in-memory baseline's data)."""
    batches = list(input_pipeline.make_dataset(files, tft_output, 1024, shuffle=False))
    return {key: tf.concat([b[key] for b in batches], axis=0) for key in batches[0]}


def _initial_weights(shape) -> list:
    keras.utils.set_random_seed(SEED)
    model = build_autoencoder(MODEL, shape)
    model.build((None, *shape))
    return model.get_weights()


def _first_batch(files: list[str], tft_output) -> dict[str, tf.Tensor]:
    """A batch shaped like every pipeline's batches (to trace the step before timing)."""
    return next(iter(input_pipeline.make_dataset(files, tft_output, BATCH_SIZE, shuffle=False)))


def _epoch_seconds(strategy, shape, initial: list, batches, epochs: int, tracing_batch) -> list[float]:
    """Traces the step, then trains ``epochs`` epochs from ``batches(epoch)``; returns each epoch's seconds."""
    with strategy.scope():
        model = build_autoencoder(MODEL, shape)
    trainer = Trainer(model, strategy, 1e-3, shape)
    trainer.train_step(tracing_batch)
    model.set_weights(initial)
    seconds = []
    for epoch in range(epochs):
        started = time.perf_counter()
        for batch in batches(epoch):
            float(trainer.train_step(batch))
        seconds.append(time.perf_counter() - started)
    return seconds
