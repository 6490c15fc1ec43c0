"""``vae``: variational autoencoder with dense layers; :class:`VariationalAutoencoder` is shared with ``conv-vae``.

The encoder outputs the mean and log-variance of a diagonal Gaussian posterior ``q(z|x)``
(``(batch, 2 * latent_dim)``, mean first). ``encode`` returns the mean (what the export's
``encode`` and ``serving_default`` give); training decodes a reparameterized sample
``z = mean + exp(log_var / 2) * eps`` and adds ``beta * KL(q(z|x) || N(0, I))`` per example. The
loss is the negative ELBO (beta = 1) divided by the number of pixels, so it reads on the same scale
as the other kinds' per-pixel losses. The decoder takes any latent vectors: ``sample(n)`` decodes
draws from the prior.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import tensorflow as tf
from keras import ops

from models.base import Autoencoder, dense_decoder
from models.registry import register_autoencoder


class VariationalAutoencoder(Autoencoder):
    """Gaussian-posterior autoencoder trained on the beta-weighted ELBO.

    Args:
      encoder: images -> ``(batch, 2 * latent_dim)`` (mean, then log-variance).
      decoder: ``(batch, latent_dim)`` -> images in [0, 1].
      beta: weight of the KL term.
    """

    variational = True

    def __init__(self, encoder, decoder, beta: float = 1.0, **kwargs):
        super().__init__(encoder, decoder, **kwargs)
        self.beta = beta

    def posterior(self, images, training: bool = False):
        """``(mean, log_var)`` of ``q(z|x)``, each ``(batch, latent_dim)``."""
        moments = self.encoder(images, training=training)
        return moments[:, : self.latent_dim], moments[:, self.latent_dim :]

    def encode(self, images, training: bool = False):
        return self.posterior(images, training=training)[0]

    def code_and_penalty(self, images, training: bool):
        mean, log_var = self.posterior(images, training=training)
        # tf.random (not keras.random): no seed-generator state, so it runs in any replica context.
        codes = mean + ops.exp(0.5 * log_var) * tf.random.normal(ops.shape(mean)) if training else mean
        pixels = math.prod(self.image_shape)
        return codes, self.beta * gaussian_kl(mean, log_var) / pixels

    def sample(self, count: int):
        """``count`` images decoded from draws of the prior ``N(0, I)``."""
        return self.decode(tf.random.normal((count, self.latent_dim)))


def gaussian_kl(mean, log_var):
    """``KL(N(mean, exp(log_var)) || N(0, I))`` per example ``(batch,)``."""
    return -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)


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
            raise ValueError(f"widths must be positive, got {self.widths}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")


@register_autoencoder("vae", VaeParams, loss="bce", learning_rate=1e-3)
def build_vae(params: VaeParams, latent_dim: int, input_shape: tuple, loss: str) -> Autoencoder:
    """Variational autoencoder (dense): Gaussian code, KL term weighted by beta."""
    hidden = [keras.layers.Dense(w, activation="relu") for w in params.widths]
    encoder = keras.Sequential(
        [keras.Input(shape=input_shape), keras.layers.Flatten(), *hidden, keras.layers.Dense(2 * latent_dim)],
        name="encoder",
    )
    decoder = dense_decoder(latent_dim, input_shape, tuple(reversed(params.widths)))
    return VariationalAutoencoder(encoder, decoder, beta=params.beta, loss=loss, name="vae")
