"""The autoencoder contract every kind implements.

An :class:`Autoencoder` maps images ``(batch, H, W, C)`` to codes ``(batch, latent_dim)`` with
``encode`` and back to images ``(batch, H, W, C)`` in [0, 1] with ``decode``. Training calls
``per_example_loss(inputs, targets)``, which returns one loss value per example, so that the
training step can scale it for the global batch under any distribution strategy.
"""

from __future__ import annotations

import keras
from keras import ops


class Autoencoder(keras.Model):
    """An encoder and a decoder, trained to reconstruct their input.

    Args:
      encoder: a Keras model ``(batch, H, W, C) -> (batch, latent_dim)``.
      decoder: a Keras model ``(batch, latent_dim) -> (batch, H, W, C)`` with outputs in [0, 1].
      loss: ``mse`` or ``bce`` (per pixel, averaged over each image).
    """

    kind = "autoencoder"

    def __init__(self, encoder: keras.Model, decoder: keras.Model, loss: str = "mse", **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.loss_name = loss

    @property
    def latent_dim(self) -> int:
        return int(self.encoder.output_shape[-1])

    def encode(self, images, training: bool = False):
        """Images -> codes ``(batch, latent_dim)``."""
        return ops.cast(self.encoder(images, training=training), "float32")

    def decode(self, codes, training: bool = False):
        """Codes -> images in [0, 1]."""
        return ops.cast(self.decoder(codes, training=training), "float32")

    def call(self, images, training: bool = False):
        return self.decode(self.encode(images, training=training), training=training)

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
        """Loss per example ``(batch,)``: reconstruction of ``targets`` from ``inputs``."""
        return self.reconstruction_loss(targets, self(inputs, training=training))
