"""Anomaly calibration: score the eval split with a trained model and set the threshold.

In: a trained autoencoder and the eval split (transformed examples, held out from the weights).
Out: a :class:`~models.model_info.Calibration` that the export embeds (``anomaly_score`` and
``is_anomaly`` of ``serving_default``) and stores in ``model_info.json`` (the drift reference).

The scored error (``ERROR``, ``serving_default``'s ``anomaly_error``) is :func:`anomaly_error`: the
per-image mean squared error between the reconstruction and the model's own [0, 1] pixels after a
3x3 binomial blur of both (``[1, 2, 1] / 4`` in each direction, per channel). A one-pixel shift of a
stroke costs the plain MSE (``reconstruction_error``) a lot and the blurred one little, while a
missing or extra stroke costs both: on one-class MNIST it separates best of the errors
``benchmarks/bench_anomaly.py`` compares. The threshold at a target false-positive rate ``fpr`` is
set by one of two documented methods, never by a minimum:

- ``conformal``: with n errors and ``k = ceil((1 - fpr)(n + 1)) <= n``, the k-th smallest error.
  For a new image like the calibration images, P(error > threshold) <= fpr.
- ``lognormal``: with fewer errors than that (n < 1/fpr - 1, e.g. 50 images of one digit at 1%),
  the one-sided ``1 - fpr`` prediction bound of a log-normal fitted to the errors:
  ``exp(mean + t * sqrt(1 + 1/n) * std)`` of their logs, with ``t`` the Student-t quantile at
  ``1 - fpr`` with ``n - 1`` degrees of freedom. For a new error from that log-normal it is exceeded
  with probability ``fpr``, the mean and std being estimated from the n errors (the plain quantile,
  ``z`` in place of ``t * sqrt(1 + 1/n)``, is exceeded more often: 1.3% of the time at n = 45 and fpr = 1%).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import tensorflow as tf
from scipy import stats

from models.base import Autoencoder
from models.model_info import PERCENTILE_POINTS, Calibration
from transforms import features
from transforms.errors import UserError

log = logging.getLogger(__name__)

ERROR = "blurred_mse"
CONFORMAL, LOGNORMAL = "conformal", "lognormal"
LATENT_DECILES = tuple(q / 10 for q in range(1, 10))
_BINOMIAL = (0.25, 0.5, 0.25)


def per_image_error(reconstruction, pixels):
    """``reconstruction_error``: per-image MSE over pixels (``(batch, H, W, C)`` -> ``(batch,)``), in TF."""
    return tf.reduce_mean(tf.square(reconstruction - pixels), axis=[1, 2, 3])


def anomaly_error(reconstruction, pixels):
    """The scored error ``ERROR``: per-image MSE over pixels after a 3x3 binomial blur of each channel
    of both images (``(batch, H, W, C)`` -> ``(batch,)``; zero padding at the borders), in TF. The blur
    is linear, so it blurs the difference once."""
    channels = reconstruction.shape[-1]
    kernel = tf.constant(np.outer(_BINOMIAL, _BINOMIAL), tf.float32)[:, :, None, None]
    blurred = tf.nn.depthwise_conv2d(
        reconstruction - pixels, tf.tile(kernel, [1, 1, channels, 1]), strides=[1, 1, 1, 1], padding="SAME"
    )
    return tf.reduce_mean(tf.square(blurred), axis=[1, 2, 3])


def score_examples(model: Autoencoder, batches: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Scored errors (:func:`anomaly_error`) ``(n,)`` and latents ``(n, latent_dim)`` of every example of
    ``batches`` (transformed features, as training reads them), computed as ``serving_default`` computes them."""

    @tf.function
    def step(inputs, pixels):
        latent = model.encode(inputs)
        return anomaly_error(model.decode(latent), pixels), latent

    errors, latents = [], []
    for batch in batches:
        error, latent = step(batch[features.INPUTS], batch[features.PIXELS])
        errors.append(error.numpy())
        latents.append(latent.numpy())
    if not errors:
        return np.zeros(0, np.float32), np.zeros((0, model.latent_dim), np.float32)
    return np.concatenate(errors), np.concatenate(latents)


def threshold_at_fpr(errors: np.ndarray, fpr: float) -> tuple[float, str]:
    """The threshold that flags about ``fpr`` of images like ``errors``, and the method that set it.

    Raises:
      UserError: fewer than 2 errors, or ``fpr`` not in (0, 1).
    """
    if not 0 < fpr < 1:
        raise UserError(f"anomaly_fpr must be in (0, 1), got {fpr}")
    n = len(errors)
    if n < 2:
        raise UserError(f"the eval split holds {n} image(s): calibration needs at least 2; preprocess more images")
    k = math.ceil((1 - fpr) * (n + 1))
    if k <= n:
        return float(np.sort(errors)[k - 1]), CONFORMAL
    logs = np.log(np.maximum(errors.astype(np.float64), np.finfo(np.float32).tiny))
    bound = stats.t.ppf(1 - fpr, n - 1) * math.sqrt(1 + 1 / n)
    return float(np.float32(math.exp(logs.mean() + bound * logs.std(ddof=1)))), LOGNORMAL


def build_calibration(errors: np.ndarray, latents: np.ndarray, fpr: float) -> Calibration:
    """The calibration of ``errors`` ``(n,)`` and ``latents`` ``(n, d)`` at the target ``fpr``."""
    threshold, method = threshold_at_fpr(errors, fpr)
    table = np.percentile(errors.astype(np.float64), np.linspace(0, 100, PERCENTILE_POINTS))
    deciles = np.quantile(latents.astype(np.float64), LATENT_DECILES, axis=0).T
    bins = latent_bins(latents, deciles)
    shares = [
        np.bincount(bins[:, dim], minlength=len(LATENT_DECILES) + 1) / len(latents) for dim in range(len(deciles))
    ]
    return Calibration(
        error=ERROR,
        fpr=fpr,
        threshold=threshold,
        method=method,
        examples=len(errors),
        flagged_fraction=float(np.mean(errors > np.float32(threshold))),
        error_percentiles=_floats(np.maximum.accumulate(table)),
        latent_mean=_floats(latents.mean(axis=0)),
        latent_std=_floats(latents.std(axis=0)),
        latent_quantiles=tuple(_floats(row) for row in deciles),
        latent_bin_shares=tuple(_floats(row) for row in shares),
    )


def latent_bins(latents: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin (0..9) of each latent value ``(n, d)`` among its dimension's deciles ``edges`` ``(d, 9)``:
    how many of the edges are at or below it."""
    return np.sum(np.asarray(latents, np.float64)[:, :, None] >= edges[None, :, :], axis=2)


def calibrate(model: Autoencoder, batches: tf.data.Dataset, fpr: float) -> Calibration:
    """Scores ``batches`` (the eval split) with ``model`` and builds the calibration at ``fpr``."""
    errors, latents = score_examples(model, batches)
    calibrated = build_calibration(errors, latents, fpr)
    log.info(
        "anomaly threshold %.5g (%s, %d eval images, target FPR %g, %.2f%% of them flagged)",
        calibrated.threshold,
        calibrated.method,
        calibrated.examples,
        calibrated.fpr,
        100 * calibrated.flagged_fraction,
    )
    return calibrated


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(values, np.float64))
