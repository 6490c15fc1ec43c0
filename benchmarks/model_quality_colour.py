"""Model quality on colour photographs: ``conv`` against PCA at 64-D on patches of photographs it did not see.

The colour section of ``make bench BENCH=model_quality``. The photographs are the colour ones shipped
in the wheels of the stack and of the ``bench`` extra, so nothing is downloaded: scikit-learn's
``china.jpg`` and ``flower.jpg`` (``load_sample_images``), matplotlib's ``grace_hopper.jpg``
(``mpl-data/sample_data``) and scikit-image's ``skimage.data`` photographs (astronaut, chelsea, coffee,
rocket, the Hubble deep field, a retina, an immunohistochemistry slide and the two views of the stereo
motorcycle). A *scene* is one photograph, or the motorcycle's two views together (they show the same
scene, so they are never split between train and test). The scenes, sorted by name, are dealt
round-robin into ``FOLDS`` folds; each fold tests on its scenes and trains on all the others:

* train: ``PATCHES`` random ``PATCH``x``PATCH`` crops, as many from each training photograph, each
  flipped and rotated by a random multiple of 90 degrees, written as one NPY array and preprocessed by
  the real job (``run_preprocess``); ``conv`` is trained on them with its defaults (only the kind and
  the code size given) for ``EPOCHS`` epochs through ``models.training.train``;
* test: up to ``TEST_PATCHES`` patches of each held-out photograph, from its ``STRIDE``-pixel grid,
  sent as PNG bytes to the export's ``serving_default``; PCA with ``LATENT_DIM`` components, fitted on
  the same training patches, is the baseline (its reconstructions clipped to [0, 1] like the model's).

A fold's MSE is the mean over its held-out photographs of each photograph's mean MSE (every
photograph weighs the same, whatever its size); its PSNR is the mean over its patches. The target is
the issue's ``conv`` at 64-D <= 0.8x PCA-64 on every fold and on their mean. Sizes come from the
environment for quick runs: ``BENCH_COLOUR_PATCHES``, ``BENCH_COLOUR_EPOCHS``, ``BENCH_COLOUR_FOLDS``
(run only the first N folds).
"""

from __future__ import annotations

import logging
import os
import pathlib
import time

import numpy as np
import tensorflow as tf
from matplotlib import cbook
from PIL import Image
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
FOLDS = 3
TEST_PATCHES = 300
PATCHES = int(os.environ.get("BENCH_COLOUR_PATCHES", "4000"))
EPOCHS = int(os.environ.get("BENCH_COLOUR_EPOCHS", "5"))
RUN_FOLDS = int(os.environ.get("BENCH_COLOUR_FOLDS", str(FOLDS)))
TARGET_RATIO = 0.8
# scikit-image's colour photographs, by the name of their loader in ``skimage.data``.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "immunohistochemistry")


def photographs() -> dict[str, np.ndarray]:
    """Every colour sample photograph by name, as uint8 ``(H, W, 3)``."""
    import skimage.data  # the bench extra; imported here so the digits section runs without it

    bunch = load_sample_images()
    photos = {pathlib.Path(name).stem: image for name, image in zip(bunch.filenames, bunch.images, strict=True)}
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        photos["grace_hopper"] = np.asarray(Image.open(f).convert("RGB"))
    photos |= {name: getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS}
    photos["motorcycle_left"], photos["motorcycle_right"], _ = skimage.data.stereo_motorcycle()
    return photos


def scene(name: str) -> str:
    """The scene a photograph shows: the stereo pair's two views are one scene."""
    return name.removesuffix("_left").removesuffix("_right")


def folds(names: list[str], count: int) -> list[list[str]]:
    """The photographs held out by each of ``count`` folds: the sorted scenes dealt round-robin."""
    scenes = sorted({scene(n) for n in names})
    return [sorted(n for n in names if scene(n) in scenes[i::count]) for i in range(count)]


