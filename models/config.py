"""Training-stage configuration (frozen dataclasses; the pipelines' config composes them).

Fields left unset (``None``) take the kind's registered defaults when the config is made
(``models.registry``), so a config always holds the resolved values it is written with.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from transforms.noise import parse_noise

LOSSES = ("mse", "bce")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
LR_SCALINGS = ("none", "linear", "sqrt")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which autoencoder to build.

    Attributes:
      kind: a registered kind (``hourglass models`` lists them).
      latent_dim: size of the code.
      loss: reconstruction loss, ``mse`` or ``bce`` (those the kind accepts); None: the kind's default.
      params: the kind's own parameters (checked against its parameter dataclass; resolved to all
        of them, defaults included).
      noise: corruption of the inputs in training, ``KIND:AMOUNT`` (``transforms.noise``); None:
        the kind's default (``gaussian:0.5`` for ``denoising``, no noise for the others).
    """

    kind: str = "dense"
    latent_dim: int = 32
    loss: str | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    noise: str | None = None

    def __post_init__(self):
        from models import registry  # here, not at the top: the registry imports this module

        if self.latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        settings = registry.kind_settings(self.kind)
        if self.loss is not None and self.loss not in settings.losses:
            raise ValueError(
                f"loss for kind {self.kind!r} must be one of {', '.join(settings.losses)}, got {self.loss!r}"
            )
        noise = parse_noise(self.noise or settings.noise)
        params = registry.resolve_params(self.kind, dict(self.params))
        object.__setattr__(self, "loss", self.loss or settings.loss)
        object.__setattr__(self, "noise", str(noise) if noise else None)
        object.__setattr__(self, "params", dataclasses.asdict(params))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
      data_dir: the preprocess output (TFRecords and ``transform_output/``).
      model_dir: where checkpoints, the export and ``training.json`` go.
      model: the model to build.
      epochs, seed: the usual.
      batch_size: per replica; None: the model kind's default.
      learning_rate: Adam's learning rate; None: the model kind's default.
      strategy: ``auto`` (MirroredStrategy over visible GPUs, else the default strategy),
        ``default``, ``mirrored`` or ``multi-worker`` (MultiWorkerMirroredStrategy from ``TF_CONFIG``).
      precision: ``float32``, ``mixed_float16`` (with loss scaling) or ``mixed_bfloat16``; the
        model's outputs and the export stay float32.
      lr_scaling: how the learning rate grows with the replicas (the global batch grows with them):
        ``none``, ``linear`` or ``sqrt``.
      checkpoint_every_steps: also checkpoint every this many steps (0: at the end of each epoch only).
      early_stopping_patience: stop after this many epochs without eval-loss improvement (0: off).
      reduce_lr_patience: multiply the learning rate by ``reduce_lr_factor`` after this many epochs
        without eval-loss improvement (0: off).
      min_delta: the smallest eval-loss decrease that counts as an improvement.
      warm_start: a model folder of the same kind and shape to start from (when there is no checkpoint).
      cache_mb: keep a split's parsed examples in memory after the first epoch when they take at
        most this many MB (0: always read from disk).
    """

    data_dir: str
    model_dir: str
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    epochs: int = 10
    batch_size: int | None = None
    learning_rate: float | None = None
    seed: int = 0
    strategy: str = "auto"
    precision: str = "float32"
    lr_scaling: str = "none"
    checkpoint_every_steps: int = 0
    early_stopping_patience: int = 0
    reduce_lr_patience: int = 0
    reduce_lr_factor: float = 0.5
    min_delta: float = 0.0
    warm_start: str | None = None
    cache_mb: int = 1024

    def __post_init__(self):
        from models import registry  # here, not at the top: the registry imports this module

        settings = registry.kind_settings(self.model.kind)
        for name in ("batch_size", "learning_rate"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(settings, name))
        if self.epochs <= 0 or self.batch_size <= 0 or self.learning_rate <= 0:
            raise ValueError("epochs, batch_size and learning_rate must be positive")
        for name, value, choices in (
            ("strategy", self.strategy, STRATEGIES),
            ("precision", self.precision, PRECISIONS),
            ("lr_scaling", self.lr_scaling, LR_SCALINGS),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        counts = (self.checkpoint_every_steps, self.early_stopping_patience, self.reduce_lr_patience, self.cache_mb)
        if min(*counts, self.min_delta) < 0:
            raise ValueError("checkpoint_every_steps, the patiences, cache_mb and min_delta must not be negative")
        if not 0 < self.reduce_lr_factor < 1:
            raise ValueError(f"reduce_lr_factor must be between 0 and 1, got {self.reduce_lr_factor}")
