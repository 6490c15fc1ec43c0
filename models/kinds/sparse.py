"""``sparse``: one-layer code with a sparsity penalty, L1 on the activations or a KL target.

Encoder: flatten -> Dense(latent_dim) with ReLU (``l1``: exact zeros) or sigmoid (``kl``: mean
activations in (0, 1)). Decoder: Dense(H*W*C, sigmoid) -> reshape. The penalty is the model's
per-example ``penalty`` (not a Keras activity regularizer), so the training step scales it for the
global batch like the reconstruction loss:

* ``l1``: ``weight * sum_j |h_j|`` for each example;
* ``kl``: ``weight * sum_j KL(target || mean_batch(h_j))``, the same for every example of a batch.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

from models.registry import ModelSpec, register_autoencoder
from transforms.errors import UserError

if TYPE_CHECKING:
    from models.base import Autoencoder

PENALTIES = ("l1", "kl")


@dataclasses.dataclass(frozen=True)
class SparseParams:
    """Attributes:
    penalty: ``l1`` (activity L1) or ``kl`` (KL divergence to a target mean activation).
    weight: multiplier of the penalty.
    target: the target mean activation of each code unit (``kl`` only), in (0, 1).
    """

    penalty: str = "l1"
    weight: float = 1e-4
    target: float = 0.05

    def __post_init__(self):
        if self.penalty not in PENALTIES:
            raise UserError(f"penalty must be one of {', '.join(PENALTIES)}, got {self.penalty!r}")
        if self.weight < 0:
            raise UserError(f"weight must be >= 0, got {self.weight}")
        if not 0 < self.target < 1:
            raise UserError(f"target must be in (0, 1), got {self.target}")


def sparsity_penalty(params: SparseParams, codes):
    """Per-example penalty ``(batch,)`` on codes ``(batch, latent_dim)`` (see the module docstring)."""
    from keras import ops

    if params.penalty == "l1":
        return params.weight * ops.sum(ops.abs(codes), axis=-1)
    penalty = params.weight * kl_to_target(params.target, ops.mean(codes, axis=0))
    return ops.broadcast_to(penalty, ops.shape(codes)[:1])


def kl_to_target(target: float, mean_activation):
    """``sum_j KL(Bernoulli(target) || Bernoulli(mean_activation_j))``."""
    from keras import ops

    rho_hat = ops.clip(mean_activation, 1e-7, 1.0 - 1e-7)
    return ops.sum(
        target * ops.log(target / rho_hat) + (1.0 - target) * ops.log((1.0 - target) / (1.0 - rho_hat)), axis=-1
    )


@register_autoencoder("sparse", SparseParams, loss="mse", learning_rate=3e-3)
def build_sparse(params: SparseParams, spec: ModelSpec) -> Autoencoder:
    """Sparse autoencoder: L1 activity penalty on the code, or a KL sparsity target."""
    import keras

    from models.base import Autoencoder, dense_decoder

    encoder = keras.Sequential(
        [
            keras.Input(shape=spec.image_shape),
            keras.layers.Flatten(),
            # Pixels are non-negative, so at a zero-bias start a unit is off for most images at once and
            # a ReLU code can die whole; starting every unit on lets the penalty prune what is not needed.
            keras.layers.Dense(
                spec.latent_dim,
                activation="relu" if params.penalty == "l1" else "sigmoid",
                bias_initializer=keras.initializers.Constant(1.0),
            ),
        ],
        name="encoder",
    )
    decoder = dense_decoder(spec.latent_dim, spec.image_shape)
    penalty = functools.partial(sparsity_penalty, params)
    return Autoencoder(encoder, decoder, spec, penalty=penalty, name="sparse_autoencoder")
