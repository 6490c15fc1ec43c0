"""``conv-vae``: the variational autoencoder (``base.VariationalAutoencoder``) on the ``conv`` encoder and decoder.

The encoder is ``conv``'s with ``2 * latent_dim`` outputs (mean and log-variance); the decoder is
``conv``'s, so any HxWxC works, odd sizes included, and the depth follows the image size. The mean
colour pass-through and the PCA base of ``conv`` are off (``base=none``): a sampled code would add noise to them.
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
class ConvVaeParams(ConvParams):
    """Attributes:
    filters, max_filters, kernel_size, blocks, upsample: as for ``conv`` (:class:`ConvParams`).
    bottleneck: as for ``conv``, ``dense`` by default: the code's mean and log-variance are then
      read from the whole map rather than from two halves of it.
    base: always ``none``: the VAE samples its code, and a mean colour or a PCA code is not to be sampled.
    refine: has no effect: the full-resolution layers of ``conv`` refine a PCA base, which this kind has not.
    beta: weight of the KL term (1 is the plain ELBO).
    """

    bottleneck: str = "dense"
    base: str = "none"
    beta: float = 1.0

    def __post_init__(self):
        super().__post_init__()  # the same checks as conv's
        if self.base != "none":
            raise UserError(f"base {self.base} is not available for conv-vae: its code is sampled; use base=none")
        if self.beta < 0:
            raise UserError(f"beta must be >= 0, got {self.beta}")


@register_autoencoder("conv-vae", ConvVaeParams, loss="bce", learning_rate=2e-3)
def build_conv_vae(params: ConvVaeParams, spec: ModelSpec) -> Autoencoder:
    """Convolutional variational autoencoder: conv encoder/decoder, Gaussian code, beta-weighted KL."""
    from models.base import VariationalAutoencoder

    encoder = conv_encoder(params, 2 * spec.latent_dim, spec.image_shape)
    decoder = conv_decoder(params, spec.latent_dim, spec.image_shape)
    return VariationalAutoencoder(encoder, decoder, spec, beta=params.beta, name="conv_vae")
