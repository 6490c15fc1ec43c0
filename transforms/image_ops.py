"""TensorFlow image ops used inside the tf.Transform graph (and so inside the exported model).

Element contract: ``decode_images`` takes a rank-1 batch of encoded image strings (PNG, JPEG,
BMP, GIF) and returns float32 ``(batch, height, width, channels)`` pixels in [0, 1]. The target
shape comes from an :class:`ImageSpec`; nothing here hard-codes a shape.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

RESIZE_POLICIES = ("stretch", "pad", "crop")


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """The shape every image is brought to, and how.

    Attributes:
      height, width, channels: the target shape (channels 1 or 3).
      resize: how an image of another size reaches the target: ``stretch`` (plain resize),
        ``pad`` (keep aspect ratio, pad with black) or ``crop`` (keep aspect ratio, center crop).
    """

    height: int
    width: int
    channels: int
    resize: str = "stretch"

    def __post_init__(self):
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_POLICIES)}, got {self.resize!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def size(self) -> int:
        return self.height * self.width * self.channels


def _fit(image: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Brings one float HxWxC image to the spec's size with its resize policy."""
    size = (spec.height, spec.width)
    if spec.resize == "pad":
        return tf.image.resize_with_pad(image, *size)
    if spec.resize == "crop":
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.reduce_max(tf.constant(size, tf.float32) / shape)
        scaled = tf.cast(tf.math.ceil(shape * scale), tf.int32)
        return tf.image.resize_with_crop_or_pad(tf.image.resize(image, scaled), *size)
    return tf.image.resize(image, size)


def decode_image(encoded: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Decodes one encoded image to float32 pixels of the spec's shape, in [0, 1]."""
    image = tf.io.decode_image(encoded, channels=spec.channels, dtype=tf.float32, expand_animations=False)
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
