"""Model quality: every autoencoder kind against PCA with the same code size, on held-out digits.

The built-in MNIST sample is preprocessed once with the real job (``run_preprocess``, kept under
``OUT/model_quality/data`` and reused by later runs). Every registered kind is then trained with
its defaults (``hourglass train --kind K``: only the kind and the code size are given) for
``EPOCHS`` epochs on the train split, at 2-D and 32-D codes, and its export is evaluated on the
eval split through ``serving_default`` on PNG bytes, as inference would run it:

* reconstruction MSE, and its ratio to PCA's with as many components, fitted on the same train
  split (PCA's reconstructions clipped to [0, 1] like the models' outputs);
* k-NN accuracy (k = ``NEIGHBOURS``) of the eval codes' labels, the classifier fitted on the train
  codes, against the same on PCA's codes;
* the fraction of exact zeros in the eval codes (what ``sparse``'s penalty buys);
* for models trained with noise, PSNR of the noisy eval images and of the ``denoised`` output
  against the clean ones, at gaussian sigma ``NOISE`` (PCA's projection of the noisy images as the
  baseline).

The colour section (``benchmarks/model_quality_colour.py``) measures ``conv`` against PCA on patches
of colour photographs. ``BENCH_MODEL_QUALITY_SECTIONS`` (comma-separated, default all of
``SECTIONS``) picks the sections to run; the figures of the others are kept from the previous
result file. Writes ``OUT/model_quality.json`` (one key per section) and ``OUT/model_quality.md``
and checks the issue's targets.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import time

import numpy as np
import tensorflow as tf
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier

import models.kinds  # noqa: F401  (registers every kind)
from models import input_pipeline
from models.config import ModelConfig, TrainConfig
from models.model_info import ModelInfo
from models.registry import known_kinds, resolve_train_config
from models.training import train
from pipelines.config import BUILTIN_MNIST, PreprocessConfig
from pipelines.inputs.images import encode_png
from pipelines.preprocess.job import run_preprocess
from transforms import features

log = logging.getLogger(__name__)

NAME = "model_quality"
SECTIONS = ("digits", "colour")
EPOCHS = 30
LATENT_DIMS = tuple(int(d) for d in os.environ.get("BENCH_MODEL_QUALITY_LATENT_DIMS", "2,32").split(","))
NEIGHBOURS = 5
NOISE = 0.5
_BATCH = 512


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of the preprocess output, as numpy: pixels ``(n, H, W, C)`` in [0, 1], labels, PNG bytes."""

    pixels: np.ndarray
    labels: np.ndarray
    images: np.ndarray


def main(out_dir: pathlib.Path) -> dict:
    from benchmarks import model_quality_colour  # imported here: it imports this module

    work = pathlib.Path(out_dir) / NAME
    result_json = pathlib.Path(out_dir, f"{NAME}.json")
    figures = json.loads(result_json.read_text()) if result_json.exists() else {}
    figures = {name: figures[name] for name in SECTIONS if name in figures}  # an older layout is dropped
    for name in selected_sections():
        figures[name] = digits_section(work) if name == "digits" else model_quality_colour.colour_section(work)
    write_results(pathlib.Path(out_dir), figures)
    return figures


def write_results(out_dir: pathlib.Path, figures: dict) -> None:
    """``OUT/model_quality.json`` with every section's figures, and ``OUT/model_quality.md`` with their tables."""
    from benchmarks import model_quality_colour  # imported here: it imports this module

    (out_dir / f"{NAME}.json").write_text(json.dumps(figures, indent=2))
    parts = [markdown(figures["digits"])] if "digits" in figures else []
    if "colour" in figures:
        parts.append(model_quality_colour.colour_markdown(figures["colour"]))
    (out_dir / f"{NAME}.md").write_text("\n".join(parts))


def selected_sections() -> list[str]:
    """The sections named by ``BENCH_MODEL_QUALITY_SECTIONS`` (default all), checked."""
    names = [n for n in os.environ.get("BENCH_MODEL_QUALITY_SECTIONS", ",".join(SECTIONS)).split(",") if n]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise ValueError(f"BENCH_MODEL_QUALITY_SECTIONS: unknown section(s) {unknown}; known: {', '.join(SECTIONS)}")
    return names


