"""Training throughput fed by our TFRecords input pipeline vs. the same data already in memory.

Every run trains the same model (same initial weights, batch, epochs) with the same
``models.training.Trainer`` step under the same strategy; only the input differs:

- ``tfrecords``: ``models.training.SplitInput``, exactly what ``hourglass train`` iterates (the
  gzipped TFRecords read and parsed, kept in memory when they fit ``--cache-mb``, shuffled with a
  per-epoch seed, batched, prefetched); its first pass (which fills the cache) is timed too;
- ``in_memory``: the parsed train split held as tensors, shuffled and batched by ``tf.data``;
- ``tfrecords_from_disk`` (for reference): ``SplitInput`` without the cache (``--cache-mb 0``), as
  for a split too large for memory.

Target: ``tfrecords / in_memory >= 0.9`` (the input pipeline is not the bottleneck). The runs
alternate for ``ROUNDS`` rounds and each keeps its best round, because the machine is shared.
Writes ``OUT/training_input.json`` and ``OUT/training_input.md``.
"""

from __future__ import annotations

import functools
import logging
import pathlib
import time

import keras
import tensorflow as tf

import models.kinds  # noqa: F401  (registers every kind)
from benchmarks import report
from models import input_pipeline
from models.config import ModelConfig
from models.registry import build_autoencoder
from models.training import SplitInput, Trainer
from pipelines.config import PreprocessConfig
from pipelines.preprocess.job import run_preprocess
from transforms import features

log = logging.getLogger(__name__)

BATCH_SIZE = 128
EPOCHS = 10  # the default of --epochs
ROUNDS = 3
SEED = 0
CACHE_MB = 1024  # the default of --cache-mb
MODEL = ModelConfig("dense", latent_dim=32)


def main(out_dir: pathlib.Path) -> dict:
    data_dir = out_dir / "training_input_data"
    if not (data_dir / input_pipeline.TRANSFORM_DIR).exists():
        run_preprocess(PreprocessConfig(input="builtin:mnist", output=str(data_dir)))
    tft_output = input_pipeline.load_transform_output(str(data_dir))
    shape = input_pipeline.image_shape(tft_output)
    files = input_pipeline.split_files(str(data_dir), "train")
    strategy = tf.distribute.get_strategy()
    tensors = _load_all(files, tft_output)
    examples = int(tensors[features.INPUTS].shape[0])

    cache = input_pipeline.fits_in_memory(files, tft_output, CACHE_MB)

    def in_memory():
        def batches(epoch: int):
            dataset = tf.data.Dataset.from_tensor_slices(tensors).shuffle(examples, seed=SEED * 100_003 + epoch)
            return strategy.experimental_distribute_dataset(dataset.batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE))

        return batches

    def tfrecords(cached: bool):
        return lambda: functools.partial(
            SplitInput(strategy, files, tft_output, BATCH_SIZE, cached).batches, True, SEED
        )

    variants = {"tfrecords": tfrecords(cache), "in_memory": in_memory, "tfrecords_from_disk": tfrecords(False)}
    initial = _initial_weights(shape)
    best = {name: {"all": 0.0, "after_first": 0.0} for name in variants}
    for round_ in range(ROUNDS):
        for name, batches in variants.items():
            seconds = _epoch_seconds(strategy, shape, initial, batches(), tracing_batch=_first_batch(files, tft_output))
            rates = {"all": EPOCHS * examples / sum(seconds), "after_first": (EPOCHS - 1) * examples / sum(seconds[1:])}
            log.info("round %d, %s: %.0f examples/s (%.0f after the first epoch)", round_ + 1, name, *rates.values())
            best[name] = {k: max(best[name][k], v) for k, v in rates.items()}
    figures = {
        "examples": examples,
        "epochs": EPOCHS,
        "batch_size": BATCH_SIZE,
        "model": f"{MODEL.kind}, latent {MODEL.latent_dim}, {'x'.join(map(str, shape))} images",
        "tfrecords_cached_in_memory": cache,
        "tfrecords_examples_per_second": round(best["tfrecords"]["all"]),
        "in_memory_examples_per_second": round(best["in_memory"]["all"]),
        "ratio": round(best["tfrecords"]["all"] / best["in_memory"]["all"], 3),
        "ratio_after_first_epoch": round(best["tfrecords"]["after_first"] / best["in_memory"]["after_first"], 3),
        "tfrecords_from_disk_examples_per_second": round(best["tfrecords_from_disk"]["all"]),
        "ratio_from_disk": round(best["tfrecords_from_disk"]["all"] / best["in_memory"]["all"], 3),
        "target_ratio": 0.9,
    }
    report.write(out_dir, "training_input", figures)
    return figures


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


def _epoch_seconds(strategy, shape, initial: list, batches, tracing_batch) -> list[float]:
    """Traces the step, then trains ``EPOCHS`` epochs from ``batches(epoch)``; returns each epoch's seconds."""
    with strategy.scope():
        model = build_autoencoder(MODEL, shape)
    trainer = Trainer(model, strategy, 1e-3, shape)
    trainer.train_step(tracing_batch)
    model.set_weights(initial)
    seconds = []
    for epoch in range(EPOCHS):
        started = time.perf_counter()
        for batch in batches(epoch):
            float(trainer.train_step(batch))
        seconds.append(time.perf_counter() - started)
    return seconds
