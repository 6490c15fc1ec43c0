"""``linear``: no activations anywhere, so with MSE it learns the PCA subspace.

Encoder: flatten -> Dense(latent_dim) (affine). Decoder: Dense(H*W*C) (affine) -> reshape, with
outputs clipped to [0, 1] at inference only: training sees the plain affine map, whose MSE optimum
spans the top ``latent_dim`` principal components of the training images (Baldi & Hornik, 1989).
"""

from __future__ import annotations

import dataclasses
import math

import keras
from keras import ops

from models.base import Autoencoder
from models.registry import register_autoencoder


@dataclasses.dataclass(frozen=True)
class LinearParams:
    """No parameters: the model is fixed by the latent size and the image shape."""


class ClipAtInference(keras.layers.Layer):
    """Identity in training (keeps the model affine); clips to [0, 1] otherwise (the output contract)."""

    def call(self, inputs, training=False):
        return inputs if training else ops.clip(inputs, 0.0, 1.0)


@register_autoencoder("linear", LinearParams, loss="mse", learning_rate=3e-3, losses=("mse",))
def build_linear(params: LinearParams, latent_dim: int, input_shape: tuple, loss: str) -> Autoencoder:
    """Linear autoencoder (PCA-equivalent under MSE): affine encoder and decoder."""
    encoder = keras.Sequential(
        [keras.Input(shape=input_shape), keras.layers.Flatten(), keras.layers.Dense(latent_dim)], name="encoder"
    )
    decoder = keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            keras.layers.Dense(math.prod(input_shape)),
            keras.layers.Reshape(input_shape),
            ClipAtInference(),
        ],
        name="decoder",
    )
    return Autoencoder(encoder, decoder, loss=loss, name="linear_autoencoder")
