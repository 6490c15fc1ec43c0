"""Custom Keras layers that some kinds use (``linear``'s output clip, ``deep``'s tied decoder,
``conv``'s principal subspace).

Element contract: each maps ``(batch, ...)`` tensors like a plain layer would; see each class.
"""

from __future__ import annotations

import math

import keras
import numpy as np
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


class PrincipalSubspace(keras.layers.Layer):
    """The PCA of the training images as a fixed (non-trainable) affine map, one direction per layer.

    ``project``: images ``(batch, H, W, C)`` -> ``(x - mean) @ components``, ``(batch, k)``;
    ``reconstruct``: codes ``(batch, k)`` -> ``mean + z @ components.T`` as images ``(batch, H, W, C)``
    (not clipped). Both are zero until :meth:`set_basis` (training calls it with :func:`principal_basis`
    of its data before the first step); the weights are saved with the model, so a checkpoint or an
    export holds the basis it was trained with.

    Args:
      image_shape: ``(H, W, C)``.
      components: ``k``, the number of principal directions.
      direction: ``project`` or ``reconstruct``.
    """

    DIRECTIONS = ("project", "reconstruct")

    def __init__(self, image_shape, components: int, direction: str, **kwargs):
        super().__init__(**kwargs)
        if direction not in self.DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(self.DIRECTIONS)}, got {direction!r}")
        self.image_shape, self.components, self.direction = tuple(image_shape), components, direction
        self.size = math.prod(self.image_shape)

    def build(self, input_shape):
        self.mean = self.add_weight(shape=(self.size,), initializer="zeros", trainable=False, name="mean")
        self.basis = self.add_weight(
            shape=(self.size, self.components), initializer="zeros", trainable=False, name="basis"
        )

    def set_basis(self, mean: np.ndarray, basis: np.ndarray) -> None:
        """Sets the mean ``(H*W*C,)`` and the orthonormal directions ``(H*W*C, k)``."""
        self.mean.assign(np.asarray(mean, np.float32))
        self.basis.assign(np.asarray(basis, np.float32))

    def call(self, inputs):
        if self.direction == "project":
            return ops.matmul(ops.reshape(inputs, (-1, self.size)) - self.mean, self.basis)
        return ops.reshape(self.mean + ops.matmul(inputs, ops.transpose(self.basis)), (-1, *self.image_shape))

    def compute_output_shape(self, input_shape):
        if self.direction == "project":
            return (input_shape[0], self.components)
        return (input_shape[0], *self.image_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "components": self.components,
            "direction": self.direction,
        }


def principal_basis(images: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean ``(D,)`` and the first ``components`` principal directions ``(D, components)`` of
    ``images`` ``(n, ...)`` flattened to ``D`` values (directions past the data's rank are zero).

    From the eigenvectors of the smaller of the covariance ``(D, D)`` and the Gram matrix ``(n, n)``:
    a few seconds for 8,000 32x32x3 patches, where an SVD takes minutes.
    """
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    mean = flat.mean(axis=0)
    centred = flat - mean
    kept = min(components, *centred.shape)
    if len(centred) >= centred.shape[1]:
        directions = np.linalg.eigh(centred.T @ centred)[1][:, ::-1][:, :kept]
    else:  # v = X^T u / |X^T u| for the Gram matrix's eigenvectors u
        values, vectors = np.linalg.eigh(centred @ centred.T)
        values, vectors = values[::-1][:kept], vectors[:, ::-1][:, :kept]
        positive = values > values[0] * 1e-10  # none when every image is the same
        directions = centred.T @ vectors[:, positive] / np.sqrt(values[positive])
    basis = np.zeros((flat.shape[1], components))
    basis[:, : directions.shape[1]] = directions
    return mean, basis
