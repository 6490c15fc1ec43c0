"""The model card: what was evaluated, read from the model folder (no model call).

Input: a model folder (``saved_model/`` with ``model_info.json``, and ``training.json`` when
``hourglass train`` made it). Output: :class:`ModelCard`: ``fields`` (the ``model`` section of
``metrics.json``: kind, code size, kind parameters, loss, corruption, image shape, weight hash,
number of weights, export size in bytes, epochs run and the training data) and ``history``
(``training.json``'s per-epoch ``loss``, ``eval_loss`` and ``learning_rate``, for the loss curves
and the convergence verdict; None when the folder has no ``training.json``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import numpy as np
import tensorflow as tf

from models.model_info import ModelInfo, saved_model_path
from models.training import TRAINING_JSON
from transforms.errors import UserError

log = logging.getLogger(__name__)

_VARIABLES = os.path.join("variables", "variables")
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """The card's fields (JSON values) and the training history, if recorded."""

    fields: dict
    history: dict[str, list[float]] | None


def read_card(model_dir: str, info: ModelInfo, variational: bool) -> ModelCard:
    """The card of the export in ``model_dir`` whose ``model_info.json`` is ``info``.

    Raises:
      UserError: ``training.json`` exists but is not valid JSON (names the file and the fix).
    """
    export = saved_model_path(model_dir)
    training = _read_training(os.path.join(model_dir, TRAINING_JSON))
    fields = {
        "kind": info.kind,
        "latent_dim": info.latent_dim,
        "params": info.params,
        "loss": info.loss,
        "noise": info.noise,
        "corruption": info.restores,
        "image_shape": list(info.image_shape),
        "model_hash": info.model_hash,
        "variational": variational,
        "denoising": info.denoising,
        "weights": count_weights(export),
        "size_bytes": folder_bytes(export),
        "epochs": None if training is None else int(training["epochs_run"]),
        "trained_on": None if training is None else training["config"]["data_dir"],
    }
    history = (
        None if training is None else {key: [float(v) for v in values] for key, values in training["history"].items()}
    )
    return ModelCard(fields, history)


def count_weights(export_dir: str) -> int:
    """The number of values in the export's variables (the autoencoder's weights)."""
    shapes = tf.train.list_variables(os.path.join(export_dir, _VARIABLES))
    return int(sum(np.prod(shape, dtype=np.int64) for name, shape in shapes if name.endswith(_VALUE_SUFFIX)))


def folder_bytes(folder: str) -> int:
    """The total size of the files under ``folder``."""
    return sum(
        tf.io.gfile.stat(os.path.join(root, name)).length
        for root, _, files in tf.io.gfile.walk(folder)
        for name in files
    )


def _read_training(path: str) -> dict | None:
    if not tf.io.gfile.exists(path):
        log.info("%s not found: the report has no loss curves and no epoch count", path)
        return None
    with tf.io.gfile.GFile(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise UserError(
                f"{path} is not valid JSON ({error}); run `hourglass train` again or delete the file"
            ) from error
