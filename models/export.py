"""Export: one SavedModel that takes raw encoded image bytes and returns every output.

Signatures (the tf.Transform graph is embedded: decode, resize, scale, normalize exactly as in
training):
  ``serving_default(images: string[batch])`` -> ``latent`` float32 ``(batch, latent_dim)``,
  ``reconstruction`` float32 ``(batch, H, W, C)`` in [0, 1], ``reconstruction_error`` float32
  ``(batch,)`` (per-image MSE against the model's own [0, 1] input pixels), and for a model
  trained with a corruption (``--corrupt``) also ``restored`` float32 ``(batch, H, W, C)``: the
  restorer's output for the given (corrupted) images (``models.restoration``: the classical
  baseline plus a learned correction; ``reconstruction`` stays the code's own image; for a noise,
  which has no restorer, the reconstruction, also under its older name ``denoised``). An
  upscaling model (``downscale:F``) first brings an image smaller than its size up to it, bicubic
  (``image_ops.bicubic_to_size``), so it takes the small images users have; a grey image reaches
  a recolouring model's 3 channels through the transform's colour policy (grey repeated); with a
  calibration
  (``models.calibration``) also ``anomaly_error`` float32 ``(batch,)``, the scored error
  (``models.calibration.anomaly_error``: the MSE of the blurred images), ``anomaly_score`` float32
  ``(batch,)``, its percentile rank in the calibration's table (0 to 1, linear between its points,
  monotone in the error), and ``is_anomaly`` bool ``(batch,)``, that error above the calibration's threshold;
  ``encode(images: string[batch])`` -> ``latent`` (for the VAEs: the posterior mean);
  ``decode(latent: float32[batch, latent_dim])`` -> ``reconstruction`` (any codes, e.g. samples);
  for the VAEs also ``interpolate(images_a: string[batch], images_b: string[batch],
  alphas: float32[steps])`` -> ``reconstruction`` ``(batch, steps, H, W, C)``, the images
  ``g((1 - a) f(x) + a f(x'))`` (see ``Autoencoder.interpolate``).
``model_info.json`` beside ``saved_model.pb`` is a :class:`~models.model_info.ModelInfo` (kind, latent
size, parameters, loss, image shape, ``corruption``, ``noise``, ``variational``, the ``calibration`` and
``model_hash``, the hash of the saved files and those fields that ``models.model_check`` verifies
before a model is loaded); the output names are ``models.model_info``'s.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
import tensorflow_transform as tft

from models.base import Autoencoder
from models.calibration import anomaly_error, per_image_error
from models.model_check import export_hash
from models.model_info import (
    ANOMALY_ERROR,
    ANOMALY_SCORE,
    DENOISED,
    IS_ANOMALY,
    LATENT,
    RECONSTRUCTION,
    RECONSTRUCTION_ERROR,
    RESTORED,
    Calibration,
    ModelInfo,
    saved_model_path,
)
from transforms import features
from transforms.image_ops import bicubic_to_size


class ServingModule(tf.Module):
    """Wraps the transform layer and the autoencoder behind one ``tf.function``."""

    def __init__(self, model: Autoencoder, tft_output: tft.TFTransformOutput, calibration: Calibration | None = None):
        super().__init__()
        self.model = model
        self.transform = tft_output.transform_features_layer()
        self.calibration = calibration
        if calibration is not None:
            self.percentiles = tf.constant(calibration.error_percentiles, tf.float32)
            self.threshold = tf.constant(calibration.threshold, tf.float32)

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
        corruption = self.model.corruption
        if corruption is not None and corruption.kind == "downscale":
            height, width = self.model.image_shape[:2]
            images = tf.map_fn(lambda e: bicubic_to_size(e, height, width), images, fn_output_signature=tf.string)
        transformed = self.transform({features.IMAGE: images})
        latent = self.model.encode(transformed[features.INPUTS])
        reconstruction = self.model.decode(latent)
        error = per_image_error(reconstruction, transformed[features.PIXELS])
        outputs = {LATENT: latent, RECONSTRUCTION: reconstruction, RECONSTRUCTION_ERROR: error}
        if corruption is not None:
            outputs[RESTORED] = self.model.restore(transformed[features.INPUTS], reconstruction)
            if corruption.is_noise:
                outputs[DENOISED] = tf.identity(outputs[RESTORED])
        if self.calibration is not None:
            scored = anomaly_error(reconstruction, transformed[features.PIXELS])
            outputs[ANOMALY_ERROR] = scored
            outputs[ANOMALY_SCORE] = percentile_rank(scored, self.percentiles)
            outputs[IS_ANOMALY] = scored > self.threshold
        return outputs

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def encode(self, images):
        transformed = self.transform({features.IMAGE: images})
        return {LATENT: self.model.encode(transformed[features.INPUTS])}

    def _decode(self, latent):
        return {RECONSTRUCTION: self.model.decode(latent)}

    def _interpolate(self, images_a, images_b, alphas):
        inputs_a = self.transform({features.IMAGE: images_a})[features.INPUTS]
        inputs_b = self.transform({features.IMAGE: images_b})[features.INPUTS]
        return {RECONSTRUCTION: self.model.interpolate(inputs_a, inputs_b, alphas)}


def percentile_rank(values, table):
    """The rank of each of ``values`` ``(batch,)`` in the percentile ``table`` (101 non-decreasing
    values at 0..100%), from 0 to 1: ``(i + f) / 100`` between points ``i`` and ``i + 1``, where ``f``
    is the linear position between them; 0 below the table, 1 above it."""
    points = tf.shape(table)[0]
    upper = tf.clip_by_value(tf.searchsorted(table, values, side="right"), 1, points - 1)
    low, high = tf.gather(table, upper - 1), tf.gather(table, upper)
    width = high - low
    fraction = tf.clip_by_value(tf.math.divide_no_nan(values - low, width), 0.0, 1.0)
    # Where points tie (width 0), a value equal to them ranks at the tie's top.
    fraction = tf.where((width == 0) & (values >= high), 1.0, fraction)
    return (tf.cast(upper - 1, tf.float32) + fraction) / tf.cast(points - 1, tf.float32)


def export_model(
    model: Autoencoder,
    tft_output: tft.TFTransformOutput,
    model_dir: str,
    params: dict,
    calibration: Calibration | None = None,
) -> str:
    """Writes ``MODEL_DIR/saved_model`` with its ``model_info.json``; ``params`` are the kind's
    resolved parameters, ``calibration`` sets the anomaly outputs. Training passes its staging
    folder as ``model_dir`` and publishes it (``transforms.publishing``), so a failed export leaves
    the last good one.

    Returns:
      the SavedModel path.
    """
    path = saved_model_path(model_dir)
    corruption = model.corruption
    module = ServingModule(model, tft_output, calibration)
    tf.saved_model.save(module, path, signatures=module.signatures())
    info = ModelInfo(
        kind=model.kind,
        latent_dim=model.latent_dim,
        image_shape=model.image_shape,
        loss=model.loss_name,
        params=params,
        model_hash="",  # set below, once the files it covers are written
        noise=str(corruption) if corruption is not None and corruption.is_noise else None,
        denoising=corruption is not None and corruption.is_noise,
        variational=model.variational,
        calibration=calibration,
        corruption=str(corruption) if corruption is not None else None,
    )
    info = dataclasses.replace(info, model_hash=export_hash(path, info))
    info.write(path)
    return path
