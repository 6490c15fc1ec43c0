"""The restoring head of a model trained with a corruption: it starts at the classical baseline and
learns a correction, around the code.

A bottleneck autoencoder rebuilds its whole output from the code, so it cannot even give back what
the classical baseline keeps exactly (the luma, the low frequencies, the known pixels). Every kind
trained with ``--corrupt`` grey, downscale or blocks therefore gets a :class:`Restorer`
(``Autoencoder.restorer``). Noise is the exception: a denoising autoencoder's own image is already
far better than its baseline, the noisy input (a sigma 0.5 image scores about 9 dB), and a restorer
there measured worse (``benchmarks/bench_restoration.py``: +7.2 dB from the noisy input, +8.7 dB
from the decoder's image, against +9.8 dB without), so a model trained with noise restores with
its decoder alone.

    restored = clip(base(x) + correction(x, base(x), decoded), 0, 1)

* ``x``: the corrupted image's pixels in [0, 1], read back from the model's inputs (the transform's
  normalization is affine per pixel, ``inputs = offset + gain * pixels``; training sets ``offset``
  and ``gain`` with :meth:`Restorer.set_input_scaling` from ``input_pipeline.input_scaling``);
* ``base``: the classical baseline, computed in the graph: the corrupted image itself for
  ``downscale`` (served images are already brought up bicubic), grey replicated for
  ``grey`` (``x``'s luma in every channel), and for ``blocks`` the holes (pixels black in every
  channel) filled with the mean of the known pixels in a window of ``FILL_BLOCKS`` block sides
  around them (the image's mean where the window holds none);
* ``decoded``: the decoder's image of the code (what ``decode(encode(x))`` gives): the code's global
  view of the image;
* ``correction``: a full-resolution local path, the convolutions of ``LOCAL`` (ReLU; four 3x3 of 32
  channels) on ``x``, ``base`` and ``decoded`` side by side, then a 3x3 convolution whose kernel and
  bias start at zero, so an untrained model restores exactly as the baseline does. For ``downscale``
  the path is ESPCN's (5x5 of 64, 3x3 of 64, 3x3 of 32), sees only ``x``'s detail (``x`` minus its
  3x3 mean) and has no biases: zero wherever the image is flat. For ``grey`` it predicts the two
  chroma channels (YUV, BT.601) and keeps ``x``'s luma; otherwise one value per channel, added.

Element contract: ``Restorer([inputs, decoded])``, both ``(batch, H, W, C)`` (the model's inputs, and
the decoder's output in [0, 1]) -> ``restored`` ``(batch, H, W, C)`` in [0, 1].
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from transforms.corruption import BLOCK_FRACTION, CorruptionSpec

# The local path's hidden convolutions, (kernel size, channels) each, per corruption kind.
LOCAL = {"downscale": ((5, 64), (3, 64), (3, 32))}
LOCAL_DEFAULT = ((3, 32),) * 4
FILL_BLOCKS = 2  # the inpainting fill averages known pixels within this many block sides of a hole
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as transforms.image_ops.grey
# RGB change per unit of U and of V (YUV, BT.601): adding them leaves the luma unchanged.
CHROMA_TO_RGB = ((0.0, -0.39465, 2.03211), (1.13983, -0.58060, 0.0))


class Restorer(keras.layers.Layer):
    """``restored = clip(base(x) + correction)`` for the corruption ``spec`` (see the module docstring).

    Args:
      spec: the corruption the model is trained to undo.
      image_shape: ``(H, W, C)`` of the model's images.
    """

    def __init__(self, spec: CorruptionSpec, image_shape: tuple[int, int, int], **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.image_shape = tuple(image_shape)
        outputs = 2 if spec.kind == "grey" else image_shape[-1]
        # Upscaling corrects detail only: no biases, so where the image is flat the correction is 0.
        bias = spec.kind != "downscale"
        self.hidden = [
            keras.layers.Conv2D(filters, kernel, padding="same", activation="relu", use_bias=bias, name=f"local_{i}")
            for i, (kernel, filters) in enumerate(LOCAL.get(spec.kind, LOCAL_DEFAULT))
        ]
        self.correction = keras.layers.Conv2D(
            outputs, 3, padding="same", use_bias=bias, kernel_initializer="zeros", name="correction"
        )
        self.build(None)  # its shapes are known: built now, so every way of building the model builds it

    def build(self, input_shape):
        # Not trained: the transform's affine normalization, set from the data by training.
        self.offset = self.add_weight(shape=self.image_shape, initializer="zeros", trainable=False, name="offset")
        self.gain = self.add_weight(shape=self.image_shape, initializer="ones", trainable=False, name="gain")
        channels = self.image_shape[-1]  # the features of call: x, base, decoded (and the holes), or the detail
        features = {"downscale": channels, "blocks": 3 * channels + 1}.get(self.spec.kind, 3 * channels)
        shape = (None, *self.image_shape[:2], features)
        for layer in self.hidden:
            layer.build(shape)
            shape = (*shape[:-1], layer.filters)
        self.correction.build(shape)

    def set_input_scaling(self, offset, gain) -> None:
        """Sets the transform's normalization ``inputs = offset + gain * pixels`` (each ``(H, W, C)``)."""
        self.offset.assign(ops.convert_to_tensor(offset, "float32"))
        self.gain.assign(ops.convert_to_tensor(gain, "float32"))

    def call(self, inputs, training=False):
        model_inputs, decoded = inputs
        pixels = ops.clip((ops.cast(model_inputs, "float32") - self.offset) / self.gain, 0.0, 1.0)
        decoded = ops.cast(decoded, "float32")
        holes = ops.cast(ops.all(pixels < 0.5 / 255, axis=-1, keepdims=True), "float32")
        base = baseline(self.spec, pixels, holes)
        if self.spec.kind == "downscale":  # the detail: 0 wherever the image is flat
            features = [pixels - ops.average_pool(pixels, 3, strides=1, padding="same")]
        else:
            features = [pixels, base, decoded] + ([holes] if self.spec.kind == "blocks" else [])
        x = ops.concatenate([ops.cast(f, self.compute_dtype) for f in features], axis=-1)
        for layer in self.hidden:
            x = layer(x)
        correction = ops.cast(self.correction(x), "float32")
        if self.spec.kind == "grey":
            # Chroma, scaled by how much colour the luma allows: none at black and at white.
            luma = base[..., :1]
            chroma = ops.matmul(correction, ops.convert_to_tensor(np.array(CHROMA_TO_RGB, np.float32)))
            correction = chroma * 4.0 * luma * (1.0 - luma)
        if self.spec.kind == "blocks":  # the known pixels are kept
            correction = correction * holes
        return ops.clip(base + correction, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape[1]


def baseline(spec: CorruptionSpec, pixels, holes):
    """The classical baseline of ``spec`` in the graph, from the corrupted ``pixels`` ``(batch, H, W, C)``
    in [0, 1] and their ``holes`` ``(batch, H, W, 1)`` (1 where every channel is black)."""
    if spec.kind == "grey":
        luma = ops.sum(pixels * ops.convert_to_tensor(np.array(LUMA, np.float32)), axis=-1, keepdims=True)
        return ops.repeat(luma, pixels.shape[-1], axis=-1)
    if spec.kind == "blocks":
        return ops.where(holes > 0, fill(pixels, holes), pixels)
    return pixels


def fill(pixels, holes):
    """Each pixel's mean of the known pixels within ``FILL_BLOCKS`` block sides of it, or the
    image's mean of its known pixels where that window holds none."""
    height, width = pixels.shape[1], pixels.shape[2]
    side = max(1, round(min(height, width) * BLOCK_FRACTION))
    window = 2 * FILL_BLOCKS * side + 1
    known = 1.0 - holes

    def local_sum(x):
        return ops.average_pool(x, window, strides=1, padding="same")

    near, count = local_sum(pixels * known), local_sum(known)
    total = ops.sum(known, axis=(1, 2), keepdims=True)
    mean = ops.sum(pixels * known, axis=(1, 2), keepdims=True) / ops.maximum(total, 1.0)
    return ops.where(count > 1e-6, near / ops.maximum(count, 1e-6), mean)