def digits_section(work: pathlib.Path) -> dict:
    """Every kind at every ``LATENT_DIMS`` on the built-in digits, PCA rows, and the targets."""
    data_dir = prepare_data(work / "data")
    train_split, eval_split = load_split(data_dir, "train"), load_split(data_dir, "eval")
    noisy = add_noise(eval_split.pixels, NOISE, seed=0)
    rows = []
    for latent_dim in LATENT_DIMS:
        rows.append(pca_row(latent_dim, train_split, eval_split, noisy))
        for kind in known_kinds():
            rows.append(model_row(kind, latent_dim, data_dir, work / "models", train_split, eval_split, noisy))
    return {
        "epochs": EPOCHS,
        "train_examples": len(train_split.labels),
        "eval_examples": len(eval_split.labels),
        "neighbours": NEIGHBOURS,
        "noise_sigma": NOISE,
        "rows": rows,
        "targets": check_targets(rows),
    }


def prepare_data(data_dir: pathlib.Path) -> str:
    """Preprocesses the built-in sample into ``data_dir`` unless an earlier run already did."""
    if not (data_dir / input_pipeline.TRANSFORM_DIR / "transform_fn").exists():
        run_preprocess(PreprocessConfig(input=BUILTIN_MNIST, output=str(data_dir)))
    return str(data_dir)


def load_split(data_dir: str, split: str) -> Split:
    """Reads a split's transformed pixels and labels, and re-encodes the pixels as PNG for serving."""
    tft_output = input_pipeline.load_transform_output(data_dir)
    files = input_pipeline.split_files(data_dir, split)
    pixels, labels = [], []
    for batch in input_pipeline.make_dataset(files, tft_output, _BATCH, shuffle=False):
        pixels.append(batch[features.PIXELS].numpy())
        labels.append(batch[features.LABEL_INDEX].numpy())
    pixels = np.concatenate(pixels)
    return Split(pixels, np.concatenate(labels), to_png(pixels))


def to_png(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] float images -> PNG bytes (8-bit, as the raw images were)."""
    return np.array([encode_png(np.round(p * 255).astype(np.uint8)) for p in pixels], dtype=object)


def add_noise(pixels: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Gaussian noise of ``sigma``, clipped to [0, 1] (what ``--noise gaussian:SIGMA`` does in training)."""
    noisy = pixels + np.random.default_rng(seed).normal(0.0, sigma, pixels.shape).astype(np.float32)
    return np.round(np.clip(noisy, 0.0, 1.0) * 255) / 255  # as the PNG the model is served will hold it


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.square(a - b)))


def psnr(images: np.ndarray, clean: np.ndarray) -> float:
    """Mean over images of ``10 log10(1 / MSE)`` (pixels in [0, 1])."""
    per_image = np.mean(np.square(images - clean).reshape(len(clean), -1), axis=1)
    return float(np.mean(10 * np.log10(1.0 / np.maximum(per_image, 1e-12))))


def knn_accuracy(train_codes: np.ndarray, train_labels, eval_codes: np.ndarray, eval_labels) -> float:
    classifier = KNeighborsClassifier(n_neighbors=NEIGHBOURS).fit(train_codes, train_labels)
    return float(classifier.score(eval_codes, eval_labels))


def pca_row(latent_dim: int, train_split: Split, eval_split: Split, noisy: np.ndarray) -> dict:
    """The baseline: PCA with ``latent_dim`` components fitted on the train split."""
    flat = len(eval_split.pixels), -1
    pca = PCA(n_components=latent_dim, random_state=0).fit(train_split.pixels.reshape(len(train_split.pixels), -1))

    def reconstruct(pixels):
        projected = pca.inverse_transform(pca.transform(pixels.reshape(flat)))
        return np.clip(projected, 0.0, 1.0).reshape(pixels.shape)

    codes = pca.transform(eval_split.pixels.reshape(flat))
    train_codes = pca.transform(train_split.pixels.reshape(len(train_split.pixels), -1))
    return {
        "kind": "pca",
        "latent_dim": latent_dim,
        "mse": mse(reconstruct(eval_split.pixels), eval_split.pixels),
        "knn_accuracy": knn_accuracy(train_codes, train_split.labels, codes, eval_split.labels),
        "psnr_noisy": psnr(noisy, eval_split.pixels),
        "psnr_denoised": psnr(reconstruct(noisy), eval_split.pixels),
    }


