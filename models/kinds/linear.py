"""``linear``: no activations anywhere, so with MSE it learns the PCA subspace.

Encoder: flatten -> Dense(latent_dim) (affine). Decoder: Dense(H*W*C) (affine) -> reshape, with
outputs clipped to [0, 1] at inference only: training sees the plain affine map, whose MSE optimum
spans the top ``latent_dim`` principal components of the training images (Baldi & Hornik, 1989).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from models.registry import ModelSpec, register_autoencoder

if TYPE_CHECKING:
    from models.base import Autoencoder


@dataclasses.dataclass(frozen=True)
class LinearParams:
    """No parameters: the model is fixed by the latent size and the image shape."""


@register_autoencoder("linear", LinearParams, loss="mse", learning_rate=3e-3, losses=("mse",))
def build_linear(params: LinearParams, spec: ModelSpec) -> Autoencoder:
    """Linear autoencoder (PCA-equivalent under MSE): affine encoder and decoder."""
    import keras

    from models.base import Autoencoder
    from models.layers import ClipAtInference

    encoder = keras.Sequential(
        [keras.Input(shape=spec.image_shape), keras.layers.Flatten(), keras.layers.Dense(spec.latent_dim)],
        name="encoder",
    )
    decoder = keras.Sequential(
        [
            keras.Input(shape=(spec.latent_dim,)),
            keras.layers.Dense(math.prod(spec.image_shape)),
            keras.layers.Reshape(spec.image_shape),
            ClipAtInference(),
        ],
        name="decoder",
    )
    return Autoencoder(encoder, decoder, spec, name="linear_autoencoder")
