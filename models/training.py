"""Training: fits an autoencoder on the preprocess output under a ``tf.distribute`` strategy.

One training path for every strategy (default, MirroredStrategy, MultiWorkerMirroredStrategy; see
``models.strategies``): a step run through ``strategy.run`` with a Keras 3 model and optimizer, the
per-example loss scaled by the global batch (``tf.nn.compute_average_loss``) and the replicas'
losses summed with ``strategy.reduce``. (Keras 3 ``model.fit`` fails under
MultiWorkerMirroredStrategy, keras-team/keras#20585.)

Reads ``DATA/{train,eval}-*.tfrecord.gz`` and ``DATA/transform_output``; a restoration model
(``--corrupt``) is trained and evaluated on pairs (corrupt(x), x) made by the input pipeline
(``input_pipeline.corruptor``; the anomaly calibration scores clean images). Writes, under MODEL_DIR:
``checkpoints/`` (see ``models.checkpoints``; saved at every epoch end and every
``checkpoint_every_steps`` steps), ``logs/{train,eval}`` (TensorBoard), and, published together
only when the run succeeded (``transforms.publishing``: a failed or killed run leaves the previous
ones), ``saved_model/`` (see ``models.export``; calibrated for anomalies on the eval split, see
``models.calibration``), ``training.json`` (with the data's fingerprint) and ``config.json``. A run
started again with the same config resumes from the last checkpoint, mid-epoch included: the
epoch's records come in an order fixed by the seed and the epoch, and the ones already trained on
are skipped. The checkpoints record the data's fingerprint, so a resumption
on changed data is refused (``--restart`` starts over), and a finished run does nothing.

Under MultiWorkerMirroredStrategy only the chief writes into MODEL_DIR (which every worker must be
able to read, to resume); the other workers save their checkpoints to a temporary folder that they
delete, because saving reads the distributed variables and every worker has to take part.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time

import keras
import tensorflow as tf

import models.kinds  # noqa: F401  (registers every kind)
from models import calibration, checkpoints, export, input_pipeline, model_info, registry, strategies
from models.base import Autoencoder
from models.config import CONFIG_JSON, TrainConfig, write_config
from models.registry import build_autoencoder
from transforms import features, layout, publishing
from transforms.errors import UserError

log = logging.getLogger(__name__)

TRAINING_JSON = "training.json"
# A model's PCA base (``Autoencoder.fit_base``) is fitted to as many training images as hold this many
# values: 8,000 32x32x3 patches (2,048 of them gave a PCA 13% worse on another photograph), 682 at 128x128x3.
BASE_SAMPLE_VALUES = 2**25
LOG_DIR = "logs"
# What a run publishes into MODEL_DIR together (checkpoints and logs are written in place).
PUBLISHED = (model_info.SAVED_MODEL_DIR, TRAINING_JSON, CONFIG_JSON)


class TrainingDiverged(UserError, FloatingPointError):
    """The loss or the weights became NaN or infinite; the message names what to change."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run produced (``epochs``: epochs trained in total, over every resumption;
    ``epochs_run``: in this run; ``already_trained``: the run had nothing to do)."""

    saved_model: str
    history: dict[str, list[float]]
    epochs: int
    examples_per_second: float
    resumed_from: dict[str, int] | None = None
    stopped_early: bool = False
    epochs_run: int = 0
    already_trained: bool = False

    def summary(self) -> str:
        """One line for people: the epochs of this run (and in total), the eval loss, the export."""
        loss = f"eval loss {self.history['eval_loss'][-1]:.5f} -> {self.saved_model}"
        if self.already_trained:
            return f"nothing to do: already trained {_epochs(self.epochs)} on this data, {loss}"
        stopped = ", stopped early" if self.stopped_early else ""
        total = f" ({self.epochs} in total)" if self.epochs != self.epochs_run else ""
        return f"trained {_epochs(self.epochs_run)}{total}{stopped}, {loss}"


def _epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


class Trainer:
    """Holds the model, optimizer and compiled steps for one strategy.

    The per-example loss is averaged over the global batch actually present: the replicas' batch
    sizes are summed, so a short last batch split unevenly over replicas and workers is weighted right.

    Args:
      model: an unbuilt autoencoder, created inside ``strategy.scope()``.
      strategy: the distribution strategy.
      learning_rate: Adam's learning rate.
      image_shape: HxWxC of the inputs.
      loss_scaling: wrap Adam in a ``LossScaleOptimizer`` (for ``mixed_float16``).
    """

    def __init__(self, model: Autoencoder, strategy, learning_rate: float, image_shape, loss_scaling: bool = False):
        self.model = model
        self.strategy = strategy
        self.loss_scaling = loss_scaling
        with strategy.scope():
            model.build((None, *image_shape))
            optimizer = keras.optimizers.Adam(learning_rate)
            self.optimizer = keras.optimizers.LossScaleOptimizer(optimizer) if loss_scaling else optimizer
            self.optimizer.build(model.trainable_variables)

    def _scaled_loss(self, inputs, targets, training):
        per_example = tf.cast(self.model.per_example_loss(inputs, targets, training=training), tf.float32)
        present = tf.cast(tf.shape(per_example)[0], tf.float32)
        global_batch = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, present)
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=tf.cast(global_batch, tf.int32))
        if training and self.model.losses:
            loss += tf.nn.scale_regularization_loss(tf.cast(tf.add_n(self.model.losses), tf.float32))
        return loss

    @tf.function
    def train_step(self, batch):
        def step(inputs, targets):
            with tf.GradientTape() as tape:
                loss = self._scaled_loss(inputs, targets, training=True)
                scaled = self.optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, self.model.trainable_variables)
            if self.loss_scaling:
                grads = _agree_on_overflow(grads)
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

    @property
    def learning_rate(self) -> float:
        # convert_to_tensor reads a distributed variable's local value; float() cannot.
        return float(tf.convert_to_tensor(self.optimizer.learning_rate))

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.optimizer.learning_rate = value


def _agree_on_overflow(grads):
    """Makes every replica's gradients non-finite when any replica's are.

    ``LossScaleOptimizer`` decides whether to skip a step from one local replica's gradients,
    before they are all-reduced; replicas (or workers) deciding differently would apply a non-finite
    sum, or wait forever in the all-reduce. One scalar all-reduce makes the decision global.
    """
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None])
    overflows = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32)
    )
    poison = tf.where(overflows > 0, float("nan"), 0.0)
    return [None if g is None else g + tf.cast(poison, g.dtype) for g in grads]


@contextlib.contextmanager
def _dtype_policy(name: str):
    """Builds layers under Keras' ``name`` dtype policy (layers keep the policy they were made with)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def train(cfg: TrainConfig) -> TrainResult:
    """Trains ``cfg.model`` on ``cfg.data_dir`` and exports it to ``cfg.model_dir``.

    Resumes from ``cfg.model_dir/checkpoints`` when it holds a checkpoint of the same data (after
    deleting them with ``cfg.restart``); otherwise starts from ``cfg.warm_start`` when given, else
    from scratch. A run whose checkpoints already hold ``cfg.epochs`` epochs on this data, with its
    export, does nothing. The export, ``training.json`` and ``config.json`` are published together
    when the run succeeded (``transforms.publishing``); checkpoints and logs are written in place.

    Raises:
      UserError: the data folder is missing, empty or mismatched, or is not a preprocess output, or
        overlaps the model folder; the warm-start folder holds no export; a model folder or warm
        start holding a different model; checkpoints of other data; a bad ``TF_CONFIG``.
      publishing.TargetBusy: another run is training in the same model folder.
      TrainingDiverged: the loss became NaN or infinite (the last checkpoint and export are kept).
    """
    strategy = strategies.make_strategy(cfg.strategy)  # first: MultiWorkerMirroredStrategy must precede other TF work
    requested, cfg = cfg, registry.resolve_train_config(cfg)
    is_chief = strategy.extended.should_checkpoint
    tft_output = input_pipeline.load_transform_output(cfg.data_dir)
    files = {split: input_pipeline.split_files(cfg.data_dir, split) for split in layout.SPLITS}
    for split, split_files in files.items():
        input_pipeline.check_split(split_files, tft_output, split)
    publishing.check_apart(cfg.model_dir, "--model-dir", {"--data": cfg.data_dir}, replaced_whole=False)
    # Only the chief writes MODEL_DIR; the other workers neither lock nor publish.
    held = publishing.Publication(cfg.model_dir, PUBLISHED, stage="train") if is_chief else contextlib.nullcontext()
    with held as publication:
        if cfg.restart and is_chief:
            checkpoints.delete(cfg.model_dir, LOG_DIR)
        result = _train(cfg, strategy, is_chief, publication, tft_output, files)
        if publication is not None and not result.already_trained:
            write_config(requested, publication.staging)
            publication.publish()
    return result


