"""Training-stage configuration (frozen dataclasses; the pipelines' config composes them).

Each field is written once, here, with its default and its help text (``models.fields.option``);
the command line's options are generated from these fields (``pipelines.cli``). Fields left unset
(``None``) stand for the kind's registered defaults: ``models.registry.resolve_train_config`` fills
them, so that a config is written with the values it ran with. :func:`write_config` writes every
stage's ``config.json`` (here, at the bottom, because training publishes its own). This module imports nothing of the
registry (the registry imports it), and nothing heavy, so the command line can import it fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from typing import Any

from models.fields import option
from transforms.corruption import CorruptionSpec, parse_corruption
from transforms.errors import UserError

LOSSES = ("mse", "bce")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
LR_SCALINGS = ("none", "linear", "sqrt")
CONFIG_JSON = "config.json"
TRUST_MODEL_HELP = (
    "Load the model folder (--model-dir of infer and evaluate, --warm-start of train) without checking its "
    "signatures, graph and hash first (models/model_check.py): only a folder you made."
)


def parse_param_args(pairs: Iterable[str]) -> dict[str, str]:
    """``["widths=500,300", "tied=true"]`` -> ``{"widths": "500,300", "tied": "true"}`` (typed by the registry).

    Raises:
      UserError: an item is not ``KEY=VALUE``.
    """
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--param takes KEY=VALUE (e.g. --param widths=500,300), got {pair!r}")
        params[key.strip()] = value.strip()
    return params


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which autoencoder to build (``hourglass models`` lists the kinds and their parameters)."""

    kind: str = option("conv", "Autoencoder kind (see `hourglass models`).")
    latent_dim: int = option(32, "Size of the code.")
    loss: str | None = option(None, "Reconstruction loss; default: the kind's.", choices=LOSSES)
    params: dict[str, Any] = option(
        help="A kind parameter (repeatable), e.g. widths=500,300; checked against the kind's parameters.",
        factory=dict,
        flag="--param",
        metavar="KEY=VALUE",
        multiple=True,
        convert=parse_param_args,
    )
    noise: str | None = option(
        None,
        "Train to denoise: gaussian:SIGMA, salt-pepper:P or mask:P (the same as --corrupt with a noise); "
        "default: the kind's.",
    )
    corrupt: str | None = option(
        None,
        "Train to restore: inputs corrupted in training with gaussian:SIGMA, salt-pepper:P, mask:P (denoise), "
        "grey (recolour), downscale:F (upscale by F) or blocks:P (inpaint); the export returns `restored`.",
    )

    def __post_init__(self):
        if self.latent_dim <= 0:
            raise UserError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.loss is not None and self.loss not in LOSSES:
            raise UserError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        noise = parse_corruption(self.noise, noise_only=True, option="--noise")
        corrupt = parse_corruption(self.corrupt)
        if noise and corrupt and noise != corrupt:
            raise UserError(
                f"--noise {noise} and --corrupt {corrupt} disagree: --noise is --corrupt for the noise kinds; give one"
            )

    @property
    def corruption(self) -> CorruptionSpec | None:
        """The corruption the model is trained to undo: ``corrupt``, else ``noise``, else None
        (before :func:`models.registry.resolve_model_config`, without the kind's default)."""
        return parse_corruption(self.corrupt) or parse_corruption(self.noise, noise_only=True, option="--noise")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: the data, the model folder, the model and the optimisation."""

    data_dir: str = option(
        help="A preprocess output folder (TFRecords and transform_output/).", flag="--data", path=True
    )
    model_dir: str = option(help="Where checkpoints, TensorBoard logs, the export and training.json go.", path=True)
    model: ModelConfig = option(help="The model to build.", factory=ModelConfig)
    epochs: int = option(20, "Epochs to train (in total, over every resumption).")
    batch_size: int | None = option(None, "Per replica; default: the kind's (see `hourglass models`).")
    learning_rate: float | None = option(None, "Adam's learning rate; default: the kind's.")
    seed: int = option(0, "Seed of the weights and of each epoch's record order.")
    strategy: str = option(
        "auto",
        "auto (MirroredStrategy over visible GPUs, else the default strategy), default, mirrored, or "
        "multi-worker (MultiWorkerMirroredStrategy from TF_CONFIG).",
        choices=STRATEGIES,
    )
    precision: str = option(
        "float32", "Compute precision (float16 with loss scaling); the export stays float32.", choices=PRECISIONS
    )
    lr_scaling: str = option("none", "How the learning rate grows with the replicas.", choices=LR_SCALINGS)
    checkpoint_every_steps: int = option(
        0, "Also checkpoint every N steps (0: at the end of each epoch only).", flag="--checkpoint-every"
    )
    early_stopping_patience: int = option(0, "Stop after N epochs without eval-loss improvement (0: off).")
    reduce_lr_patience: int = option(0, "Multiply the learning rate by the factor after N flat epochs (0: off).")
    reduce_lr_factor: float = option(0.5, "The factor of --reduce-lr-patience, in (0, 1).")
    min_delta: float = option(0.0, "The smallest eval-loss decrease that counts as an improvement.")
    warm_start: str | None = option(None, "Start from this model folder's export (same kind and shape).", path=True)
    trust_model: bool = option(False, TRUST_MODEL_HELP)
    cache_mb: int = option(1024, "Keep a split in memory after the first epoch when it takes at most this many MB.")
    restart: bool = option(
        False, "Delete the model folder's checkpoints and logs and train from scratch (e.g. on changed data)."
    )
    anomaly_fpr: float = option(
        0.01, "The share of normal images is_anomaly may flag: the threshold set on the eval split, in (0, 1)."
    )

    def __post_init__(self):
        for name in ("epochs", "batch_size", "learning_rate"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"{name} must be positive, got {value}")
        for name, value, choices in (
            ("strategy", self.strategy, STRATEGIES),
            ("precision", self.precision, PRECISIONS),
            ("lr_scaling", self.lr_scaling, LR_SCALINGS),
        ):
            if value not in choices:
                raise UserError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        counts = (self.checkpoint_every_steps, self.early_stopping_patience, self.reduce_lr_patience, self.cache_mb)
        if min(*counts, self.min_delta) < 0:
            raise UserError("checkpoint_every_steps, the patiences, cache_mb and min_delta must not be negative")
        if not 0 < self.anomaly_fpr < 1:
            raise UserError(f"anomaly_fpr must be between 0 and 1, got {self.anomaly_fpr}")
        if not 0 < self.reduce_lr_factor < 1:
            raise UserError(f"reduce_lr_factor must be between 0 and 1, got {self.reduce_lr_factor}")


def write_config(config, directory: str, name: str = CONFIG_JSON) -> str:
    """Writes ``directory/config.json`` (the resolved config; or ``name``) and returns its path."""
    import tensorflow as tf  # here: any filesystem TensorFlow writes to; the module stays light

    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, name)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2, sort_keys=True)
    return path
