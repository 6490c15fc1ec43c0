"""Restoration triplets: what a model trained on corrupted inputs makes of them, beside a classical baseline.

Input: an exported model trained with a corruption (``ModelInfo.noise``, parsed by
``ExportedModel.noise``) and the evaluated :class:`~pipelines.evaluate.data.Examples`. Output: a
:class:`~pipelines.evaluate.results.Restoration`: per image the corrupted input (as the model saw
it: ``transforms.image_ops.corrupt`` at the model's size, sent as an 8-bit PNG), the baseline's
image, the model's restored output and the clean target, each with its PSNR against the target.

The baseline is what one would do without a model, chosen by the corruption's kind in
:data:`BASELINES`: the corrupted input itself for noise (``gaussian``, ``salt-pepper``, ``mask``),
grey replicated to every channel for recolouring (``grey``), bicubic upscaling of the downscaled
image for upscaling (``downscale:F``), and the image's mean filling the missing pixels for
inpainting (``blocks:P``). A kind without an entry is reported without a baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from pipelines.evaluate.data import Examples
from pipelines.evaluate.exported import ExportedModel
from pipelines.evaluate.results import Restoration
from pipelines.evaluate.scores import per_image_mse, psnr
from pipelines.inputs.images import encode_png
from transforms.image_ops import corrupt

# A baseline maps (corrupted images, clean images, the corruption's amount) to its guess of the
# clean images, all (N, H, W, C) in [0, 1]. Only ``blocks`` looks at the clean images, and only to
# find the holes: an inpainting method is always told where they are.
Baseline = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def corrupted_input(corrupted: np.ndarray, clean: np.ndarray, amount: float) -> np.ndarray:
    """The denoising baseline: the noisy image as it is."""
    return corrupted


def grey_replicated(corrupted: np.ndarray, clean: np.ndarray, amount: float) -> np.ndarray:
    """The recolouring baseline: the image's luma (ITU-R BT.601) in every channel."""
    if corrupted.shape[-1] == 1:
        return corrupted
    grey = tf.image.rgb_to_grayscale(tf.constant(corrupted[..., :3], tf.float32)).numpy()
    return np.repeat(grey, corrupted.shape[-1], axis=-1)


def bicubic_upscaled(corrupted: np.ndarray, clean: np.ndarray, amount: float) -> np.ndarray:
    """The upscaling baseline: the image shrunk by ``amount`` (area averaging), brought back up bicubic."""
    height, width = clean.shape[1:3]
    small = (max(1, round(height / amount)), max(1, round(width / amount)))
    shrunk = tf.image.resize(tf.constant(clean, tf.float32), small, method="area")
    return np.clip(tf.image.resize(shrunk, (height, width), method="bicubic").numpy(), 0.0, 1.0)


def mean_filled(corrupted: np.ndarray, clean: np.ndarray, amount: float) -> np.ndarray:
    """The inpainting baseline: each missing pixel (any channel changed) takes the mean of the image's known pixels."""
    holes = np.any(corrupted != clean, axis=-1, keepdims=True)
    known = ~holes
    counts = np.maximum(known.sum(axis=(1, 2), keepdims=True), 1)
    means = (corrupted * known).sum(axis=(1, 2), keepdims=True) / counts
    return np.where(holes, means, corrupted).astype(np.float32)


BASELINES: dict[str, tuple[str, Baseline]] = {
    "gaussian": ("the noisy input", corrupted_input),
    "salt-pepper": ("the noisy input", corrupted_input),
    "mask": ("the noisy input", corrupted_input),
    "grey": ("grey replicated", grey_replicated),
    "downscale": ("bicubic upscaling", bicubic_upscaled),
    "blocks": ("mean fill of the holes", mean_filled),
}


def restore(model: ExportedModel, examples: Examples, seed: int) -> Restoration:
    """Corrupts every image with the model's corruption, sends it as an 8-bit PNG, and scores what comes back.

    Args:
      model: a model trained with a corruption (``model.denoising``).
      examples: the clean images (the targets).
      seed: of the corruption.

    Raises:
      UserError: the model names no valid corruption (``ExportedModel.noise``).
    """
    spec = model.noise()
    clean = examples.pixels
    corrupted = corrupt(tf.constant(clean), spec, seed=seed).numpy()
    corrupted = np.round(corrupted * 255) / 255  # exactly what the model decodes from the PNG
    restored = model.restore([encode_png((image * 255).astype(np.uint8)) for image in corrupted])
    baseline_name, baseline = BASELINES.get(spec.kind, (None, None))
    guessed = None if baseline is None else baseline(corrupted, clean, spec.amount).astype(np.float32)

    def score(images: np.ndarray | None) -> np.ndarray | None:
        return None if images is None else psnr(per_image_mse(clean, images))

    return Restoration(
        corruption=str(spec),
        baseline=baseline_name,
        target=clean,
        corrupted=corrupted.astype(np.float32),
        guessed=guessed,
        restored=restored,
        psnr_corrupted=score(corrupted),
        psnr_baseline=score(guessed),
        psnr_restored=score(restored),
    )