def _train(cfg: TrainConfig, strategy, is_chief: bool, publication, tft_output, files: dict) -> TrainResult:
    shape = input_pipeline.image_shape(tft_output)
    data = input_pipeline.data_fingerprint(cfg.data_dir)
    identity = model_info.identity(cfg.model.kind, cfg.model.latent_dim, shape, cfg.model.params)
    if not cfg.restart:
        checkpoints.check_model_dir(cfg.model_dir, identity)

    keras.utils.set_random_seed(cfg.seed)
    replicas = strategy.num_replicas_in_sync
    workers = strategies.num_workers(strategy)
    global_batch = cfg.batch_size * replicas
    learning_rate = strategies.scaled_learning_rate(cfg.learning_rate, replicas, cfg.lr_scaling)
    policies = {split: input_pipeline.shard_policy(len(f), workers).name for split, f in files.items()}
    log.info(
        "%s: %d replica(s) on %d worker(s), global batch %d (%d per replica), learning rate %g "
        "(%g scaled %s for %d replicas), precision %s, sharding train %s, eval %s",
        strategies.strategy_name(strategy),
        replicas,
        workers,
        global_batch,
        cfg.batch_size,
        learning_rate,
        cfg.learning_rate,
        cfg.lr_scaling,
        replicas,
        cfg.precision,
        policies["train"],
        policies["eval"],
    )

    with _dtype_policy(cfg.precision), strategy.scope():
        model = build_autoencoder(cfg.model, shape)
    trainer = Trainer(model, strategy, learning_rate, shape, loss_scaling=cfg.precision == "mixed_float16")
    if model.restorer is not None:  # it reads the corrupted pixels back from the inputs
        model.restorer.set_input_scaling(*input_pipeline.input_scaling(tft_output))
    progress = checkpoints.Progress()
    saver = checkpoints.Checkpoints(
        cfg.model_dir, is_chief, model=model, optimizer=trainer.optimizer, progress=checkpoints.ProgressState(progress)
    )
    resumed_from = checkpoints.start(cfg, saver, progress, model, identity, is_chief, data)
    if resumed_from is None and not cfg.warm_start and model.subspaces:
        _fit_base(model, files["train"], tft_output, cfg.seed)
    finished = progress.epoch >= cfg.epochs or progress.stopped_early
    if resumed_from and finished and tf.io.gfile.exists(model_info.saved_model_path(cfg.model_dir)):
        log.info("nothing to do: %s holds its export (--epochs to train more, --restart to start over)", cfg.model_dir)
        saved, epochs, stopped = model_info.saved_model_path(cfg.model_dir), progress.epoch, progress.stopped_early
        return TrainResult(saved, progress.history, epochs, 0.0, resumed_from, stopped, already_trained=True)

    # A restoration model learns (corrupt(x), x); its eval loss scores the same task.
    corruption = model.corruption
    transform = input_pipeline.corruptor(tft_output, corruption) if corruption is not None else None
    inputs = {}
    for split, split_files in files.items():
        cache = cfg.cache_mb > 0 and input_pipeline.fits_in_memory(split_files, tft_output, cfg.cache_mb)
        log.info(
            "%s split: %s", split, "kept in memory" if cache else f"read from disk (over --cache-mb {cfg.cache_mb})"
        )
        inputs[split] = input_pipeline.SplitInput(
            strategy, split_files, tft_output, global_batch, cache, transform, epochs=cfg.epochs
        )
    loop = _EpochLoop(
        cfg,
        trainer,
        progress,
        saver,
        inputs,
        _summary_writers(cfg.model_dir, is_chief),
        is_chief and sys.stderr.isatty(),
    )
    examples, started, first_epoch = 0, time.time(), progress.epoch
    while progress.epoch < cfg.epochs and not progress.stopped_early:
        examples += loop.run_epoch()
    wall = time.time() - started

    _export(model, cfg, shape, tft_output, publication, inputs["eval"].files)
    result = TrainResult(
        saved_model=model_info.saved_model_path(cfg.model_dir),
        history=progress.history,
        epochs=progress.epoch,
        examples_per_second=examples / max(wall, 1e-9),
        resumed_from=resumed_from,
        stopped_early=progress.stopped_early,
        epochs_run=progress.epoch - first_epoch,
    )
    if publication is not None:
        run = {"workers": workers, "global_batch": global_batch, "learning_rate": learning_rate, "wall": wall}
        _write_training_json(publication.staging, cfg, result, strategy, run, policies, progress, data)
    return result


