"""``dense``: undercomplete autoencoder with one code layer (e.g. 784 -> 32 -> 784).

Encoder: flatten -> Dense(latent_dim, LeakyReLU). Decoder: Dense(H*W*C, sigmoid) -> reshape.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from models.registry import ModelSpec, register_autoencoder

if TYPE_CHECKING:
    from models.base import Autoencoder


@dataclasses.dataclass(frozen=True)
class DenseParams:
    """Attributes: negative_slope: LeakyReLU slope of the code layer."""

    negative_slope: float = 0.2


@register_autoencoder("dense", DenseParams, loss="mse", learning_rate=3e-3)
def build_dense(params: DenseParams, spec: ModelSpec) -> Autoencoder:
    """Undercomplete autoencoder: one LeakyReLU code layer, sigmoid output."""
    import keras

    from models.base import Autoencoder, dense_decoder

    encoder = keras.Sequential(
        [
            keras.Input(shape=spec.image_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(spec.latent_dim),
            keras.layers.LeakyReLU(negative_slope=params.negative_slope),
        ],
        name="encoder",
    )
    decoder = dense_decoder(spec.latent_dim, spec.image_shape)
    return Autoencoder(encoder, decoder, spec, name="dense_autoencoder")
