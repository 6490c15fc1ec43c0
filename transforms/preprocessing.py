"""The tf.Transform ``preprocessing_fn``: the one place where raw images become model tensors.

Input (a batch of raw features, see ``features.py``): ``id`` and ``label`` string ``(batch,)``,
``image`` encoded bytes ``(batch,)``.
Output: ``id``, ``label``, ``label_index`` int64 ``(batch,)`` from the training split's label
vocabulary (-1 when unknown), ``pixels`` float32 ``(batch, H, W, C)`` in [0, 1] and ``inputs``
float32 ``(batch, H, W, C)``: ``pixels`` as is (``unit``) or as per-pixel z-scores from full-pass
mean/variance analyzers (``standardize``).

Because the exported model embeds this graph, serving decodes and scales exactly as training did.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
import tensorflow_transform as tft

from transforms import features
from transforms.image_ops import ImageSpec, decode_images

NORMALIZATIONS = ("unit", "standardize")

# Keeps the z-score finite for pixels that never vary (e.g. MNIST's always-black borders).
_MIN_STDDEV = 1e-3


def raw_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """The raw features' spec (all scalar strings)."""
    return {key: tf.io.FixedLenFeature([], tf.string) for key in features.RAW_FEATURES}


def make_preprocessing_fn(spec: ImageSpec, normalize: str = "unit") -> Callable[[dict], dict]:
    """Returns the ``preprocessing_fn`` for images of ``spec`` with the ``normalize`` policy.

    Raises:
      ValueError: ``normalize`` is not one of ``NORMALIZATIONS``.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")

    def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        pixels = decode_images(inputs[features.IMAGE], spec)
        if normalize == "standardize":
            mean = tft.mean(pixels, reduce_instance_dims=False)
            stddev = tf.sqrt(tft.var(pixels, reduce_instance_dims=False))
            model_inputs = (pixels - mean) / tf.maximum(stddev, _MIN_STDDEV)
        else:
            model_inputs = tf.identity(pixels)
        label = inputs[features.LABEL]
        known = tf.not_equal(label, features.UNKNOWN_LABEL)
        vocabulary = tft.vocabulary(tf.boolean_mask(label, known), vocab_filename=features.LABEL_VOCABULARY)
        label_index = tft.apply_vocabulary(label, vocabulary, default_value=features.UNKNOWN_LABEL_INDEX)
        return {
            features.ID: tf.identity(inputs[features.ID]),
            features.LABEL: tf.identity(label),
            features.LABEL_INDEX: label_index,
            features.PIXELS: pixels,
            features.INPUTS: model_inputs,
        }

    return preprocessing_fn
