"""The autoencoder contract every kind implements, and the logic the kinds share.

An :class:`Autoencoder` maps images ``(batch, H, W, C)`` to codes ``(batch, latent_dim)`` with
``encode`` and back to images ``(batch, H, W, C)`` in [0, 1] with ``decode``. Training calls
``per_example_loss(inputs, targets, training)``, which returns one loss value per example, so that
the training step can scale it for the global batch under any distribution strategy. It is built
from three steps the kinds can refine:

* ``corrupt``: the configured noise (``transforms.noise``), applied to the inputs in training only;
* ``code_and_penalty``: the code the decoder sees in training and a per-example penalty on it
  (zero here; an L1/KL sparsity term for ``sparse``, a sample and the KL term for the VAEs);
* ``reconstruction_loss``: ``mse`` or ``bce`` per pixel, averaged over each image.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from transforms.noise import NoiseSpec, corrupt


class Autoencoder(keras.Model):
    """An encoder and a decoder, trained to reconstruct their (optionally corrupted) input.

    Args:
      encoder: a Keras model ``(batch, H, W, C) -> (batch, latent_dim)``.
      decoder: a Keras model ``(batch, latent_dim) -> (batch, H, W, C)`` with outputs in [0, 1].
      loss: ``mse`` or ``bce`` (per pixel, averaged over each image).

    Attributes (set by ``registry.build_autoencoder``):
      kind: the registered kind.
      noise: corruption applied to the inputs while training (a denoising model), or None.
    """

    kind = "autoencoder"
    noise: NoiseSpec | None = None
    variational = False

    def __init__(self, encoder: keras.Model, decoder: keras.Model, loss: str = "mse", **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.loss_name = loss

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.input_shape[-1])

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.decoder.output_shape[1:])

    def encode(self, images, training: bool = False):
        """Images -> codes ``(batch, latent_dim)`` (for the VAEs: the posterior mean)."""
        return ops.cast(self.encoder(images, training=training), "float32")

    def decode(self, codes, training: bool = False):
        """Codes (any vectors of ``latent_dim``) -> images in [0, 1]."""
        return ops.cast(self.decoder(codes, training=training), "float32")

    def call(self, images, training: bool = False):
        return self.decode(self.encode(images, training=training), training=training)

    def corrupt(self, images, training: bool):
        """The inputs with the model's noise applied when ``training``; unchanged otherwise."""
        if training and self.noise is not None:
            return corrupt(images, self.noise)
        return images

    def code_and_penalty(self, images, training: bool):
        """The code the decoder reconstructs from, and a per-example penalty ``(batch,)`` on it."""
        codes = self.encode(images, training=training)
        return codes, ops.zeros(ops.shape(codes)[:1], dtype=codes.dtype)

    def reconstruction_loss(self, targets, reconstructions):
        """Per-example reconstruction loss ``(batch,)``, averaged over pixels."""
        if self.loss_name == "bce":
            per_pixel = keras.losses.binary_crossentropy(
                ops.reshape(targets, (ops.shape(targets)[0], -1, 1)),
                ops.reshape(reconstructions, (ops.shape(reconstructions)[0], -1, 1)),
            )
            return ops.mean(per_pixel, axis=-1)
        return ops.mean(ops.square(targets - reconstructions), axis=(1, 2, 3))

    def per_example_loss(self, inputs, targets, training: bool = True):
        """Loss per example ``(batch,)``: reconstruction of ``targets`` from ``inputs``, plus the penalty."""
        codes, penalty = self.code_and_penalty(self.corrupt(inputs, training), training=training)
        return self.reconstruction_loss(targets, self.decode(codes, training=training)) + penalty

    def interpolate(self, images_a, images_b, alphas):
        """``g((1 - a) f(x) + a f(x'))`` for every pair ``(x, x')`` and every ``a`` in ``alphas``.

        Args:
          images_a, images_b: two batches of images of the same size ``(batch, H, W, C)``.
          alphas: mixing weights ``(steps,)`` (0 gives ``x``'s reconstruction, 1 gives ``x'``'s).

        Returns:
          images ``(batch, steps, H, W, C)``.
        """
        codes_a, codes_b = self.encode(images_a), self.encode(images_b)
        alphas = ops.reshape(ops.cast(alphas, codes_a.dtype), (1, -1, 1))
        mixed = (1.0 - alphas) * codes_a[:, None, :] + alphas * codes_b[:, None, :]
        batch, steps = ops.shape(mixed)[0], ops.shape(mixed)[1]
        images = self.decode(ops.reshape(mixed, (-1, self.latent_dim)))
        return ops.reshape(images, (batch, steps, *self.image_shape))


def dense_decoder(
    latent_dim: int, output_shape: tuple, widths: tuple[int, ...] = (), activation: str = "relu"
) -> keras.Model:
    """Codes ``(batch, latent_dim)`` -> images of ``output_shape`` in [0, 1]: ``activation`` layers
    of ``widths``, then a sigmoid layer of every pixel, reshaped."""
    return keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            *[keras.layers.Dense(width, activation=activation) for width in widths],
            keras.layers.Dense(math.prod(output_shape), activation="sigmoid"),
            keras.layers.Reshape(output_shape),
        ],
        name="decoder",
    )