def _fit_base(model: Autoencoder, files: list[str], tft_output, seed: int) -> None:
    """Fits the PCA base of a fresh model to clean train images (``BASE_SAMPLE_VALUES``), the same on
    every worker (the order is fixed by the seed)."""
    count = max(1, BASE_SAMPLE_VALUES // math.prod(model.image_shape))
    batch = next(iter(input_pipeline.make_dataset(files, tft_output, count, shuffle=True, seed=seed)))
    model.fit_base(batch[features.INPUTS].numpy(), batch[features.PIXELS].numpy())
    log.info("PCA base fitted to %d training images", len(batch[features.PIXELS]))


@dataclasses.dataclass
class _EpochLoop:
    """One epoch after the other: train (checkpointing every N steps), evaluate, track plateaus,
    log, write summaries, checkpoint."""

    cfg: TrainConfig
    trainer: Trainer
    progress: checkpoints.Progress
    saver: checkpoints.Checkpoints
    inputs: dict[str, input_pipeline.SplitInput]
    writers: dict
    show_progress: bool

    def run_epoch(self) -> int:
        """Trains the rest of the current epoch and ends it; returns the examples trained on."""
        cfg, trainer, progress = self.cfg, self.trainer, self.progress
        epoch, first_step, started = progress.epoch, progress.step, time.time()
        steps_per_epoch = (progress.global_step - progress.step) // epoch if epoch else None
        bar = keras.utils.Progbar(steps_per_epoch, unit_name="step") if self.show_progress else None
        for batch in self.inputs["train"].batches(True, cfg.seed, epoch, first_step):
            loss = float(trainer.train_step(batch))
            if not math.isfinite(loss):
                raise _non_finite("train loss", loss, progress, cfg.model_dir)
            progress.step += 1
            progress.global_step += 1
            progress.epoch_loss_sum += loss
            if bar:
                bar.update(progress.step, values=[("loss", loss)])
            if cfg.checkpoint_every_steps and progress.global_step % cfg.checkpoint_every_steps == 0:
                self._save()
        if bar:  # the first epoch's bar has no target: end its line before the epoch's log line
            bar.update(progress.step, finalize=True)
        seconds = time.time() - started
        examples = (progress.step - first_step) * self.inputs["train"].global_batch
        loss = progress.epoch_loss_sum / progress.step
        eval_loss = _mean_loss(trainer.eval_step, self.inputs["eval"].batches(False))
        if not math.isfinite(eval_loss):
            raise _non_finite("eval loss", eval_loss, progress, cfg.model_dir)
        lr = trainer.learning_rate
        stop, reduce = progress.end_epoch(loss, eval_loss, lr, cfg)
        if reduce:
            trainer.learning_rate = lr * cfg.reduce_lr_factor
        rate = examples / max(seconds, 1e-9)
        _write_summaries(self.writers, progress.global_step, loss, eval_loss, lr, rate)
        self._save()
        log.info(
            "epoch %d/%d: loss %.5f, eval_loss %.5f, learning rate %.3g, %.0f examples/s, %.1f s%s%s",
            epoch + 1,
            cfg.epochs,
            loss,
            eval_loss,
            lr,
            rate,
            seconds,
            f"; learning rate -> {trainer.learning_rate:.3g}" if reduce else "",
            f"; no eval-loss improvement for {progress.epochs_without_improvement} epochs, stopping" if stop else "",
        )
        return examples

    def _save(self) -> None:
        _check_finite_weights(self.trainer.model, self.progress, self.cfg.model_dir)
        self.saver.save(self.progress.global_step)


def _non_finite(split: str, loss: float, progress: checkpoints.Progress, model_dir: str) -> TrainingDiverged:
    return TrainingDiverged(
        f"{split} became {loss} in epoch {progress.epoch + 1} (step {progress.step + 1}); training stopped. "
        f"The last checkpoint and the last good export in {model_dir} are untouched. "
        "Lower --learning-rate, use --precision float32, or check the data"
    )


def _check_finite_weights(model: Autoencoder, progress: checkpoints.Progress, model_dir: str) -> None:
    """Refuses to checkpoint non-finite weights (a step can break them while its loss was still finite)."""
    if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in model.trainable_variables):
        raise _non_finite("weights", float("nan"), progress, model_dir)