def model_row(
    kind: str, latent_dim: int, data_dir: str, models_dir: pathlib.Path, train_split: Split, eval_split: Split, noisy
) -> dict:
    """Trains ``kind`` with its defaults through the real training path and evaluates its export."""
    cfg = resolve_train_config(
        TrainConfig(
            data_dir=data_dir,
            model_dir=str(models_dir / f"{kind}-{latent_dim}"),
            model=ModelConfig(kind, latent_dim),
            epochs=EPOCHS,
        )
    )
    started = time.time()
    result = train(cfg)
    seconds = time.time() - started
    served = tf.saved_model.load(result.saved_model)
    info = ModelInfo.read(cfg.model_dir)
    outputs = serve(served, eval_split.images)
    row = {
        "kind": kind,
        "latent_dim": latent_dim,
        "loss": cfg.model.loss,
        "learning_rate": cfg.learning_rate,
        "params": cfg.model.params,
        "noise": info.noise,
        "train_seconds": seconds,
        "mse": mse(outputs["reconstruction"], eval_split.pixels),
        "zero_code_fraction": float(np.mean(outputs["latent"] == 0.0)),
        "knn_accuracy": knn_accuracy(
            serve(served, train_split.images)["latent"], train_split.labels, outputs["latent"], eval_split.labels
        ),
    }
    if info.denoising:
        row["psnr_noisy"] = psnr(noisy, eval_split.pixels)
        row["psnr_denoised"] = psnr(serve(served, to_png(noisy))["denoised"], eval_split.pixels)
    log.info("%s", row)
    return row


def serve(served, images: np.ndarray) -> dict[str, np.ndarray]:
    """Runs ``serving_default`` over ``images`` (PNG bytes) in batches; concatenates each output."""
    outputs: dict[str, list] = {}
    for start in range(0, len(images), _BATCH):
        batch = served.signatures["serving_default"](images=tf.constant(list(images[start : start + _BATCH])))
        for name, value in batch.items():
            outputs.setdefault(name, []).append(value.numpy())
    return {name: np.concatenate(values) for name, values in outputs.items()}


def check_targets(rows: list[dict]) -> list[dict]:
    """The issue's targets on the eval split that the measured code sizes allow, each with its value
    and whether it is met."""
    by = {(r["kind"], r["latent_dim"]): r for r in rows}
    dims = {r["latent_dim"] for r in rows}
    targets = []
    if 32 in dims:
        denoising = by[("denoising", 32)]
        targets += [
            ("conv MSE / PCA-32 MSE at 32-D", by[("conv", 32)]["mse"] / by[("pca", 32)]["mse"], "<=", 0.4),
            ("denoising PSNR gain (dB) at 32-D", denoising["psnr_denoised"] - denoising["psnr_noisy"], ">=", 10.0),
        ]
    if 2 in dims:
        best = max(by[(k, 2)]["knn_accuracy"] for k in ("deep", "vae"))
        targets.append(("best of deep, vae k-NN accuracy at 2-D", best, ">=", 0.7))
    targets += [
        (f"linear MSE / PCA-{k} MSE", by[("linear", k)]["mse"] / by[("pca", k)]["mse"], "<=", 1.03)
        for k in sorted(dims)
    ]
    return [
        {"target": name, "value": value, "goal": f"{op} {goal}", "met": value <= goal if op == "<=" else value >= goal}
        for name, value, op, goal in targets
    ]


def markdown(figures: dict) -> str:
    """The figures as a markdown table, then the targets."""
    pca = {r["latent_dim"]: r["mse"] for r in figures["rows"] if r["kind"] == "pca"}
    lines = [
        f"Model quality on the built-in MNIST sample: {figures['train_examples']} train / "
        f"{figures['eval_examples']} eval digits, {figures['epochs']} epochs, each kind with its defaults; "
        f"k-NN with k={figures['neighbours']}; PSNR (dB) at gaussian sigma {figures['noise_sigma']}.",
        "",
        "| kind | code | eval MSE | MSE / PCA | k-NN acc. | zero codes | PSNR noisy | PSNR denoised | train (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in figures["rows"]:
        cells = [
            r["kind"],
            str(r["latent_dim"]),
            f"{r['mse']:.5f}",
            f"{r['mse'] / pca[r['latent_dim']]:.3f}",
            f"{r['knn_accuracy']:.3f}",
            f"{r['zero_code_fraction']:.2f}" if "zero_code_fraction" in r else "",
            *(f"{r[key]:.2f}" if key in r else "" for key in ("psnr_noisy", "psnr_denoised")),
            f"{r['train_seconds']:.0f}" if "train_seconds" in r else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| target | measured | goal | met |", "|---|---:|---|---|"]
    lines += [
        f"| {t['target']} | {t['value']:.3f} | {t['goal']} | {'yes' if t['met'] else 'NO'} |"
        for t in figures["targets"]
    ]
    return "\n".join(lines) + "\n"
