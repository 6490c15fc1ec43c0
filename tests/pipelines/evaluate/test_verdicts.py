"""Verdicts on real small arrays: a constant-output model, a model worse than PCA, a loss still falling."""

import numpy as np
import pytest

from pipelines.evaluate.metrics import pca_baseline, per_image_mse
from pipelines.evaluate.verdicts import MIN_VARIANCE_RATIO, judge, variance_ratio


def _digits_like(n: int, seed: int) -> np.ndarray:
    """Images near a 3-D subspace of 6x8 pixels (plus faint noise), in [0, 1]: PCA with 3 components fits well."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).uniform(0, 0.4, (3, 48))
    return (
        np.clip(rng.uniform(0, 1, (n, 3)) @ basis + rng.normal(0, 0.01, (n, 48)), 0, 1)
        .reshape(n, 6, 8, 1)
        .astype(np.float32)
    )


def _metrics(targets: np.ndarray, reconstructions: np.ndarray, reference: np.ndarray) -> dict:
    pca_mse, *_ = pca_baseline(reference, targets, latent_dim=3)
    return {
        "reconstruction": {"mse_mean": float(np.mean(per_image_mse(targets, reconstructions)))},
        "pca": {"mse_mean": float(np.mean(pca_mse))},
        "classification": {"knn": {"autoencoder": 0.5, "pca": 0.9}},
        "probe": {"sizes": [10], "codes": {"10": {"mean": 0.6}}, "pixels": {"10": {"mean": 0.4}}},
    }


def test_a_constant_output_model_is_flagged():
    targets, reference = _digits_like(40, 0), _digits_like(200, 1)
    constant = np.broadcast_to(targets.mean(axis=0), targets.shape)  # the mean image for every input
    verdicts = judge(_metrics(targets, constant, reference), targets, constant, None)
    assert verdicts["variance"]["ok"] is False
    assert verdicts["variance"]["says"].startswith("reconstructions have almost no variance")
    assert verdicts["variance"]["value"] < 1e-6
    # A flat grey square is as constant as the mean image; a faithful model varies like the images.
    assert variance_ratio(targets, np.full_like(targets, 0.5)) == 0.0
    noisy = targets + np.random.default_rng(1).normal(0, 0.01, targets.shape)
    assert variance_ratio(targets, noisy) > 0.9 > MIN_VARIANCE_RATIO
    assert judge(_metrics(targets, noisy, reference), targets, noisy, None)["variance"]["ok"] is True


def test_a_model_worse_than_pca_is_flagged_and_a_better_one_is_not():
    targets, reference = _digits_like(40, 0), _digits_like(200, 1)
    blurred = np.clip(targets + np.random.default_rng(2).normal(0, 0.1, targets.shape), 0, 1)
    worse = judge(_metrics(targets, blurred, reference), targets, blurred, None)["reconstruction"]
    pca_mse = np.mean(pca_baseline(reference, targets, 3)[0])
    assert worse["ok"] is False and worse["says"].startswith("worse than PCA")
    assert worse["value"] == pytest.approx(np.mean(per_image_mse(targets, blurred)) / pca_mse) and worse["value"] > 1
    exact = judge(_metrics(targets, targets, reference), targets, targets, None)["reconstruction"]
    assert exact["ok"] is True and exact["says"].startswith("better than PCA") and exact["value"] == 0.0


def test_the_loss_curve_verdict_asks_for_more_epochs_only_while_the_loss_falls():
    targets = _digits_like(20, 0)
    metrics = _metrics(targets, targets, targets)
    falling = judge(metrics, targets, targets, {"loss": [1.0, 0.6], "eval_loss": [1.0, 0.5]})["training"]
    assert falling == {
        "ok": False,
        "says": "the loss was still falling at the last epoch: raise --epochs",
        "measure": "eval-loss decrease over the last epoch (fraction)",
        "value": 0.5,
    }
    flat = judge(metrics, targets, targets, {"eval_loss": [1.0, 0.5, 0.498]})["training"]
    assert flat["ok"] is True and flat["value"] < 0.01
    assert "training" not in judge(metrics, targets, targets, {"eval_loss": [0.3]})  # one epoch: no trend
    assert "training" not in judge(metrics, targets, targets, None)


def test_codes_and_probe_verdicts_compare_with_their_baselines():
    targets = _digits_like(20, 0)
    verdicts = judge(_metrics(targets, targets, targets), targets, targets, None)
    assert verdicts["classification"]["ok"] is False and verdicts["classification"]["value"] == -0.4
    assert verdicts["probe"]["ok"] is True and verdicts["probe"]["says"].startswith("with 10 labels")
    assert "restoration" not in verdicts
    tie = _metrics(targets, targets, targets) | {"classification": {"knn": {"autoencoder": 0.965, "pca": 0.971}}}
    assert judge(tie, targets, targets, None)["classification"]["ok"] is True  # within a point: a tie
