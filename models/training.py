"""Training: fits an autoencoder on the preprocess output under a ``tf.distribute`` strategy.

One training path for every strategy: a step run through ``strategy.run`` with a Keras 3 model and
optimizer, the per-example loss scaled by the global batch (``tf.nn.compute_average_loss``) and
the replicas' losses summed with ``strategy.reduce``. (Keras 3 ``model.fit`` fails under
MultiWorkerMirroredStrategy, keras-team/keras#20585.)

Reads ``DATA/{train,eval}-*.tfrecord.gz`` and ``DATA/transform_output``; writes
``MODEL_DIR/saved_model`` (see ``models.export``) and ``MODEL_DIR/training.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from models import export, input_pipeline
from models.base import Autoencoder
from models.config import TrainConfig
from models.registry import build_autoencoder
from transforms import features

log = logging.getLogger(__name__)

TRAINING_JSON = "training.json"


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    saved_model: str
    history: dict[str, list[float]]
    epochs: int
    examples_per_second: float


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``auto``: MirroredStrategy over visible GPUs, else the default strategy."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "auto" and tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


class Trainer:
    """Holds the model, optimizer and compiled steps for one strategy.

    The per-example loss is averaged over the global batch that is actually present (so a short
    last batch is weighted right), which is what ``compute_average_loss`` does without a fixed size.

    Args:
      model: an unbuilt autoencoder, created inside ``strategy.scope()``.
      strategy: the distribution strategy.
      learning_rate: Adam's learning rate.
      image_shape: HxWxC of the inputs.
    """

    def __init__(self, model: Autoencoder, strategy, learning_rate: float, image_shape):
        self.model = model
        self.strategy = strategy
        with strategy.scope():
            model.build((None, *image_shape))
            self.optimizer = keras.optimizers.Adam(learning_rate)
            self.optimizer.build(model.trainable_variables)

    def _scaled_loss(self, inputs, targets, training):
        per_example = self.model.per_example_loss(inputs, targets, training=training)
        loss = tf.nn.compute_average_loss(per_example)
        if training and self.model.losses:
            loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
        return loss

    @tf.function
    def train_step(self, batch):
        def step(inputs, targets):
            with tf.GradientTape() as tape:
                loss = self._scaled_loss(inputs, targets, training=True)
            grads = tape.gradient(loss, self.model.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
            return loss

        per_replica = self.strategy.run(step, args=(batch[features.INPUTS], batch[features.PIXELS]))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    @tf.function
    def eval_step(self, batch):
        def step(inputs, targets):
            return self._scaled_loss(inputs, targets, training=False)

        per_replica = self.strategy.run(step, args=(batch[features.INPUTS], batch[features.PIXELS]))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)


def train(cfg: TrainConfig) -> TrainResult:
    """Trains ``cfg.model`` on ``cfg.data_dir`` and exports it to ``cfg.model_dir``.

    Raises:
      FileNotFoundError: the data folder is not a preprocess output.
      FloatingPointError: the loss became NaN or infinite (the last good export is kept).
    """
    tft_output = input_pipeline.load_transform_output(cfg.data_dir)
    shape = input_pipeline.image_shape(tft_output)
    train_files = input_pipeline.split_files(cfg.data_dir, "train")
    eval_files = input_pipeline.split_files(cfg.data_dir, "eval")

    keras.utils.set_random_seed(cfg.seed)
    strategy = make_strategy(cfg.strategy)
    replicas = strategy.num_replicas_in_sync
    global_batch = cfg.batch_size * replicas
    log.info("strategy %s, %d replica(s), global batch %d", type(strategy).__name__, replicas, global_batch)

    with strategy.scope():
        model = build_autoencoder(cfg.model, shape)
    trainer = Trainer(model, strategy, cfg.learning_rate, shape)
    train_data = strategy.experimental_distribute_dataset(
        input_pipeline.make_dataset(train_files, tft_output, global_batch, shuffle=True, seed=cfg.seed)
    )
    eval_data = strategy.experimental_distribute_dataset(
        input_pipeline.make_dataset(eval_files, tft_output, global_batch, shuffle=False)
    )

    history: dict[str, list[float]] = {"loss": [], "eval_loss": []}
    examples, started = 0, time.time()
    for epoch in range(cfg.epochs):
        train_loss, steps = _run_epoch(trainer, train_data, epoch, cfg.epochs)
        examples += steps * global_batch
        eval_loss = _mean_loss(trainer.eval_step, eval_data)
        if not (math.isfinite(train_loss) and math.isfinite(eval_loss)):
            raise FloatingPointError(
                f"loss became {train_loss} (eval {eval_loss}) in epoch {epoch + 1}; "
                "lower --learning-rate or check the data; the last good export is untouched"
            )
        history["loss"].append(train_loss)
        history["eval_loss"].append(eval_loss)
        log.info("epoch %d/%d: loss %.5f, eval_loss %.5f", epoch + 1, cfg.epochs, train_loss, eval_loss)
    wall = time.time() - started

    info = {
        "kind": cfg.model.kind,
        "latent_dim": cfg.model.latent_dim,
        "loss": cfg.model.loss,
        "image_shape": list(shape),
    }
    saved = export.export_model(model, tft_output, cfg.model_dir, info)
    result = TrainResult(saved, history, cfg.epochs, examples / max(wall, 1e-9))
    _write_training_json(cfg, result, strategy, replicas, wall)
    return result


def _run_epoch(trainer: Trainer, data, epoch: int, epochs: int) -> tuple[float, int]:
    """One pass over ``data`` with Keras progress; returns (mean loss, steps)."""
    progress = keras.utils.Progbar(None, verbose=1 if sys.stderr.isatty() else 2, unit_name="step")
    total, steps = 0.0, 0
    for batch in data:
        loss = float(trainer.train_step(batch))
        total, steps = total + loss, steps + 1
        progress.update(steps, values=[("loss", loss)])
    progress.update(steps, values=[], finalize=True)
    log.debug("epoch %d/%d done after %d steps", epoch + 1, epochs, steps)
    return total / max(steps, 1), steps


def _mean_loss(step_fn, data) -> float:
    losses = [float(step_fn(batch)) for batch in data]
    return float(np.mean(losses)) if losses else float("nan")


def _write_training_json(cfg: TrainConfig, result: TrainResult, strategy, replicas: int, wall: float) -> None:
    report = {
        "config": dataclasses.asdict(cfg),
        "strategy": type(strategy).__name__,
        "replicas": replicas,
        "epochs_run": result.epochs,
        "history": result.history,
        "examples_per_second": result.examples_per_second,
        "wall_seconds": wall,
        "saved_model": result.saved_model,
    }
    with tf.io.gfile.GFile(os.path.join(cfg.model_dir, TRAINING_JSON), "w") as f:
        json.dump(report, f, indent=2)