def random_patches(photos: list[np.ndarray], n: int, seed: int) -> np.ndarray:
    """``n`` random ``PATCH``-pixel crops, as many of each photograph (the first ones get the remainder),
    each randomly flipped and rotated by k x 90 degrees."""
    rng = np.random.default_rng(seed)
    crops = []
    for i, photo in enumerate(photos):
        count = n // len(photos) + (i < n % len(photos))
        ys = rng.integers(0, photo.shape[0] - PATCH + 1, count)
        xs = rng.integers(0, photo.shape[1] - PATCH + 1, count)
        crops += [photo[y : y + PATCH, x : x + PATCH] for y, x in zip(ys, xs, strict=True)]
    flips, turns = rng.random(len(crops)) < 0.5, rng.integers(0, 4, len(crops))
    return np.stack([np.rot90(c[:, ::-1] if f else c, k) for c, f, k in zip(crops, flips, turns, strict=True)]).astype(
        np.uint8
    )


def grid_patches(photo: np.ndarray, seed: int) -> np.ndarray:
    """Up to ``TEST_PATCHES`` crops of ``photo`` from its ``STRIDE``-pixel grid (a random choice
    without repeats when the grid has more), as [0, 1] floats."""
    rows = range(0, photo.shape[0] - PATCH + 1, STRIDE)
    cols = range(0, photo.shape[1] - PATCH + 1, STRIDE)
    corners = [(y, x) for y in rows for x in cols]
    if len(corners) > TEST_PATCHES:
        chosen = np.random.default_rng(seed).choice(len(corners), TEST_PATCHES, replace=False)
        corners = [corners[i] for i in sorted(chosen)]
    return np.stack([photo[y : y + PATCH, x : x + PATCH] for y, x in corners]).astype(np.float32) / 255.0


def prepare_fold(fold_dir: pathlib.Path, photos: list[np.ndarray], seed: int) -> str:
    """Writes the training patches as NPY and preprocesses them, unless an earlier run already did."""
    data_dir = fold_dir / "data"
    if not (data_dir / input_pipeline.TRANSFORM_DIR / "transform_fn").exists():
        fold_dir.mkdir(parents=True, exist_ok=True)
        np.save(fold_dir / "patches.npy", random_patches(photos, PATCHES, seed))
        run_preprocess(PreprocessConfig(input=str(fold_dir / "patches.npy"), output=str(data_dir), channels=3))
    return str(data_dir)


def pca_model(train_patches: np.ndarray) -> PCA:
    """PCA with ``LATENT_DIM`` components fitted on ``train_patches``."""
    return PCA(n_components=LATENT_DIM, random_state=0).fit(train_patches.reshape(len(train_patches), -1))


def pca_reconstruct(pca: PCA, test: np.ndarray) -> np.ndarray:
    """``test`` through ``pca``, clipped to [0, 1]."""
    projected = pca.inverse_transform(pca.transform(test.reshape(len(test), -1)))
    return np.clip(projected, 0.0, 1.0).reshape(test.shape)


def fold_row(work: pathlib.Path, fold: int, held_out: list[str], photos: dict[str, np.ndarray]) -> dict:
    """Trains ``conv`` on patches of every photograph but ``held_out`` and measures it and PCA on
    patches of ``held_out``."""
    fold_dir = work / f"fold-{fold}-{PATCHES}"
    trained_on = sorted(set(photos) - set(held_out))
    data_dir = prepare_fold(fold_dir, [photos[n] for n in trained_on], seed=fold)
    cfg = resolve_train_config(
        TrainConfig(
            data_dir=data_dir,
            model_dir=str(fold_dir / f"model-{EPOCHS}"),
            model=ModelConfig(KIND, LATENT_DIM),
            epochs=EPOCHS,
        )
    )
    started = time.time()
    result = train(cfg)
    seconds = time.time() - started
    served = tf.saved_model.load(result.saved_model)
    pca = pca_model(np.load(fold_dir / "patches.npy").astype(np.float32) / 255.0)
    per_photo, model_errors, pca_errors = {}, [], []
    for i, name in enumerate(held_out):
        test = grid_patches(photos[name], seed=i)
        model_mse = scores.per_image_mse(test, quality.serve(served, quality.to_png(test))["reconstruction"])
        pca_mse = scores.per_image_mse(test, pca_reconstruct(pca, test))
        per_photo[name] = {"patches": len(test), "mse": float(np.mean(model_mse)), "pca_mse": float(np.mean(pca_mse))}
        per_photo[name]["ratio"] = per_photo[name]["mse"] / per_photo[name]["pca_mse"]
        model_errors.append(model_mse)
        pca_errors.append(pca_mse)
    row = {
        "fold": fold,
        "test_photos": held_out,
        "train_photos": trained_on,
        "train_patches": PATCHES,
        "test_patches": sum(len(e) for e in model_errors),
        "kind": KIND,
        "loss": cfg.model.loss,
        "learning_rate": cfg.learning_rate,
        "batch_size": cfg.batch_size,
        "params": cfg.model.params,
        "epochs": EPOCHS,
        "train_seconds": seconds,
        "mse": float(np.mean([p["mse"] for p in per_photo.values()])),
        "psnr": float(np.mean(scores.psnr(np.concatenate(model_errors)))),
        "pca_mse": float(np.mean([p["pca_mse"] for p in per_photo.values()])),
        "pca_psnr": float(np.mean(scores.psnr(np.concatenate(pca_errors)))),
        "per_photo": per_photo,
    }
    row["ratio"] = row["mse"] / row["pca_mse"]
    log.info("%s", row)
    return row


