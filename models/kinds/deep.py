"""``deep``: stacked dense encoder and decoder with configurable widths (default 784-1000-500-250-k).

Encoder: flatten -> Dense(w, activation) for each width -> Dense(latent_dim) (linear code).
Decoder: the mirror image -> Dense(H*W*C, sigmoid) -> reshape. With ``tied``, every decoder layer
uses the transposed kernel of its encoder twin (and its own bias), halving the weights.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from models.registry import ModelSpec, register_autoencoder
from transforms.errors import UserError

if TYPE_CHECKING:
    from models.base import Autoencoder

ACTIVATIONS = ("relu", "elu", "selu", "gelu", "tanh", "leaky_relu")


@dataclasses.dataclass(frozen=True)
class DeepParams:
    """Attributes:
    widths: hidden layer widths of the encoder, outermost first (the decoder mirrors them).
    activation: of the hidden layers, one of ``ACTIVATIONS``.
    tied: decoder layers reuse the encoder's transposed kernels.
    """

    widths: tuple[int, ...] = (1000, 500, 250)
    activation: str = "relu"
    tied: bool = False

    def __post_init__(self):
        if any(w <= 0 for w in self.widths):
            raise UserError(f"widths must be positive, got {self.widths}")
        if self.activation not in ACTIVATIONS:
            raise UserError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")


@register_autoencoder("deep", DeepParams, loss="mse", learning_rate=1e-3)
def build_deep(params: DeepParams, spec: ModelSpec) -> Autoencoder:
    """Stacked dense autoencoder: configurable widths, optional tied weights."""
    import keras

    from models.base import Autoencoder, dense_decoder
    from models.layers import DenseTranspose

    dense = [keras.layers.Dense(w, activation=params.activation) for w in params.widths]
    dense.append(keras.layers.Dense(spec.latent_dim))
    encoder = keras.Sequential([keras.Input(shape=spec.image_shape), keras.layers.Flatten(), *dense], name="encoder")
    if params.tied:
        # Decoder layer i maps to the input width of encoder layer i, walking the encoder backwards.
        activations = ["sigmoid", *[params.activation] * len(params.widths)]
        layers = [DenseTranspose(d, a) for d, a in zip(reversed(dense), reversed(activations), strict=True)]
        decoder = keras.Sequential(
            [keras.Input(shape=(spec.latent_dim,)), *layers, keras.layers.Reshape(spec.image_shape)], name="decoder"
        )
    else:
        decoder = dense_decoder(spec.latent_dim, spec.image_shape, tuple(reversed(params.widths)), params.activation)
    return Autoencoder(encoder, decoder, spec, name="deep_autoencoder")
