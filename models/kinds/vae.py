"""``vae``: variational autoencoder with dense layers (the model is ``base.VariationalAutoencoder``).

Encoder: flatten -> Dense(w, relu) for each width -> Dense(2 * latent_dim) (mean and log-variance).
Decoder: the mirror image -> Dense(H*W*C, sigmoid) -> reshape.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from models.registry import ModelSpec, register_autoencoder
from transforms.errors import UserError

if TYPE_CHECKING:
    from models.base import Autoencoder


@dataclasses.dataclass(frozen=True)
class VaeParams:
    """Attributes:
    widths: hidden layer widths of the encoder, outermost first (the decoder mirrors them).
    beta: weight of the KL term (1 is the plain ELBO).
    """

    widths: tuple[int, ...] = (1000, 500, 250)
    beta: float = 1.0

    def __post_init__(self):
        if any(w <= 0 for w in self.widths):
            raise UserError(f"widths must be positive, got {self.widths}")
        if self.beta < 0:
            raise UserError(f"beta must be >= 0, got {self.beta}")


@register_autoencoder("vae", VaeParams, loss="bce", learning_rate=1e-3)
def build_vae(params: VaeParams, spec: ModelSpec) -> Autoencoder:
    """Variational autoencoder (dense): Gaussian code, KL term weighted by beta."""
    import keras

    from models.base import VariationalAutoencoder, dense_decoder

    hidden = [keras.layers.Dense(w, activation="relu") for w in params.widths]
    encoder = keras.Sequential(
        [keras.Input(shape=spec.image_shape), keras.layers.Flatten(), *hidden, keras.layers.Dense(2 * spec.latent_dim)],
        name="encoder",
    )
    decoder = dense_decoder(spec.latent_dim, spec.image_shape, tuple(reversed(params.widths)))
    return VariationalAutoencoder(encoder, decoder, spec, beta=params.beta, name="vae")
