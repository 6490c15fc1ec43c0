"""The autoencoder contract every kind implements, and the logic the kinds share.

An :class:`Autoencoder` maps images ``(batch, H, W, C)`` to codes ``(batch, latent_dim)`` with
``encode`` and back to images ``(batch, H, W, C)`` in [0, 1] with ``decode``. Training calls
``per_example_loss(inputs, targets, training)``, which returns one loss value per example, so that
the training step can scale it for the global batch under any distribution strategy. A model trained
to restore (``corruption``, ``transforms.corruption``) is given corrupted inputs and clean targets by
the training input pipeline (``models.input_pipeline.corruptor``); the model itself never corrupts.
Such a model, unless the corruption is a noise, also has a ``restorer``
(``models.restoration.Restorer``): its output, ``restore``, is the classical baseline plus a learned
correction made from the inputs and the decoder's image of the code, and it is what the model
returns and is trained on (beside the code's own reconstruction). A denoising model restores with
its decoder.
The loss is built from two steps the kinds can refine:

* ``code_and_penalty``: the code the decoder sees in training and a per-example penalty on it
  (the ``penalty`` given, e.g. ``sparse``'s L1/KL term, else zero; for the VAEs, a sample of the
  posterior and the KL term: :class:`VariationalAutoencoder`, shared by ``vae`` and ``conv-vae``);
* ``reconstruction_loss``: ``mse`` or ``bce`` per pixel, averaged over each image.

The model's kind, loss and corruption come in its :class:`~models.registry.ModelSpec`, at construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from models.layers import PrincipalSubspace, principal_basis
from models.registry import ModelSpec
from models.restoration import Restorer


class Autoencoder(keras.Model):
    """An encoder and a decoder, trained to reconstruct their input's clean target.

    Args:
      encoder: a Keras model ``(batch, H, W, C) -> (batch, latent_dim)``.
      decoder: a Keras model ``(batch, latent_dim) -> (batch, H, W, C)`` with outputs in [0, 1].
      spec: the kind, the loss (``mse`` or ``bce``, per pixel, averaged over each image) and the
        corruption the model is trained to undo (a restoration model), or None.
      penalty: codes ``(batch, latent_dim)`` -> a per-example penalty ``(batch,)`` added to the loss.
    """

    variational = False

    def __init__(
        self,
        encoder: keras.Model,
        decoder: keras.Model,
        spec: ModelSpec,
        penalty: Callable | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.kind = spec.kind
        self.loss_name = spec.loss
        self.corruption = spec.corruption
        restores = spec.corruption is not None and not spec.corruption.is_noise  # see models.restoration
        self.restorer = Restorer(spec.corruption, spec.image_shape) if restores else None
        self._penalty = penalty

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

    def restore(self, images, decoded, training: bool = False):
        """The restoring output of a model trained with a corruption, from its inputs ``images`` and
        the decoder's image of their code ``decoded``; ``decoded`` itself for a model without a
        restorer (no corruption, or a noise)."""
        if self.restorer is None:
            return decoded
        return ops.cast(self.restorer([images, decoded], training=training), "float32")

    def call(self, images, training: bool = False):
        return self.restore(images, self.decode(self.encode(images, training=training), training=training), training)

    @property
    def subspaces(self) -> list[PrincipalSubspace]:
        """The model's ``layers.PrincipalSubspace`` layers (``conv``'s ``pca`` base), which
        :meth:`fit_base` sets from the training data."""
        return [
            layer for m in (self.encoder, self.decoder) for layer in m.layers if isinstance(layer, PrincipalSubspace)
        ]

    def fit_base(self, inputs, pixels) -> None:
        """Sets every :attr:`subspaces` layer to the PCA of a sample of training images; training calls
        it once, before the first step of a fresh run.

        Args:
          inputs: the sample as the model sees it ``(n, H, W, C)`` (the transform's ``inputs``).
          pixels: the same images in [0, 1], the targets. The PCA is of the pixels; the projection
            reads the pixels back from the inputs by a least-squares line per value, exact for the
            transform's per-pixel scaling (``--normalize``), so the code is the pixels' PCA code.
        """
        if not self.subspaces:
            return
        inputs, pixels = (np.asarray(a, np.float64).reshape(len(a), -1) for a in (inputs, pixels))
        mean, basis = principal_basis(pixels, self.subspaces[0].components)
        centred = inputs - inputs.mean(axis=0)
        spread = np.sum(centred**2, axis=0)
        slope = np.divide(
            np.sum(centred * (pixels - mean), axis=0), spread, out=np.zeros_like(spread), where=spread > 0
        )
        for layer in self.subspaces:
            if layer.direction == "project":
                layer.set_basis(inputs.mean(axis=0), slope[:, None] * basis)
            else:
                layer.set_basis(mean, basis)

    def code_and_penalty(self, images, training: bool):
        """The code the decoder reconstructs from, and a per-example penalty ``(batch,)`` on it."""
        codes = self.encode(images, training=training)
        if self._penalty is not None:
            return codes, self._penalty(codes)
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
        """Loss per example ``(batch,)``: reconstruction of ``targets`` from ``inputs``, plus the penalty;
        a restoring model adds the loss of its restored output (the code keeps reconstructing alone)."""
        codes, penalty = self.code_and_penalty(inputs, training=training)
        decoded = self.decode(codes, training=training)
        loss = self.reconstruction_loss(targets, decoded) + penalty
        if self.restorer is not None:
            loss += self.reconstruction_loss(targets, self.restore(inputs, decoded, training=training))
        return loss

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


class VariationalAutoencoder(Autoencoder):
    """Gaussian-posterior autoencoder trained on the beta-weighted ELBO (``vae`` and ``conv-vae``).

    The encoder outputs the mean and log-variance of a diagonal Gaussian posterior ``q(z|x)``
    (``(batch, 2 * latent_dim)``, mean first). ``encode`` returns the mean (what the export's
    ``encode`` and ``serving_default`` give); training decodes a reparameterized sample
    ``z = mean + exp(log_var / 2) * eps`` and adds ``beta * KL(q(z|x) || N(0, I))`` per example,
    divided by the number of pixels, so the loss reads on the same scale as the other kinds'
    per-pixel losses. The decoder takes any latent vectors: ``sample(n)`` decodes draws from the prior.

    Args:
      encoder: images -> ``(batch, 2 * latent_dim)`` (mean, then log-variance).
      decoder: ``(batch, latent_dim)`` -> images in [0, 1].
      spec: as for :class:`Autoencoder`.
      beta: weight of the KL term.
    """

    variational = True

    def __init__(self, encoder, decoder, spec: ModelSpec, beta: float = 1.0, **kwargs):
        super().__init__(encoder, decoder, spec, **kwargs)
        self.beta = beta

    def posterior(self, images, training: bool = False):
        """``(mean, log_var)`` of ``q(z|x)``, each ``(batch, latent_dim)``."""
        moments = self.encoder(images, training=training)
        return moments[:, : self.latent_dim], moments[:, self.latent_dim :]

    def encode(self, images, training: bool = False):
        return self.posterior(images, training=training)[0]

    def code_and_penalty(self, images, training: bool):
        mean, log_var = self.posterior(images, training=training)
        # tf.random (not keras.random): no seed-generator state, so it runs in any replica context.
        codes = mean + ops.exp(0.5 * log_var) * tf.random.normal(ops.shape(mean)) if training else mean
        pixels = math.prod(self.image_shape)
        return codes, self.beta * gaussian_kl(mean, log_var) / pixels

    def sample(self, count: int):
        """``count`` images decoded from draws of the prior ``N(0, I)``."""
        return self.decode(tf.random.normal((count, self.latent_dim)))


def gaussian_kl(mean, log_var):
    """``KL(N(mean, exp(log_var)) || N(0, I))`` per example ``(batch,)``."""
    return -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)