def colour_section(work: pathlib.Path) -> dict:
    """The first ``RUN_FOLDS`` of the ``FOLDS`` folds by photograph, their mean, and the target."""
    photos = photographs()
    held_out = folds(list(photos), FOLDS)[:RUN_FOLDS]
    rows = [fold_row(work / "colour", i, names, photos) for i, names in enumerate(held_out)]
    mean = float(np.mean([r["ratio"] for r in rows]))
    worst = max(r["ratio"] for r in rows)
    return {
        "latent_dim": LATENT_DIM,
        "patch": PATCH,
        "folds": FOLDS,
        "rows": rows,
        "mean_ratio": mean,
        "target": {
            "target": f"{KIND} MSE / PCA-{LATENT_DIM} MSE on held-out photo patches, worst fold (mean {mean:.3f})",
            "value": worst,
            "goal": f"<= {TARGET_RATIO}",
            "met": worst <= TARGET_RATIO and mean <= TARGET_RATIO,
        },
    }


def colour_markdown(section: dict) -> str:
    """The colour section as a markdown table and its target."""
    rows = section["rows"]
    first = rows[0]
    photos = sorted({n for r in rows for n in r["test_photos"] + r["train_photos"]})
    lines = [
        f"Colour photographs: `{KIND}` and PCA at {section['latent_dim']}-D on {section['patch']}x{section['patch']} "
        f"RGB patches, {section['folds']}-fold by photograph over {len(photos)} sample photographs "
        f"({', '.join(photos)}); each fold trains on {first['train_patches']} random flipped/rotated patches "
        f"of the photographs it does not test on, for {first['epochs']} epochs (the kind's defaults: "
        f"{first['loss']}, learning rate {first['learning_rate']:g}, batch {first['batch_size']}, params "
        f"{first['params']}), and tests on up to {TEST_PATCHES} patches of each held-out photograph from its "
        f"{STRIDE}-pixel grid; MSE is the mean over photographs, PSNR over patches.",
        "",
        "| fold | test photos (conv / PCA per photo) | conv MSE | conv PSNR (dB) | PCA MSE | PCA PSNR (dB) "
        "| MSE / PCA | train (s) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        tested = ", ".join(f"{name} {p['ratio']:.2f}" for name, p in r["per_photo"].items())
        lines.append(
            f"| {r['fold']} | {tested} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['pca_mse']:.5f} | "
            f"{r['pca_psnr']:.2f} | {r['ratio']:.3f} | {r['train_seconds']:.0f} |"
        )
    lines.append(f"| mean | | | | | | {section['mean_ratio']:.3f} | |")
    t = section["target"]
    lines += ["", f"Target: {t['target']}: {t['value']:.3f} ({t['goal']}: {'met' if t['met'] else 'NOT met'})."]
    return "\n".join(lines) + "\n"
