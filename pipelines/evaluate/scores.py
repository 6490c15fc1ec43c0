"""The evaluation's one definition of error and of PSNR, shared by the metrics, the probe and the restoration triplets.

Element contract: images are float arrays ``(N, H, W, C)`` of [0, 1] pixels; an error is the
per-image mean squared error ``(N,)``; PSNR is ``10 log10(1 / MSE)`` in dB, finite for a perfect
reconstruction.
"""

from __future__ import annotations

import numpy as np

_MIN_MSE = 1e-10  # PSNR of a perfect reconstruction stays finite


def per_image_mse(targets: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` x 2 -> ``(N,)`` mean squared error per image."""
    return np.mean(np.square(outputs.astype(np.float64) - targets), axis=(1, 2, 3))


def psnr(mse: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of [0, 1] images, from their MSE."""
    return 10.0 * np.log10(1.0 / np.maximum(mse, _MIN_MSE))
