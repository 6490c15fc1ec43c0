"""Custom Keras layers that some kinds use (``linear``'s output clip, ``deep``'s tied decoder).

Element contract: both map ``(batch, ..., features)`` tensors like a plain layer would; see each class.
"""

from __future__ import annotations

import keras
from keras import ops


class ClipAtInference(keras.layers.Layer):
    """Identity in training (keeps a model affine); clips to [0, 1] otherwise (the output contract)."""

    def call(self, inputs, training=False):
        return inputs if training else ops.clip(inputs, 0.0, 1.0)


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
