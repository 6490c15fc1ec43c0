"""``conv-vae``: the variational autoencoder (``models.vae``) on the ``conv`` encoder and decoder.

The encoder is ``conv``'s with ``2 * latent_dim`` outputs (mean and log-variance); the decoder is
``conv``'s, so any HxWxC works, odd sizes included.
"""

from __future__ import annotations

import dataclasses

from models.base import Autoencoder
from models.conv import ConvParams, conv_decoder, conv_encoder
from models.registry import register_autoencoder
from models.vae import VariationalAutoencoder


@dataclasses.dataclass(frozen=True)
class ConvVaeParams:
    """Attributes:
    filters, kernel_size: as for ``conv``.
    beta: weight of the KL term (1 is the plain ELBO).
    """

    filters: tuple[int, ...] = ConvParams.filters
    kernel_size: int = ConvParams.kernel_size
    beta: float = 1.0

    def __post_init__(self):
        ConvParams(self.filters, self.kernel_size)  # the same checks as conv's
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")


@register_autoencoder("conv-vae", ConvVaeParams, loss="bce", learning_rate=2e-3)
def build_conv_vae(params: ConvVaeParams, latent_dim: int, input_shape: tuple, loss: str) -> Autoencoder:
    """Convolutional variational autoencoder: conv encoder/decoder, Gaussian code, beta-weighted KL."""
    conv = ConvParams(params.filters, params.kernel_size)
    encoder = conv_encoder(conv, 2 * latent_dim, input_shape)
    decoder = conv_decoder(conv, latent_dim, input_shape)
    return VariationalAutoencoder(encoder, decoder, beta=params.beta, loss=loss, name="conv_vae")
