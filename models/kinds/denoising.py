"""``denoising``: an encoder/decoder of another kind (``conv`` by default), trained on corrupted inputs.

The architecture is the ``base`` kind's with its default parameters but ``BASE_PARAMS``; what makes
it a denoising autoencoder is the noise, which this kind defaults to ``gaussian:0.5`` (``--noise``
picks another: ``salt-pepper:0.2``, ``mask:0.3``). Corruption happens in the training input pipeline. A noise gets
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
# The base's parameters where denoising departs from the base kind's defaults: a residual block per
# stage lifts sigma 0.5 digits from +9.8 to +10.2 dB at 20 epochs (benchmarks/bench_restoration.py).
BASE_PARAMS = {"conv": {"blocks": 1}}


@dataclasses.dataclass(frozen=True)
class DenoisingParams:
    """Attributes: base: the architecture, one of ``BASES`` (with that kind's default parameters but
    ``BASE_PARAMS``)."""

    base: str = "conv"

    def __post_init__(self):
        if self.base not in BASES:
            raise UserError(f"base must be one of {', '.join(BASES)}, got {self.base!r}")


@register_autoencoder("denoising", DenoisingParams, loss="bce", learning_rate=2e-3, batch_size=32, noise="gaussian:0.5")
def build_denoising(params: DenoisingParams, spec: ModelSpec) -> Autoencoder:
    """Denoising autoencoder: a conv (or dense/deep) model trained on corrupted inputs."""
    return registry.build_with_defaults(params.base, spec, **BASE_PARAMS.get(params.base, {}))
