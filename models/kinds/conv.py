"""``conv``: a convolutional autoencoder whose depth and width follow the image size, for any HxWxC.

Encoder: stride-2 ``Conv2D`` stages (each halves the map, rounding up), as many as it takes to bring
the smaller side to at most ``SMALLEST_MAP`` pixels (28x28 -> 7x7 in two stages, 32x32 -> 4x4 in
three, 128x128 -> 4x4 in five); the first has ``filters`` channels and each next one twice as many,
up to ``max_filters``; each stage is followed by ``blocks`` residual blocks. The code is then made
by the bottleneck: ``spatial`` (a 1x1 convolution to as few channels as hold the code, flattened,
then a Dense layer only when the map does not hold it exactly: 32x32 at 64-D is 4x4x4, each code
value describing a region) or ``dense`` (flatten -> Dense); ``auto`` picks spatial when the code
has at least one learned value per position of the map, else dense (28x28 digits at 32-D).

The decoder starts from a ``base`` image and adds its output logits to the base's logit, so the
network codes only what the base misses:

* ``mean-colour``: the first C code values are the image's mean per channel, passed through as
  they are; on photographs unlike the training ones this is what keeps the colours right
  (held-out photo patches: 2.2x PCA-64 after one epoch with it, 12x without);
* ``pca``: the PCA of the training images (``layers.PrincipalSubspace``, fitted by training before
  the first step: :func:`models.base.Autoencoder.fit_base`): the code is the image's PCA code plus
  the encoder's output, the base is the PCA reconstruction of the code, and the last layers of the
  encoder and the decoder start at zero, so the untrained model reconstructs exactly as PCA does
  (clipped to [0.001, 0.999]) and training starts from PCA's loss;
* ``none``; ``auto`` (the default) is ``pca`` for colour images and ``mean-colour`` for grey ones.

Decoder, the mirror image: the bottleneck back to the encoder's last map -> per stage, the residual
blocks then a 2x ``Conv2DTranspose`` (or nearest-neighbour upsampling then ``Conv2D`` with
``upsample=nearest``) -> center crop to HxW (odd sizes round up on the way down, so the way up
overshoots and is cropped, never padded) -> with the ``pca`` base, ``refine`` full-resolution
``Conv2D(filters)`` over that map and the PCA image side by side (the base's detail, which the code's
small map has lost) -> ``Conv2D(C)`` -> sigmoid.

:func:`conv_encoder` and :func:`conv_decoder` are shared with ``conv-vae`` and ``denoising``.
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

SMALLEST_MAP = 7  # the encoder halves the map until its smaller side is at most this many pixels
UPSAMPLING = ("transpose", "nearest")
BOTTLENECKS = ("auto", "spatial", "dense")
BASES = ("auto", "pca", "mean-colour", "none")


@dataclasses.dataclass(frozen=True)
class ConvParams:
    """Attributes:
    filters: channels of the first (outermost) stage; each next stage has twice as many.
    max_filters: the cap on the channels of a stage.
    kernel_size: of every convolution.
    blocks: residual blocks (two convolutions and a skip) after each stage, in the encoder and
      the decoder.
    upsample: ``transpose`` (``Conv2DTranspose``) or ``nearest`` (upsample then convolve).
    bottleneck: ``spatial`` (the code is a small map of the last stage), ``dense``, or ``auto``:
      spatial when the code has at least one learned value per position of the last map (32x32 at
      64-D: 4x4 positions), else dense (28x28 at 32-D: 7x7 positions).
    base: the image the decoder adds its output to: ``pca`` (the training images' PCA reconstruction
      of the code), ``mean-colour`` (the first C code values are the image's mean colour), ``none``,
      or ``auto``: ``pca`` for colour images, ``mean-colour`` for grey ones (the one place where the
      default follows the channels).
    refine: with the ``pca`` base, convolutions (``filters`` channels) at full resolution over the
      decoder's last map and the base image, before the output convolution. Off by default: on
      held-out photographs 2 gained 3% on one fold of the colour benchmark and lost 21% on another
      (README, "Quality against PCA").
    """

    filters: int = 32
    max_filters: int = 256
    kernel_size: int = 3
    blocks: int = 0
    upsample: str = "transpose"
    bottleneck: str = "auto"
    base: str = "auto"
    refine: int = 0

    def __post_init__(self):
        if self.filters <= 0 or self.max_filters < self.filters:
            raise UserError(
                f"filters must be positive and at most max_filters, got filters={self.filters}, "
                f"max_filters={self.max_filters}"
            )
        if self.kernel_size <= 0:
            raise UserError(f"kernel_size must be positive, got {self.kernel_size}")
        if self.refine < 0:
            raise UserError(f"refine must be >= 0, got {self.refine}")
        if self.blocks < 0:
            raise UserError(f"blocks must be >= 0, got {self.blocks}")
        if self.upsample not in UPSAMPLING:
            raise UserError(f"upsample must be one of {', '.join(UPSAMPLING)}, got {self.upsample!r}")
        if self.bottleneck not in BOTTLENECKS:
            raise UserError(f"bottleneck must be one of {', '.join(BOTTLENECKS)}, got {self.bottleneck!r}")
        if self.base not in BASES:
            raise UserError(f"base must be one of {', '.join(BASES)}, got {self.base!r}")


def image_base(params: ConvParams, input_shape: tuple) -> str:
    """``params.base`` with ``auto`` decided by the channels: ``pca`` for colour, ``mean-colour`` for grey."""
    if params.base == "auto":
        return "pca" if input_shape[-1] > 1 else "mean-colour"
    return params.base


def stage_filters(params: ConvParams, input_shape: tuple) -> tuple[int, ...]:
    """The channels of each stride-2 stage, outermost first: one stage per halving of the smaller
    side down to at most ``SMALLEST_MAP`` pixels (at least one stage)."""
    side, stages = min(input_shape[0], input_shape[1]), 1
    side = math.ceil(side / 2)
    while side > SMALLEST_MAP:
        side, stages = math.ceil(side / 2), stages + 1
    return tuple(min(params.filters * 2**i, params.max_filters) for i in range(stages))


def _smallest_map(stages: int, input_shape: tuple) -> tuple[int, int]:
    """HxW after ``stages`` strided convolutions ('same' padding rounds each halving up)."""
    height, width = input_shape[0], input_shape[1]
    for _ in range(stages):
        height, width = math.ceil(height / 2), math.ceil(width / 2)
    return height, width


def _residual_block(x, filters: int, kernel_size: int):
    """``x + conv(leaky_relu(conv(x)))``: two same-size convolutions around an identity skip."""
    import keras

    y = keras.layers.Conv2D(filters, kernel_size, padding="same", activation="leaky_relu")(x)
    y = keras.layers.Conv2D(filters, kernel_size, padding="same")(y)
    return keras.layers.LeakyReLU()(keras.layers.Add()([x, y]))


def _spatial(params: ConvParams, learned: int, smallest_map: tuple) -> bool:
    """Whether the code is a map (``bottleneck`` spatial, or auto with ``learned`` >= the map's positions)."""
    if params.bottleneck == "auto":
        return learned >= smallest_map[0] * smallest_map[1]
    return params.bottleneck == "spatial"


def conv_encoder(params: ConvParams, outputs: int, input_shape: tuple, name: str = "encoder") -> keras.Model:
    """Images -> ``(batch, outputs)`` (a VAE asks for twice the latent size: mean and log-variance)."""
    import keras

    from models.layers import PrincipalSubspace

    base = image_base(params, input_shape)
    last = "zeros" if base == "pca" else "glorot_uniform"  # the PCA code unchanged at the start
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for f in stage_filters(params, input_shape):
        x = keras.layers.Conv2D(f, params.kernel_size, strides=2, padding="same", activation="leaky_relu")(x)
        for _ in range(params.blocks):
            x = _residual_block(x, f, params.kernel_size)
    channels = input_shape[-1] if base == "mean-colour" else 0
    outputs -= channels
    if _spatial(params, outputs, x.shape[1:3]):
        h, w = x.shape[1], x.shape[2]
        c = math.ceil(outputs / (h * w))
        exact = h * w * c == outputs
        x = keras.layers.Flatten()(keras.layers.Conv2D(c, 1, kernel_initializer=last if exact else "glorot_uniform")(x))
        if not exact:
            x = keras.layers.Dense(outputs, kernel_initializer=last)(x)
    else:
        x = keras.layers.Dense(outputs, kernel_initializer=last)(keras.layers.Flatten()(x))
    if channels:
        x = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(inputs), x])
    if base == "pca":
        x = keras.layers.Add()([PrincipalSubspace(input_shape, outputs, "project", name="pca_project")(inputs), x])
    return keras.Model(inputs, x, name=name)


