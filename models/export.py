"""Export: one SavedModel that takes raw encoded image bytes and returns every output.

Signatures (the tf.Transform graph is embedded: decode, resize, scale, normalize exactly as in
training):
  ``serving_default(images: string[batch])`` -> ``latent`` float32 ``(batch, latent_dim)``,
  ``reconstruction`` float32 ``(batch, H, W, C)`` in [0, 1], ``reconstruction_error`` float32
  ``(batch,)`` (per-image MSE against the model's own [0, 1] input pixels);
  ``encode(images: string[batch])`` -> ``latent``;
  ``decode(latent: float32[batch, latent_dim])`` -> ``reconstruction`` (any codes, e.g. samples).
``model_info.json`` beside ``saved_model.pb`` records kind, latent size, image shape and a hash.
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

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(self, images):
        transformed = self.transform({features.IMAGE: images})
        latent = self.model.encode(transformed[features.INPUTS])
        reconstruction = self.model.decode(latent)
        error = tf.reduce_mean(tf.square(reconstruction - transformed[features.PIXELS]), axis=[1, 2, 3])
        return {"latent": latent, "reconstruction": reconstruction, "reconstruction_error": error}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def encode(self, images):
        transformed = self.transform({features.IMAGE: images})
        return {"latent": self.model.encode(transformed[features.INPUTS])}

    def _decode(self, latent):
        return {"reconstruction": self.model.decode(latent)}


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
    signatures = {"serving_default": module.serve, "encode": module.encode, "decode": module.decode}
    tf.saved_model.save(module, staging, signatures=signatures)
    info = dict(info, model_hash=_weights_hash(model))
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
