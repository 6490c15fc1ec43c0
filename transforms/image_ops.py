"""TensorFlow image ops used inside the tf.Transform graph (and so inside the exported model).

Element contract: ``decode_images`` takes a rank-1 batch of encoded image strings (PNG, 8- or
16-bit, any colour type; JPEG; BMP; GIF, first frame) and returns float32
``(batch, height, width, channels)`` pixels in [0, 1]. The target shape, the resize policy and the
background colour come from an :class:`ImageSpec`; nothing here hard-codes a shape.

Colour policy: every image is decoded with its own channels (grey, grey+alpha, RGB, RGBA; palettes
expand to RGB or RGBA), alpha is composited on ``background``, then the result is brought to the
target channels: grey is repeated to RGB, RGB becomes grey with ITU-R BT.601 luma weights. A grey
image with a 1-channel target is never touched, so grey data stays exact.
"""

from __future__ import annotations

import tensorflow as tf

from transforms.image_spec import ImageSpec
from transforms.noise import NoiseSpec

# ITU-R BT.601 luma, the weights of tf.image.rgb_to_grayscale.
_LUMA = (0.2989, 0.5870, 0.1140)


def _background(spec: ImageSpec) -> tf.Tensor:
    """The background in the target channels, float in [0, 1]: shape ``(channels,)``."""
    rgb = tf.constant(spec.background, tf.float32) / 255.0
    return rgb if spec.channels == 3 else tf.reduce_sum(rgb * _LUMA, keepdims=True)


def _to_channels(image: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """float HxWxK (K = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) -> HxWxC of the spec, alpha composited."""
    background = _background(spec)

    def colour(pixels):  # grey or RGB, no alpha -> target channels
        if pixels.shape[-1] == spec.channels:
            return pixels
        return tf.image.rgb_to_grayscale(pixels) if spec.channels == 1 else tf.tile(pixels, [1, 1, 3])

    def composite(pixels):  # grey+alpha or RGBA -> target channels on the background
        alpha = pixels[..., -1:]
        return colour(pixels[..., :-1]) * alpha + background * (1.0 - alpha)

    def branch(channels):
        fn = colour if channels in (1, 3) else composite
        return lambda: fn(tf.ensure_shape(image, [None, None, channels]))

    # Nested conds, not tf.switch_case: tf.Transform cannot fingerprint switch_case's branch list.
    found = tf.shape(image)[-1]
    return tf.cond(
        tf.equal(found, 1),
        branch(1),
        lambda: tf.cond(tf.equal(found, 2), branch(2), lambda: tf.cond(tf.equal(found, 3), branch(3), branch(4))),
    )


def _fit(image: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Brings one float HxWxC image to the spec's size with its resize policy."""
    size = (spec.height, spec.width)
    if spec.resize == "pad":
        background = _background(spec)  # resize_with_pad pads with 0: shift so 0 is the background
        return tf.image.resize_with_pad(image - background, *size) + background
    if spec.resize == "crop":
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.reduce_max(tf.constant(size, tf.float32) / shape)
        scaled = tf.cast(tf.math.ceil(shape * scale), tf.int32)
        return tf.image.resize_with_crop_or_pad(tf.image.resize(image, scaled), *size)
    return tf.image.resize(image, size)


def decode_image(encoded: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Decodes one encoded image to float32 pixels of the spec's shape, in [0, 1]."""
    image = tf.io.decode_image(encoded, channels=0, dtype=tf.float32, expand_animations=False)
    image = _to_channels(image, spec)
    same_size = tf.reduce_all(tf.equal(tf.shape(image)[:2], [spec.height, spec.width]))
    image = tf.cond(same_size, lambda: image, lambda: tf.clip_by_value(_fit(image, spec), 0.0, 1.0))
    return tf.ensure_shape(image, spec.shape)


def decode_images(encoded: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Decodes a batch of encoded images: ``(batch,)`` string -> ``(batch, H, W, C)`` float32."""
    return tf.map_fn(
        lambda e: decode_image(e, spec),
        tf.reshape(encoded, [-1]),
        fn_output_signature=tf.TensorSpec(spec.shape, tf.float32),
    )


def corrupt(images: tf.Tensor, spec: NoiseSpec, seed: int | None = None) -> tf.Tensor:
    """Applies the corruption ``spec`` (see ``noise``) to a batch of [0, 1] images ``(batch, H, W, C)``;
    returns the same shape, clipped to [0, 1]."""
    shape = tf.shape(images)
    if spec.kind == "gaussian":
        noisy = images + tf.random.normal(shape, stddev=spec.amount, seed=seed, dtype=images.dtype)
    elif spec.kind == "mask":
        keep = tf.cast(tf.random.uniform(shape, seed=seed) >= spec.amount, images.dtype)
        noisy = images * keep
    else:
        draw = tf.random.uniform(shape, seed=seed)
        salt = tf.cast(draw < spec.amount / 2, images.dtype)
        pepper = draw < spec.amount
        noisy = tf.where(pepper, salt, images)
    return tf.clip_by_value(noisy, 0.0, 1.0)
