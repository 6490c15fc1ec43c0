"""The tf.Transform ``preprocessing_fn``: the one place where raw images become model tensors.

Input (a batch of raw features, see ``features.py``): ``id`` and ``label`` string ``(batch,)``,
``image`` encoded bytes ``(batch,)``.
Output: ``id``, ``label``, ``label_index`` int64 ``(batch,)`` from the training split's label
vocabulary (-1 when unknown), ``pixels`` float32 ``(batch, H, W, C)`` in [0, 1] and ``inputs``
float32 ``(batch, H, W, C)``: ``pixels`` as is (``unit``) or as per-pixel z-scores from the
full-pass mean/variance analyzers (``standardize``); plus the ``stats_*`` outputs: the analyzer
values (example count, pixel min/max, per-pixel mean and standard deviation) repeated per example,
which the preprocess job evaluates once for ``stats.json`` and excludes from the TFRecords.

The analyzers run over the data given to ``AnalyzeDataset`` (the train split only). Because the
exported model embeds this graph, serving decodes and scales exactly as training did.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
import tensorflow_transform as tft

from transforms import features
from transforms.errors import UserError
from transforms.image_ops import decode_images
from transforms.image_spec import NORMALIZATIONS, ImageSpec

# Keeps the z-score finite for pixels that never vary (e.g. MNIST's always-black borders).
_MIN_STDDEV = 1e-3


def raw_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """The raw features' spec (all scalar strings)."""
    return {key: tf.io.FixedLenFeature([], tf.string) for key in features.RAW_FEATURES}


def make_preprocessing_fn(spec: ImageSpec, normalize: str = "unit") -> Callable[[dict], dict]:
    """Returns the ``preprocessing_fn`` for images of ``spec`` with the ``normalize`` policy.

    Raises:
      UserError: ``normalize`` is not one of ``NORMALIZATIONS``.
    """
    if normalize not in NORMALIZATIONS:
        raise UserError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")

    def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        pixels = decode_images(inputs[features.IMAGE], spec)
        mean = tft.mean(pixels, reduce_instance_dims=False)
        stddev = tf.sqrt(tft.var(pixels, reduce_instance_dims=False))
        if normalize == "standardize":
            model_inputs = (pixels - mean) / tf.maximum(stddev, _MIN_STDDEV)
        else:
            model_inputs = tf.identity(pixels)
        label = inputs[features.LABEL]
        known = tf.not_equal(label, features.UNKNOWN_LABEL)
        vocabulary = tft.vocabulary(tf.boolean_mask(label, known), vocab_filename=features.LABEL_VOCABULARY)
        label_index = tft.apply_vocabulary(label, vocabulary, default_value=features.UNKNOWN_LABEL_INDEX)
        batch = tf.shape(label)[:1]

        def per_example(value):
            value = tf.convert_to_tensor(value)
            return tf.broadcast_to(value, tf.concat([batch, tf.shape(value)], 0))

        return {
            features.ID: tf.identity(inputs[features.ID]),
            features.LABEL: tf.identity(label),
            features.LABEL_INDEX: label_index,
            features.PIXELS: pixels,
            features.INPUTS: model_inputs,
            features.STATS_EXAMPLES: per_example(tft.size(label)),
            features.STATS_PIXEL_MIN: per_example(tft.min(pixels)),
            features.STATS_PIXEL_MAX: per_example(tft.max(pixels)),
            features.STATS_PIXEL_MEAN: per_example(mean),
            features.STATS_PIXEL_STDDEV: per_example(stddev),
        }

    return preprocessing_fn