def _mean_loss(step_fn, data) -> float:
    losses = [float(step_fn(batch)) for batch in data]
    return sum(losses) / len(losses) if losses else float("nan")


def _summary_writers(model_dir: str, is_chief: bool) -> dict:
    if not is_chief:
        return {"train": tf.summary.create_noop_writer(), "eval": tf.summary.create_noop_writer()}
    return {
        split: tf.summary.create_file_writer(os.path.join(model_dir, LOG_DIR, split)) for split in ("train", "eval")
    }


def _write_summaries(writers: dict, step: int, loss: float, eval_loss: float, lr: float, rate: float) -> None:
    with writers["train"].as_default(step=step):
        tf.summary.scalar("loss", loss)
        tf.summary.scalar("learning_rate", lr)
        tf.summary.scalar("examples_per_second", rate)
    with writers["eval"].as_default(step=step):
        tf.summary.scalar("loss", eval_loss)
    for writer in writers.values():
        writer.flush()


def _export(model: Autoencoder, cfg: TrainConfig, shape, tft_output, publication, eval_files: list[str]) -> None:
    """Calibrates and exports a plain float32 copy of ``model`` into the staging folder (chief only;
    every worker reads the weights).

    The copy makes the export independent of the strategy and of the compute precision; the
    calibration scores the eval split with it, as the export will.
    """
    with _dtype_policy("float32"):
        plain = build_autoencoder(cfg.model, shape)
    plain.build((None, *shape))
    plain.set_weights(model.get_weights())  # reads the distributed variables: every worker takes part
    if publication is None:
        return
    eval_batches = input_pipeline.make_dataset(eval_files, tft_output, cfg.batch_size, shuffle=False)
    calibrated = calibration.calibrate(plain, eval_batches, cfg.anomaly_fpr)
    export.export_model(plain, tft_output, publication.staging, cfg.model.params, calibrated)


def _write_training_json(
    folder: str,
    cfg: TrainConfig,
    result: TrainResult,
    strategy,
    run: dict,
    policies: dict,
    progress: checkpoints.Progress,
    data: dict,
) -> None:
    report = {
        "config": dataclasses.asdict(cfg),
        "data": {"path": cfg.data_dir, **data},
        "strategy": strategies.strategy_name(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "workers": run["workers"],
        "global_batch": run["global_batch"],
        "learning_rate": run["learning_rate"],
        "precision": cfg.precision,
        "shard_policy": policies,
        "epochs_run": result.epochs,
        "epochs_this_invocation": result.epochs_run,
        "global_step": progress.global_step,
        "resumed_from": result.resumed_from,
        "warm_start": cfg.warm_start if result.resumed_from is None else None,
        "stopped_early": result.stopped_early,
        "history": result.history,
        "examples_per_second": result.examples_per_second,
        "wall_seconds": run["wall"],
        "saved_model": result.saved_model,
    }
    with tf.io.gfile.GFile(os.path.join(folder, TRAINING_JSON), "w") as f:
        json.dump(report, f, indent=2)