def conv_decoder(params: ConvParams, latent_dim: int, input_shape: tuple) -> keras.Model:
    """Codes ``(batch, latent_dim)`` -> images ``input_shape`` in [0, 1]."""
    import keras

    filters = stage_filters(params, input_shape)
    height, width = _smallest_map(len(filters), input_shape)
    scale = 2 ** len(filters)
    extra_h, extra_w = height * scale - input_shape[0], width * scale - input_shape[1]
    from models.layers import PrincipalSubspace

    base = image_base(params, input_shape)
    codes = keras.Input(shape=(latent_dim,))
    channels = input_shape[-1] if base == "mean-colour" else 0
    x = codes[:, channels:] if channels else codes
    latent_dim -= channels
    if _spatial(params, latent_dim, (height, width)):
        c = math.ceil(latent_dim / (height * width))
        x = x if height * width * c == latent_dim else keras.layers.Dense(height * width * c)(x)
        x = keras.layers.Reshape((height, width, c))(x)
        x = keras.layers.Conv2D(filters[-1], params.kernel_size, padding="same", activation="leaky_relu")(x)
    else:
        x = keras.layers.Dense(height * width * filters[-1], activation="leaky_relu")(x)
        x = keras.layers.Reshape((height, width, filters[-1]))(x)
    for f in reversed(filters):
        for _ in range(params.blocks):
            x = _residual_block(x, x.shape[-1], params.kernel_size)
        if params.upsample == "transpose":
            x = keras.layers.Conv2DTranspose(f, params.kernel_size, strides=2, padding="same", activation="leaky_relu")(
                x
            )
        else:
            x = keras.layers.UpSampling2D(2)(x)
            x = keras.layers.Conv2D(f, params.kernel_size, padding="same", activation="leaky_relu")(x)
    x = keras.layers.Cropping2D(((extra_h // 2, extra_h - extra_h // 2), (extra_w // 2, extra_w - extra_w // 2)))(x)
    if base == "pca":
        image = PrincipalSubspace(input_shape, latent_dim, "reconstruct", name="pca_reconstruct")(codes)
        if params.refine:  # the base image itself, at full resolution: what its sharp detail needs
            x = keras.layers.Concatenate()([x, image])
            for _ in range(params.refine):
                x = keras.layers.Conv2D(filters[0], params.kernel_size, padding="same", activation="leaky_relu")(x)
    elif base == "mean-colour":
        image = codes[:, None, None, :channels]
    last = "zeros" if base == "pca" else "glorot_uniform"  # the output is the base at the start
    x = keras.layers.Conv2D(input_shape[-1], params.kernel_size, padding="same", kernel_initializer=last)(x)
    if base != "none":
        from keras import ops

        image = ops.clip(image, 1e-3, 1 - 1e-3)
        x = x + ops.log(image / (1 - image))
    return keras.Model(codes, keras.layers.Activation("sigmoid")(x), name="decoder")


@register_autoencoder("conv", ConvParams, loss="bce", learning_rate=2e-3, batch_size=32)
def build_conv(params: ConvParams, spec: ModelSpec) -> Autoencoder:
    """Convolutional autoencoder for any HxWxC: stride-2 stages down to ~4-7 px, then up, cropped."""
    from models.base import Autoencoder

    if image_base(params, spec.image_shape) == "mean-colour" and spec.latent_dim <= spec.image_shape[-1]:
        raise UserError(
            f"base mean-colour takes {spec.image_shape[-1]} of the {spec.latent_dim} code values and leaves none to "
            "learn: raise --latent-dim or pass --param base=none"
        )
    encoder = conv_encoder(params, spec.latent_dim, spec.image_shape)
    decoder = conv_decoder(params, spec.latent_dim, spec.image_shape)
    return Autoencoder(encoder, decoder, spec, name="conv_autoencoder")
