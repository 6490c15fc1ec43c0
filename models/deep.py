"""``deep``: stacked dense encoder and decoder with configurable widths (default 784-1000-500-250-k).

Encoder: flatten -> Dense(w, activation) for each width -> Dense(latent_dim) (linear code).
Decoder: the mirror image -> Dense(H*W*C, sigmoid) -> reshape. With ``tied``, every decoder layer
uses the transposed kernel of its encoder twin (and its own bias), halving the weights.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from models.base import Autoencoder, dense_decoder
from models.registry import register_autoencoder

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
            raise ValueError(f"widths must be positive, got {self.widths}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")


class DenseTranspose(keras.layers.Layer):
    """A dense layer whose kernel is the transpose of another (built) Dense layer's kernel."""

    def __init__(self, tied_to: keras.layers.Dense, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.tied_to = tied_to
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(self.tied_to.kernel.shape[0],), initializer="zeros", name="bias")

    def call(self, inputs):
        return self.activation(ops.matmul(inputs, ops.transpose(self.tied_to.kernel)) + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.tied_to.kernel.shape[0])


@register_autoencoder("deep", DeepParams, loss="mse", learning_rate=1e-3)
def build_deep(params: DeepParams, latent_dim: int, input_shape: tuple, loss: str) -> Autoencoder:
    """Stacked dense autoencoder: configurable widths, optional tied weights."""
    dense = [keras.layers.Dense(w, activation=params.activation) for w in params.widths]
    dense.append(keras.layers.Dense(latent_dim))
    encoder = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Flatten(), *dense], name="encoder")
    if params.tied:
        # Decoder layer i maps to the input width of encoder layer i, walking the encoder backwards.
        activations = ["sigmoid", *[params.activation] * len(params.widths)]
        layers = [DenseTranspose(d, a) for d, a in zip(reversed(dense), reversed(activations), strict=True)]
        decoder = keras.Sequential(
            [keras.Input(shape=(latent_dim,)), *layers, keras.layers.Reshape(input_shape)], name="decoder"
        )
    else:
        decoder = dense_decoder(latent_dim, input_shape, tuple(reversed(params.widths)), params.activation)
    return Autoencoder(encoder, decoder, loss=loss, name="deep_autoencoder")
