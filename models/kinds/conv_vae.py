"""``conv-vae``: the variational autoencoder (``base.VariationalAutoencoder``) on the ``conv`` encoder and decoder.

The encoder is ``conv``'s with ``2 * latent_dim`` outputs (mean and log-variance); the decoder is
``conv``'s, so any HxWxC works, odd sizes included.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from models.kinds.conv import ConvParams, conv_decoder, conv_encoder
from models.registry import ModelSpec, register_autoencoder
from transforms.errors import UserError

if TYPE_CHECKING:
    from models.base import Autoencoder


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
            raise UserError(f"beta must be >= 0, got {self.beta}")


@register_autoencoder("conv-vae", ConvVaeParams, loss="bce", learning_rate=2e-3)
def build_conv_vae(params: ConvVaeParams, spec: ModelSpec) -> Autoencoder:
    """Convolutional variational autoencoder: conv encoder/decoder, Gaussian code, beta-weighted KL."""
    from models.base import VariationalAutoencoder

    conv = ConvParams(params.filters, params.kernel_size)
    encoder = conv_encoder(conv, 2 * spec.latent_dim, spec.image_shape)
    decoder = conv_decoder(conv, spec.latent_dim, spec.image_shape)
    return VariationalAutoencoder(encoder, decoder, spec, beta=params.beta, name="conv_vae")
