"""``conv``: strided Conv2D encoder and Conv2DTranspose decoder for images of any HxWxC.

Encoder: one ``Conv2D(f, stride 2, same)`` per entry of ``filters`` (each halves the map, rounding
up) -> flatten -> Dense(latent_dim). Decoder: Dense -> reshape to the encoder's last map -> one
``Conv2DTranspose(f, stride 2)`` per filter in reverse -> center crop to HxW (odd sizes such as
12x10 or 7x7 round up on the way down, so the way up overshoots and is cropped, never padded) ->
``Conv2D(C, sigmoid)``. :func:`conv_encoder` and :func:`conv_decoder` are shared with
``conv-vae`` and ``denoising``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from models.registry import ModelSpec, register_autoencoder
from transforms.errors import UserError

if TYPE_CHECKING:
    import keras

    from models.base import Autoencoder


@dataclasses.dataclass(frozen=True)
class ConvParams:
    """Attributes:
    filters: channels of the strided convolutions, outermost first (each halves the map).
    kernel_size: of every convolution.
    """

    filters: tuple[int, ...] = (32, 64)
    kernel_size: int = 3

    def __post_init__(self):
        if not self.filters or any(f <= 0 for f in self.filters):
            raise UserError(f"filters must be one or more positive channel counts, got {self.filters}")
        if self.kernel_size <= 0:
            raise UserError(f"kernel_size must be positive, got {self.kernel_size}")


def _smallest_map(params: ConvParams, input_shape: tuple) -> tuple[int, int]:
    """HxW after the strided convolutions ('same' padding rounds each halving up)."""
    scale = 2 ** len(params.filters)
    return math.ceil(input_shape[0] / scale), math.ceil(input_shape[1] / scale)


def conv_encoder(params: ConvParams, outputs: int, input_shape: tuple, name: str = "encoder") -> keras.Model:
    """Images -> ``(batch, outputs)`` (a VAE asks for twice the latent size: mean and log-variance)."""
    import keras

    layers = [keras.Input(shape=input_shape)]
    for f in params.filters:
        layers.append(keras.layers.Conv2D(f, params.kernel_size, strides=2, padding="same", activation="leaky_relu"))
    layers += [keras.layers.Flatten(), keras.layers.Dense(outputs)]
    return keras.Sequential(layers, name=name)


def conv_decoder(params: ConvParams, latent_dim: int, input_shape: tuple) -> keras.Model:
    """Codes ``(batch, latent_dim)`` -> images ``input_shape`` in [0, 1]."""
    import keras

    height, width = _smallest_map(params, input_shape)
    scale = 2 ** len(params.filters)
    extra_h, extra_w = height * scale - input_shape[0], width * scale - input_shape[1]
    layers = [
        keras.Input(shape=(latent_dim,)),
        keras.layers.Dense(height * width * params.filters[-1], activation="leaky_relu"),
        keras.layers.Reshape((height, width, params.filters[-1])),
    ]
    for f in reversed(params.filters):
        layers.append(
            keras.layers.Conv2DTranspose(f, params.kernel_size, strides=2, padding="same", activation="leaky_relu")
        )
    layers += [
        keras.layers.Cropping2D(((extra_h // 2, extra_h - extra_h // 2), (extra_w // 2, extra_w - extra_w // 2))),
        keras.layers.Conv2D(input_shape[-1], params.kernel_size, padding="same", activation="sigmoid"),
    ]
    return keras.Sequential(layers, name="decoder")


@register_autoencoder("conv", ConvParams, loss="bce", learning_rate=2e-3)
def build_conv(params: ConvParams, spec: ModelSpec) -> Autoencoder:
    """Convolutional autoencoder for any HxWxC: strided Conv2D down, Conv2DTranspose up, crop."""
    from models.base import Autoencoder

    encoder = conv_encoder(params, spec.latent_dim, spec.image_shape)
    decoder = conv_decoder(params, spec.latent_dim, spec.image_shape)
    return Autoencoder(encoder, decoder, spec, name="conv_autoencoder")
