"""``denoising``: an encoder/decoder of another kind (``conv`` by default), trained on corrupted inputs.

The architecture is the ``base`` kind's with its default parameters; what makes it a denoising
autoencoder is the noise, which this kind defaults to ``gaussian:0.5`` (``--noise`` picks another:
``salt-pepper:0.2``, ``mask:0.3``). Corruption happens in the training input pipeline. A noise gets
no restorer (``models.restoration`` says why): the decoder's image of the noisy input's code is the
denoised image, which the exported model returns as ``restored`` and ``denoised`` (``models.export``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from models import registry
from models.registry import ModelSpec, register_autoencoder
from transforms.errors import UserError

if TYPE_CHECKING:
    from models.base import Autoencoder

BASES = ("dense", "deep", "conv")


@dataclasses.dataclass(frozen=True)
class DenoisingParams:
    """Attributes: base: the architecture, one of ``BASES`` (with that kind's default parameters)."""

    base: str = "conv"

    def __post_init__(self):
        if self.base not in BASES:
            raise UserError(f"base must be one of {', '.join(BASES)}, got {self.base!r}")


@register_autoencoder("denoising", DenoisingParams, loss="bce", learning_rate=2e-3, batch_size=32, noise="gaussian:0.5")
def build_denoising(params: DenoisingParams, spec: ModelSpec) -> Autoencoder:
    """Denoising autoencoder: a conv (or dense/deep) model trained on corrupted inputs."""
    return registry.build_with_defaults(params.base, spec)
