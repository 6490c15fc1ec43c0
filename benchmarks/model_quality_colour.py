"""Model quality on colour photographs: ``conv`` against PCA at 64-D on patches of photographs it did not see.

The colour section of ``make bench BENCH=model_quality``. The photographs are scikit-learn's two
sample images (``load_sample_images``: ``china.jpg`` and ``flower.jpg``, 427x640 RGB, shipped in its
wheel, so nothing is downloaded). Each fold trains on one photograph and tests on the other:

* train: ``PATCHES`` random ``PATCH``x``PATCH`` crops of the training photograph, each flipped and
  rotated by a random multiple of 90 degrees, written as one NPY array and preprocessed by the real
  job (``run_preprocess``); ``conv`` is trained on them with its defaults (only the kind and the code
  size given: for colour, the PCA base, fitted by training to these patches) for ``EPOCHS`` epochs
  through ``models.training.train``;
* test: every patch on a ``STRIDE`` grid of the other photograph, sent as PNG bytes to the export's
  ``serving_default``; PCA with ``LATENT_DIM`` components, fitted on the same training patches, is the
  baseline (its reconstructions clipped to [0, 1] like the model's).

Each fold gives the mean MSE and PSNR of both and the ratio of the MSEs; the target is the issue's
``conv`` at 64-D <= 0.8x PCA-64 on every fold. Sizes come from the environment for quick runs:
``BENCH_COLOUR_PATCHES``, ``BENCH_COLOUR_EPOCHS``.
"""

from __future__ import annotations

import logging
import os
import pathlib
import time

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_sample_images
from sklearn.decomposition import PCA

from benchmarks import bench_model_quality as quality
from models import input_pipeline
from models.config import ModelConfig, TrainConfig
from models.registry import resolve_train_config
from models.training import train
from pipelines.config import PreprocessConfig
from pipelines.evaluate import scores
from pipelines.preprocess.job import run_preprocess

log = logging.getLogger(__name__)

KIND = "conv"
LATENT_DIM = 64
PATCH = 32
STRIDE = 16
PATCHES = int(os.environ.get("BENCH_COLOUR_PATCHES", "8000"))
EPOCHS = int(os.environ.get("BENCH_COLOUR_EPOCHS", "10"))
TARGET_RATIO = 0.8


def photographs() -> dict[str, np.ndarray]:
    """The sample photographs by file name, as uint8 ``(H, W, 3)``."""
    bunch = load_sample_images()
    return {pathlib.Path(name).stem: image for name, image in zip(bunch.filenames, bunch.images, strict=True)}


