"""Checkpoints and the model folder's identity: saving, resuming, warm-starting.

``MODEL_DIR/checkpoints`` holds the model, the optimizer and the :class:`Progress` (epoch, step in
the epoch, history, plateau tracking, the fingerprint of the data trained on, which a resumption
must match) plus ``identity.json``, the identity (kind, code size,
image shape, parameters; ``ModelInfo.identity``) that a resumption, a warm start and a re-used
model folder must match.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile

import tensorflow as tf

from models.base import Autoencoder
from models.config import TrainConfig
from models.model_check import check_export
from models.model_info import ModelInfo, saved_model_path
from transforms.errors import UserError

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
IDENTITY_JSON = "identity.json"
_KEEP_CHECKPOINTS = 3


@dataclasses.dataclass
class Progress:
    """Where training stands; saved in every checkpoint beside the weights.

    Attributes:
      epoch: epochs completed.
      step: steps done in the current epoch; global_step: steps done in total.
      epoch_loss_sum: sum of the current epoch's step losses (for its mean after a resumption).
      history: per completed epoch, ``loss``, ``eval_loss`` and ``learning_rate``.
      best_eval_loss, epochs_without_improvement, epochs_since_lr_change: plateau tracking.
      stopped_early: early stopping ended the run.
      data_fingerprint: the fingerprint of the data trained on (``input_pipeline.data_fingerprint``).
    """

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    epoch_loss_sum: float = 0.0
    history: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {"loss": [], "eval_loss": [], "learning_rate": []}
    )
    best_eval_loss: float | None = None
    epochs_without_improvement: int = 0
    epochs_since_lr_change: int = 0
    stopped_early: bool = False
    data_fingerprint: str | None = None

    def end_epoch(self, loss: float, eval_loss: float, learning_rate: float, cfg: TrainConfig) -> tuple[bool, bool]:
        """Records a finished epoch; returns (stop early, reduce the learning rate)."""
        self.epoch, self.step, self.epoch_loss_sum = self.epoch + 1, 0, 0.0
        for key, value in (("loss", loss), ("eval_loss", eval_loss), ("learning_rate", learning_rate)):
            self.history[key].append(value)
        if self.best_eval_loss is None or eval_loss < self.best_eval_loss - cfg.min_delta:
            self.best_eval_loss, self.epochs_without_improvement, self.epochs_since_lr_change = eval_loss, 0, 0
        else:
            self.epochs_without_improvement += 1
            self.epochs_since_lr_change += 1
        stop = 0 < cfg.early_stopping_patience <= self.epochs_without_improvement
        reduce = 0 < cfg.reduce_lr_patience <= self.epochs_since_lr_change
        if reduce:
            self.epochs_since_lr_change = 0
        self.stopped_early = stop
        return stop, reduce


class ProgressState(tf.train.experimental.PythonState):
    """Puts a :class:`Progress` into ``tf.train.Checkpoint`` (as JSON)."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def serialize(self):
        return json.dumps(dataclasses.asdict(self.progress))

    def deserialize(self, string_value):
        self.progress.__dict__.update(json.loads(string_value))


class Checkpoints:
    """``tf.train.CheckpointManager`` of the model, the optimizer and the :class:`Progress`.

    The chief writes ``MODEL_DIR/checkpoints``; other workers write each save to a temporary folder
    and delete it. Every worker restores from ``MODEL_DIR/checkpoints``.
    """

    def __init__(self, model_dir: str, is_chief: bool, **objects):
        self.directory = os.path.join(model_dir, CHECKPOINT_DIR)
        self.is_chief = is_chief
        self.checkpoint = tf.train.Checkpoint(**objects)
        self._manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=_KEEP_CHECKPOINTS)

    def restore_latest(self) -> str | None:
        latest = self._manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        return latest

    def save(self, step: int) -> None:
        if self.is_chief:
            self._manager.save(checkpoint_number=step)
            return
        scratch = tempfile.mkdtemp(prefix="hourglass-worker-checkpoint-")
        try:  # the same save as the chief's, so that every worker runs the same ops
            tf.train.CheckpointManager(self.checkpoint, scratch, max_to_keep=1).save(checkpoint_number=step)
        finally:
            tf.io.gfile.rmtree(scratch)


