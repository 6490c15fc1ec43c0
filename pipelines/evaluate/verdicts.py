"""Verdicts: each headline figure of the report marked against its baseline, in words a reader acts on.

Input: the metrics dict (``metrics.evaluate`` builds it), the reconstructions and their targets
``(N, H, W, C)``, and the training history (``training.json``; None when not recorded). Output: the
``verdicts`` section of ``metrics.json``: ``{name: {"ok": bool, "says": str, "measure": str,
"value": float}}``, where ``says`` is the verdict (with the fix when it is bad) and ``value`` the
number it rests on, described by ``measure``. Only the checks whose inputs exist are present.
"""

from __future__ import annotations

import numpy as np

# Reconstructions whose variance across images is below this share of the targets' are called
# near-constant: a flat grey square for every image scores ~0, a good digit model ~0.8.
MIN_VARIANCE_RATIO = 0.1
# The eval loss is "still falling" when the last epoch lowered it by more than this fraction.
STILL_FALLING = 0.01
# Accuracies this close are a tie: they move by about this much between runs and seeds.
ACCURACY_TOLERANCE = 0.01


def _verdict(ok: bool, good: str, bad: str, measure: str, value: float) -> dict:
    return {"ok": bool(ok), "says": good if ok else bad, "measure": measure, "value": float(value)}


def variance_ratio(targets: np.ndarray, outputs: np.ndarray) -> float:
    """Mean per-pixel variance across images of ``outputs`` over that of ``targets`` (0: one image for all)."""
    target_variance = float(np.mean(np.var(targets.reshape(len(targets), -1), axis=0)))
    output_variance = float(np.mean(np.var(outputs.reshape(len(outputs), -1), axis=0)))
    return output_variance / max(target_variance, 1e-12)


def judge(
    metrics: dict, targets: np.ndarray, reconstructions: np.ndarray, history: dict[str, list[float]] | None
) -> dict:
    """Every verdict that applies (see the module docstring)."""
    verdicts = {
        "reconstruction": _verdict(
            metrics["reconstruction"]["mse_mean"] < metrics["pca"]["mse_mean"],
            "better than PCA with as many dimensions",
            "worse than PCA with as many dimensions: try --kind conv, more --epochs or a larger --latent-dim",
            "MSE / PCA's MSE",
            metrics["reconstruction"]["mse_mean"] / max(metrics["pca"]["mse_mean"], 1e-12),
        ),
        "variance": _verdict(
            (ratio := variance_ratio(targets, reconstructions)) >= MIN_VARIANCE_RATIO,
            "reconstructions vary from image to image",
            "reconstructions have almost no variance: the model outputs nearly the same image for every input; "
            "train longer or lower --learning-rate",
            "variance of the reconstructions / variance of the images",
            ratio,
        ),
    }
    eval_loss = (history or {}).get("eval_loss", [])
    if len(eval_loss) >= 2:
        drop = (eval_loss[-2] - eval_loss[-1]) / max(abs(eval_loss[-2]), 1e-12)
        verdicts["training"] = _verdict(
            drop <= STILL_FALLING,
            "the eval loss had levelled off at the last epoch",
            "the loss was still falling at the last epoch: raise --epochs",
            "eval-loss decrease over the last epoch (fraction)",
            drop,
        )
    knn = metrics["classification"].get("knn")
    if knn is not None:
        verdicts["classification"] = _verdict(
            knn["autoencoder"] >= knn["pca"] - ACCURACY_TOLERANCE,
            "the codes predict the label as well as PCA's (k-NN, within a point) or better",
            "the codes predict the label worse than PCA's (k-NN)",
            "k-NN accuracy, codes - PCA codes",
            knn["autoencoder"] - knn["pca"],
        )
    probe = metrics.get("probe", {})
    if probe.get("sizes"):
        fewest = str(probe["sizes"][0])
        verdicts["probe"] = _verdict(
            probe["codes"][fewest]["mean"] > probe["pixels"][fewest]["mean"],
            f"with {fewest} labels, a classifier learns more from the codes than from the pixels",
            f"with {fewest} labels, a classifier learns no more from the codes than from the pixels",
            f"accuracy with {fewest} labels, codes - pixels",
            probe["codes"][fewest]["mean"] - probe["pixels"][fewest]["mean"],
        )
    restoration = metrics.get("restoration", {})
    if "psnr_baseline" in restoration:
        verdicts["restoration"] = _verdict(
            restoration["psnr_restored"] > restoration["psnr_baseline"],
            f"restores better than {restoration['baseline']}",
            f"restores worse than {restoration['baseline']}: train longer or with a lighter corruption",
            f"PSNR gain over {restoration['baseline']}, dB",
            restoration["psnr_restored"] - restoration["psnr_baseline"],
        )
    return verdicts
