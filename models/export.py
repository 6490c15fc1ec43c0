"""Export: one SavedModel that takes raw encoded image bytes and returns every output.

Signatures (the tf.Transform graph is embedded: decode, resize, scale, normalize exactly as in
training):
  ``serving_default(images: string[batch])`` -> ``latent`` float32 ``(batch, latent_dim)``,
  ``reconstruction`` float32 ``(batch, H, W, C)`` in [0, 1], ``reconstruction_error`` float32
  ``(batch,)`` (per-image MSE against the model's own [0, 1] input pixels), and for a model
  trained with noise also ``denoised`` float32 ``(batch, H, W, C)``: the reconstruction of the
  given (possibly noisy) images, which such a model has learned to clean;
  ``encode(images: string[batch])`` -> ``latent`` (for the VAEs: the posterior mean);
  ``decode(latent: float32[batch, latent_dim])`` -> ``reconstruction`` (any codes, e.g. samples);
  for the VAEs also ``interpolate(images_a: string[batch], images_b: string[batch],
  alphas: float32[steps])`` -> ``reconstruction`` ``(batch, steps, H, W, C)``, the images
  ``g((1 - a) f(x) + a f(x'))`` (see ``Autoencoder.interpolate``).
``model_info.json`` beside ``saved_model.pb`` records kind, latent size, loss, image shape, a
hash of the weights, ``denoising`` (trained with noise), ``noise`` (its spec or null) and
``variational``.
"""

from __future__ import annotations

import hashlib
import json
import os

import tensorflow as tf
import tensorflow_transform as tft

from models.base import Autoencoder
from transforms import features

SAVED_MODEL_DIR = "saved_model"
MODEL_INFO = "model_info.json"


class ServingModule(tf.Module):
    """Wraps the transform layer and the autoencoder behind one ``tf.function``."""

    def __init__(self, model: Autoencoder, tft_output: tft.TFTransformOutput):
        super().__init__()
        self.model = model
        self.transform = tft_output.transform_features_layer()

        latent_spec = tf.TensorSpec([None, model.latent_dim], tf.float32, name="latent")
        self.decode = tf.function(self._decode, input_signature=[latent_spec])
        if model.variational:
            self.interpolate = tf.function(
                self._interpolate,
                input_signature=[
                    tf.TensorSpec([None], tf.string, name="images_a"),
                    tf.TensorSpec([None], tf.string, name="images_b"),
                    tf.TensorSpec([None], tf.float32, name="alphas"),
                ],
            )

    def signatures(self) -> dict:
        """The functions to export as signatures, by name."""
        signatures = {"serving_default": self.serve, "encode": self.encode, "decode": self.decode}
        if self.model.variational:
            signatures["interpolate"] = self.interpolate
        return signatures

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(self, images):
        transformed = self.transform({features.IMAGE: images})
        latent = self.model.encode(transformed[features.INPUTS])
        reconstruction = self.model.decode(latent)
        error = tf.reduce_mean(tf.square(reconstruction - transformed[features.PIXELS]), axis=[1, 2, 3])
        outputs = {"latent": latent, "reconstruction": reconstruction, "reconstruction_error": error}
        if self.model.noise is not None:
            outputs["denoised"] = tf.identity(reconstruction)
        return outputs

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def encode(self, images):
        transformed = self.transform({features.IMAGE: images})
        return {"latent": self.model.encode(transformed[features.INPUTS])}

    def _decode(self, latent):
        return {"reconstruction": self.model.decode(latent)}

    def _interpolate(self, images_a, images_b, alphas):
        inputs_a = self.transform({features.IMAGE: images_a})[features.INPUTS]
        inputs_b = self.transform({features.IMAGE: images_b})[features.INPUTS]
        return {"reconstruction": self.model.interpolate(inputs_a, inputs_b, alphas)}


def saved_model_path(model_dir: str) -> str:
    return os.path.join(model_dir, SAVED_MODEL_DIR)


def export_model(model: Autoencoder, tft_output: tft.TFTransformOutput, model_dir: str, info: dict) -> str:
    """Writes ``MODEL_DIR/saved_model`` atomically (a failed export leaves the last good one).

    Returns:
      the SavedModel path.
    """
    final = saved_model_path(model_dir)
    staging = final + ".tmp"
    if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)
    module = ServingModule(model, tft_output)
    tf.saved_model.save(module, staging, signatures=module.signatures())
    info = dict(
        info,
        model_hash=_weights_hash(model),
        denoising=model.noise is not None,
        noise=str(model.noise) if model.noise is not None else None,
        variational=model.variational,
    )
    with tf.io.gfile.GFile(os.path.join(staging, MODEL_INFO), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
    if tf.io.gfile.exists(final):
        tf.io.gfile.rmtree(final)
    tf.io.gfile.rename(staging, final)
    return final


def read_model_info(model_dir: str) -> dict:
    """Reads ``model_info.json`` of an export.

    Raises:
      FileNotFoundError: ``model_dir`` holds no export (names the fix).
    """
    path = os.path.join(saved_model_path(model_dir), MODEL_INFO)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: {model_dir} holds no exported model; run `hourglass train` first")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _weights_hash(model: Autoencoder) -> str:
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()[:16]
