"""Training-stage configuration (frozen dataclasses; the pipelines' config composes them)."""

from __future__ import annotations

import dataclasses
from typing import Any

LOSSES = ("mse", "bce")
STRATEGIES = ("auto", "default", "mirrored")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which autoencoder to build.

    Attributes:
      kind: a registered kind (``hourglass models`` lists them).
      latent_dim: size of the code.
      loss: reconstruction loss, ``mse`` or ``bce``.
      params: the kind's own parameters (checked against its parameter dataclass).
    """

    kind: str = "dense"
    latent_dim: int = 32
    loss: str = "mse"
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
      data_dir: the preprocess output (TFRecords and ``transform_output/``).
      model_dir: where checkpoints, the export and ``training.json`` go.
      model: the model to build.
      epochs, batch_size (per replica), learning_rate, seed: the usual.
      strategy: ``auto`` (MirroredStrategy over visible GPUs, else the default strategy),
        ``default`` or ``mirrored``.
    """

    data_dir: str
    model_dir: str
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    strategy: str = "auto"

    def __post_init__(self):
        if self.epochs <= 0 or self.batch_size <= 0 or self.learning_rate <= 0:
            raise ValueError("epochs, batch_size and learning_rate must be positive")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
