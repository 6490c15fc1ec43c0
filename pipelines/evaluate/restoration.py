"""Restoration triplets: what a model trained on corrupted inputs makes of them, beside a classical baseline.

Input: an exported model trained with a corruption (``ModelInfo.corruption``, parsed by
``ExportedModel.corruption``) and the evaluated :class:`~pipelines.evaluate.data.Examples`. Output: a
:class:`~pipelines.evaluate.results.Restoration`: per image the corrupted input, the baseline's
image, the model's restored output and the clean target, each with its PSNR against the target.

The model is sent what users have (:func:`what_users_have`), as 8-bit PNGs: for noise and blocks
the corrupted image at the model's size; for recolouring (``grey``) the 1-channel grey image, which
the export's transform brings to 3 channels; for upscaling (``downscale:F``) the image shrunk by F,
which the export brings up to its size, bicubic. The corrupted input shown is that image at the
model's size and channels.

The baseline is what one would do without a model, chosen by the corruption's kind in
:data:`BASELINES`: the noisy input itself for noise (``gaussian``, ``salt-pepper``, ``mask``), grey
replicated to every channel for recolouring, bicubic upscaling of the small image for upscaling
(for these three the corrupted input at the model's size is the baseline), and the image's mean
filling the missing pixels for inpainting (``blocks:P``; an inpainting method is told where the holes are).
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
from transforms.corruption import CorruptionSpec
from transforms.errors import UserError
from transforms.image_ops import bicubic_resize, corrupt, shrink

# A baseline maps (the corrupted images at the model's size, the holes: (N, H, W, 1) bool, or None
# but for ``blocks``) to its guess of the clean images, all (N, H, W, C) in [0, 1].
Baseline = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def corrupted_input(corrupted: np.ndarray, holes: np.ndarray | None) -> np.ndarray:
    """The baseline of noise, recolouring and upscaling: the corrupted input at the model's size as
    it is (the noisy image; grey replicated; the small image brought up bicubic)."""
    return corrupted


def mean_filled(corrupted: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """The inpainting baseline: each missing pixel takes the mean of the image's known pixels (per channel)."""
    known = ~holes
    counts = np.maximum(known.sum(axis=(1, 2), keepdims=True), 1)
    means = (corrupted * known).sum(axis=(1, 2), keepdims=True) / counts
    return np.where(holes, means, corrupted).astype(np.float32)


BASELINES: dict[str, tuple[str, Baseline]] = {
    "gaussian": ("the noisy input", corrupted_input),
    "salt-pepper": ("the noisy input", corrupted_input),
    "mask": ("the noisy input", corrupted_input),
    "grey": ("grey replicated", corrupted_input),
    "downscale": ("bicubic upscaling", corrupted_input),
    "blocks": ("mean fill of the holes", mean_filled),
}


def _quantized(images) -> np.ndarray:
    """[0, 1] images on the 8-bit grid (what a PNG of them decodes to)."""
    return np.round(np.asarray(images) * 255) / 255


def what_users_have(
    clean: np.ndarray, spec: CorruptionSpec, seed: int
) -> tuple[list[bytes], np.ndarray, np.ndarray | None]:
    """The corrupted images a user would bring, from clean ``(N, H, W, C)`` images in [0, 1].

    Returns:
      the PNGs to send (see the module docstring); the corrupted images at the model's size and
      channels ``(N, H, W, C)`` (the input shown); for ``blocks``, the holes ``(N, H, W, 1)`` (else None).
    """
    clean = tf.constant(_quantized(clean), tf.float32)
    holes = None
    if spec.kind == "grey":
        sent = _quantized(tf.image.rgb_to_grayscale(clean))
        corrupted = np.repeat(sent, 3, axis=-1)  # what the export's transform makes of a grey image
    elif spec.kind == "downscale":
        sent = _quantized(shrink(clean, int(spec.amount)))
        corrupted = bicubic_resize(tf.constant(sent, tf.float32), clean.shape[1:3]).numpy()
    else:
        # A channel of ones beside the image: blocks zero every channel, so it comes back as the kept pixels.
        marked = corrupt(tf.concat([clean, tf.ones_like(clean[..., :1])], -1), spec, seed=seed).numpy()
        sent = corrupted = _quantized(marked[..., :-1])
        holes = marked[..., -1:] == 0 if spec.kind == "blocks" else None
    images = [encode_png(np.round(image * 255).astype(np.uint8)) for image in sent]
    return images, np.asarray(corrupted, np.float32), holes


def restore(model: ExportedModel, examples: Examples, seed: int) -> Restoration:
    """Corrupts every image with the model's corruption, sends what users have, and scores what comes back.

    Args:
      model: a model trained with a corruption (``model.corruption``).
      examples: the clean images (the targets).
      seed: of the corruption.

    Raises:
      UserError: the model names no corruption.
    """
    spec = model.corruption
    if spec is None:
        raise UserError(f"the {model.info.kind!r} model was not trained with a corruption: it has no restoration")
    clean = examples.pixels
    sent, corrupted, holes = what_users_have(clean, spec, seed)
    restored = model.restore(sent)
    baseline_name, baseline = BASELINES[spec.kind]
    guessed = baseline(corrupted, holes).astype(np.float32)

    def score(images: np.ndarray) -> np.ndarray:
        return psnr(per_image_mse(clean, images))

    return Restoration(
        corruption=str(spec),
        baseline=baseline_name,
        target=clean,
        corrupted=corrupted,
        guessed=guessed,
        restored=restored,
        psnr_corrupted=score(corrupted),
        psnr_baseline=score(guessed),
        psnr_restored=score(restored),
    )
