"""``dense``: undercomplete autoencoder with one code layer (e.g. 784 -> 32 -> 784).

Encoder: flatten -> Dense(latent_dim, LeakyReLU). Decoder: Dense(H*W*C, sigmoid) -> reshape.
"""

from __future__ import annotations

import dataclasses

import keras

from models.base import Autoencoder, dense_decoder
from models.registry import register_autoencoder


@dataclasses.dataclass(frozen=True)
class DenseParams:
    """Attributes: negative_slope: LeakyReLU slope of the code layer."""

    negative_slope: float = 0.2


@register_autoencoder("dense", DenseParams, loss="mse", learning_rate=3e-3)
def build_dense(params: DenseParams, latent_dim: int, input_shape: tuple, loss: str) -> Autoencoder:
    """Undercomplete autoencoder: one LeakyReLU code layer, sigmoid output."""
    encoder = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(latent_dim),
            keras.layers.LeakyReLU(negative_slope=params.negative_slope),
        ],
        name="encoder",
    )
    decoder = dense_decoder(latent_dim, input_shape)
    return Autoencoder(encoder, decoder, loss=loss, name="dense_autoencoder")