def start(cfg: TrainConfig, saver: Checkpoints, progress: Progress, model, identity: dict, is_chief: bool, data: dict):
    """Resumes from the latest checkpoint, or warm-starts, or starts fresh; returns where it resumed.

    Raises:
      UserError: the checkpoints were trained on other data than ``data`` (a data fingerprint).
    """
    latest = saver.restore_latest()
    if latest:
        _check_same_data(cfg, progress, data)
        if cfg.warm_start:
            log.warning(
                "%s holds checkpoints: resuming from them, not warm-starting from %s", cfg.model_dir, cfg.warm_start
            )
        log.info(
            "resuming from %s: epoch %d, step %d (%d steps done)",
            latest,
            progress.epoch + 1,
            progress.step,
            progress.global_step,
        )
        return {"epoch": progress.epoch, "step": progress.step, "global_step": progress.global_step}
    progress.data_fingerprint = data["fingerprint"]
    if cfg.warm_start:
        _warm_start(model, cfg.warm_start, identity, cfg.trust_model)
    if is_chief:
        tf.io.gfile.makedirs(saver.directory)
        with tf.io.gfile.GFile(os.path.join(saver.directory, IDENTITY_JSON), "w") as f:
            json.dump(identity, f, indent=2, sort_keys=True)
    return None


def delete(model_dir: str, *also: str) -> None:
    """Deletes ``MODEL_DIR/checkpoints`` and the folders ``also`` (``--restart``)."""
    for folder in (CHECKPOINT_DIR, *also):
        if tf.io.gfile.exists(os.path.join(model_dir, folder)):
            tf.io.gfile.rmtree(os.path.join(model_dir, folder))
    log.info("--restart: deleted %s in %s", ", ".join((CHECKPOINT_DIR, *also)), model_dir)


def _check_same_data(cfg: TrainConfig, progress: Progress, data: dict) -> None:
    if progress.data_fingerprint is None:  # checkpoints written before fingerprints were recorded
        log.warning(
            "%s records no data fingerprint: resuming on %s as if it were the same data", cfg.model_dir, cfg.data_dir
        )
        progress.data_fingerprint = data["fingerprint"]
    elif progress.data_fingerprint != data["fingerprint"]:
        raise UserError(
            f"the checkpoints in {os.path.join(cfg.model_dir, CHECKPOINT_DIR)} were trained on other data "
            f"(fingerprint {progress.data_fingerprint}) than {cfg.data_dir} holds now (fingerprint "
            f"{data['fingerprint']}: {data['shards']} shards, {data['records'] or 'unknown'} records); "
            f"pass a new --model-dir to train on it, or --restart to start over in {cfg.model_dir}"
        )


def _identity_mismatch(info: dict, identity: dict) -> str:
    """What differs between a recorded model identity and the wanted one ("" when they agree)."""
    keys = [k for k in identity if k in info and info[k] != identity[k]]
    return "; ".join(f"{k} {info[k]!r}, not {identity[k]!r}" for k in keys)


def check_model_dir(model_dir: str, identity: dict) -> None:
    """Raises UserError when ``model_dir`` holds an export or checkpoints of another model."""
    recorded = {}
    if tf.io.gfile.exists(saved_model_path(model_dir)):
        recorded[saved_model_path(model_dir)] = ModelInfo.read(model_dir).identity()
    path = os.path.join(model_dir, CHECKPOINT_DIR, IDENTITY_JSON)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            recorded[path] = json.load(f)
    for path, info in recorded.items():
        mismatch = _identity_mismatch(info, identity)
        if mismatch:
            raise UserError(
                f"{model_dir} already holds a different model ({path}: {mismatch}); "
                f"pass a new --model-dir, or delete {model_dir} to start over"
            )


def _warm_start(model: Autoencoder, source_dir: str, identity: dict, trust_model: bool) -> None:
    """Loads every weight of ``model`` from the export in ``source_dir`` (same kind and shape), once
    ``model_check`` accepts it (unless ``trust_model``)."""
    mismatch = _identity_mismatch(check_export(source_dir, trust_model).identity(), identity)
    if mismatch:
        raise UserError(
            f"--warm-start {source_dir} holds a different model ({mismatch}); "
            "warm-start from a model of the same kind and shape, or drop --warm-start"
        )
    # The export's variables are an object-graph checkpoint whose root holds the model as `model`.
    variables = os.path.join(saved_model_path(source_dir), "variables", "variables")
    tf.train.Checkpoint(model=model).read(variables).expect_partial().assert_existing_objects_matched()
    log.info("warm start from %s", source_dir)