def random_patches(photo: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` random ``PATCH``-pixel crops of ``photo``, each randomly flipped and rotated by k x 90 degrees."""
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, photo.shape[0] - PATCH + 1, n)
    xs = rng.integers(0, photo.shape[1] - PATCH + 1, n)
    flips, turns = rng.random(n) < 0.5, rng.integers(0, 4, n)
    crops = [photo[y : y + PATCH, x : x + PATCH] for y, x in zip(ys, xs, strict=True)]
    return np.stack([np.rot90(c[:, ::-1] if f else c, k) for c, f, k in zip(crops, flips, turns, strict=True)]).astype(
        np.uint8
    )


def grid_patches(photo: np.ndarray) -> np.ndarray:
    """Every ``PATCH``-pixel crop of ``photo`` on a ``STRIDE``-pixel grid, as [0, 1] floats."""
    rows = range(0, photo.shape[0] - PATCH + 1, STRIDE)
    cols = range(0, photo.shape[1] - PATCH + 1, STRIDE)
    return np.stack([photo[y : y + PATCH, x : x + PATCH] for y in rows for x in cols]).astype(np.float32) / 255.0


def prepare_fold(fold_dir: pathlib.Path, photo: np.ndarray, seed: int) -> str:
    """Writes the training patches as NPY and preprocesses them, unless an earlier run already did."""
    data_dir = fold_dir / "data"
    if not (data_dir / input_pipeline.TRANSFORM_DIR / "transform_fn").exists():
        fold_dir.mkdir(parents=True, exist_ok=True)
        np.save(fold_dir / "patches.npy", random_patches(photo, PATCHES, seed))
        run_preprocess(PreprocessConfig(input=str(fold_dir / "patches.npy"), output=str(data_dir), channels=3))
    return str(data_dir)


def pca_reconstruct(train_patches: np.ndarray, test: np.ndarray) -> np.ndarray:
    """``test`` through PCA with ``LATENT_DIM`` components fitted on ``train_patches``, clipped to [0, 1]."""
    pca = PCA(n_components=LATENT_DIM, random_state=0).fit(train_patches.reshape(len(train_patches), -1))
    projected = pca.inverse_transform(pca.transform(test.reshape(len(test), -1)))
    return np.clip(projected, 0.0, 1.0).reshape(test.shape)


def fold_row(work: pathlib.Path, train_name: str, test_name: str, photos: dict[str, np.ndarray], seed: int) -> dict:
    """Trains ``conv`` on patches of ``train_name`` and measures it and PCA on patches of ``test_name``."""
    fold_dir = work / f"{train_name}-to-{test_name}"
    data_dir = prepare_fold(fold_dir, photos[train_name], seed)
    cfg = resolve_train_config(
        TrainConfig(
            data_dir=data_dir,
            model_dir=str(fold_dir / "model"),
            model=ModelConfig(KIND, LATENT_DIM),
            epochs=EPOCHS,
        )
    )
    started = time.time()
    result = train(cfg)
    seconds = time.time() - started
    test = grid_patches(photos[test_name])
    outputs = quality.serve(tf.saved_model.load(result.saved_model), quality.to_png(test))
    model_mse = scores.per_image_mse(test, outputs["reconstruction"])
    train_patches = np.load(fold_dir / "patches.npy").astype(np.float32) / 255.0
    pca_mse = scores.per_image_mse(test, pca_reconstruct(train_patches, test))
    row = {
        "train_photo": train_name,
        "test_photo": test_name,
        "train_patches": len(train_patches),
        "test_patches": len(test),
        "kind": KIND,
        "loss": cfg.model.loss,
        "learning_rate": cfg.learning_rate,
        "batch_size": cfg.batch_size,
        "params": cfg.model.params,
        "epochs": EPOCHS,
        "train_seconds": seconds,
        "mse": float(np.mean(model_mse)),
        "psnr": float(np.mean(scores.psnr(model_mse))),
        "pca_mse": float(np.mean(pca_mse)),
        "pca_psnr": float(np.mean(scores.psnr(pca_mse))),
    }
    row["ratio"] = row["mse"] / row["pca_mse"]
    log.info("%s", row)
    return row


def colour_section(work: pathlib.Path) -> dict:
    """Both folds (train on one photograph, test on the other), and the target."""
    photos = photographs()
    names = sorted(photos)
    rows = [
        fold_row(work / "colour", train_name, test_name, photos, seed)
        for seed, (train_name, test_name) in enumerate((a, b) for a in names for b in names if a != b)
    ]
    worst = max(r["ratio"] for r in rows)
    return {
        "latent_dim": LATENT_DIM,
        "patch": PATCH,
        "rows": rows,
        "target": {
            "target": f"{KIND} MSE / PCA-{LATENT_DIM} MSE on held-out photo patches, worst fold",
            "value": worst,
            "goal": f"<= {TARGET_RATIO}",
            "met": worst <= TARGET_RATIO,
        },
    }


def colour_markdown(section: dict) -> str:
    """The colour section as a markdown table and its target."""
    rows = section["rows"]
    lines = [
        f"Colour photographs: `{KIND}` and PCA at {section['latent_dim']}-D on {section['patch']}x{section['patch']} "
        f"RGB patches; trained on {rows[0]['train_patches']} random flipped/rotated patches of one of "
        f"scikit-learn's sample photographs for {rows[0]['epochs']} epochs (the kind's defaults: "
        f"{rows[0]['loss']}, learning rate {rows[0]['learning_rate']:g}, batch {rows[0]['batch_size']}, "
        f"base {rows[0]['params'].get('base', 'mean-colour (before the base parameter)')}), "
        f"tested on every patch of the other on a {STRIDE}-pixel grid ({rows[0]['test_patches']}).",
        "",
        "| train photo | test photo | conv MSE | conv PSNR (dB) | PCA MSE | PCA PSNR (dB) | MSE / PCA | train (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['train_photo']} | {r['test_photo']} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['pca_mse']:.5f} | "
            f"{r['pca_psnr']:.2f} | {r['ratio']:.3f} | {r['train_seconds']:.0f} |"
        )
    t = section["target"]
    lines += ["", f"Target: {t['target']}: {t['value']:.3f} ({t['goal']}: {'met' if t['met'] else 'NOT met'})."]
    return "\n".join(lines) + "\n"
