"""Restoration (``--corrupt``): each task's model against its classical baseline, on held-out images.

Photographs: scikit-learn's two sample photographs (``sklearn.datasets.load_sample_images``:
``china.jpg``, ``flower.jpg``) and matplotlib's ``grace_hopper.jpg`` (``mpl-data/sample_data``), all
shipped inside the packages: no download. The models are trained on ``PATCH`` x ``PATCH`` RGB
patches of ``TRAIN_PHOTOS`` (every ``TRAIN_STRIDE`` pixels) with their mirror images and quarter
turns (:func:`augmented`: four times the detail to learn from), written as PNGs and preprocessed
with the real job, and measured on the patches of ``TEST_PHOTO`` (every ``TEST_STRIDE`` pixels), which they
never saw (split by photograph; a portrait with detail and colour: ``flower.jpg`` is so smooth that
bicubic upscaling of it reaches 44 dB, so it is trained on, not tested):

* recolouring (``--corrupt grey``) against grey replicated to 3 channels;
* upscaling x2 (``--corrupt downscale:2``) against bicubic upscaling of the half-size image;
* inpainting (``--corrupt blocks:0.25``) against the holes filled with the image's mean.

Digits: denoising (``--kind denoising``, its default ``gaussian:0.5``) on the built-in MNIST
sample, measured on its eval split, against the noisy input.

Each model is trained with ``models.training.train`` (``EPOCHS`` epochs; the photo tasks with the
``mse`` loss, which PSNR measures) and measured as ``hourglass evaluate`` measures it
(``pipelines.evaluate.restoration.restore``): the export is sent what users have as 8-bit PNGs (the
grey image, the half-size image, the corrupted image) and its ``restored`` output is scored by PSNR
against the clean image. Writes ``OUT/restoration.json`` and ``OUT/restoration.md``; the work
(patches, data, models) goes to ``OUT/restoration-work/`` and is reused by later runs (delete it to
start over). ``BENCH_RESTORATION_TASKS`` (task names, comma-separated, e.g. ``upscale x2,denoise``)
runs only those tasks and keeps the other rows of the earlier ``OUT/restoration.json``; each row
says when it was measured.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import time

import matplotlib
import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

import models.kinds  # noqa: F401  (registers every kind)
from models.config import ModelConfig, TrainConfig
from models.registry import resolve_model_config
from models.training import train
from pipelines.config import BUILTIN_MNIST, PreprocessConfig
from pipelines.evaluate.data import Examples, read_split
from pipelines.evaluate.exported import ExportedModel
from pipelines.evaluate.restoration import restore
from pipelines.inputs.images import encode_png
from pipelines.preprocess.job import run_preprocess
from transforms.layout import TRANSFORM_DIR

log = logging.getLogger(__name__)

NAME = "restoration"
PATCH = 32
TRAIN_STRIDE = 12
TEST_STRIDE = 16
TRAIN_PHOTOS, TEST_PHOTO = ("china.jpg", "flower.jpg"), "grace_hopper.jpg"
DIGITS_EVAL = 2000


@dataclasses.dataclass(frozen=True)
class Task:
    """One restoration task: its data (``photos`` or ``digits``), corruption, model and target gain (dB)."""

    name: str
    data: str
    corrupt: str | None
    kind: str
    latent_dim: int
    epochs: int
    target_db: float | None
    loss: str | None = None  # None: the kind's


TASKS = (
    Task("recolour", "photos", "grey", "conv", 64, 10, 3.0, "mse"),
    # Upscaling: 5 epochs of the four views of each patch, 2x the steps of the 10 epochs of the patches alone.
    Task("upscale x2", "photos", "downscale:2", "conv", 64, 5, 1.0, "mse"),
    Task("inpaint", "photos", "blocks:0.25", "conv", 64, 10, None, "mse"),
    Task("denoise", "digits", None, "denoising", 32, 20, 10.0),  # the kind's gaussian:0.5
)


def main(out_dir: pathlib.Path) -> dict:
    work = pathlib.Path(out_dir) / f"{NAME}-work"
    chosen = [name for name in os.environ.get("BENCH_RESTORATION_TASKS", "").split(",") if name]
    unknown = sorted(set(chosen) - {task.name for task in TASKS})
    if unknown:
        raise SystemExit(f"BENCH_RESTORATION_TASKS: unknown task(s) {unknown}; tasks: {[t.name for t in TASKS]}")
    kept = earlier_rows(pathlib.Path(out_dir, f"{NAME}.json")) if chosen else {}
    tasks = [task for task in TASKS if not chosen or task.name in chosen]
    data = {
        source: prepare(work / source) for source, prepare in PREPARE.items() if any(t.data == source for t in tasks)
    }
    measured = {task.name: run_task(task, data[task.data], work / "models") for task in tasks}
    by_task = {**kept, **measured}
    rows = [by_task[task.name] for task in TASKS if task.name in by_task]
    figures = {
        "photos": {
            "train": f"{' and '.join(TRAIN_PHOTOS)}: {PATCH}x{PATCH} patches every {TRAIN_STRIDE} px, "
            "with their mirror images and quarter turns",
            "test": f"{TEST_PHOTO}: {PATCH}x{PATCH} patches every {TEST_STRIDE} px",
            "test_patches": len(patches(TEST_PHOTO, TEST_STRIDE)),
        },
        "digits": {"test": f"the built-in sample's eval split (first {DIGITS_EVAL})"},
        "rows": rows,
    }
    pathlib.Path(out_dir, f"{NAME}.json").write_text(json.dumps(figures, indent=2))
    pathlib.Path(out_dir, f"{NAME}.md").write_text(markdown(figures))
    return figures


def earlier_rows(path: pathlib.Path) -> dict[str, dict]:
    """The rows of an earlier run's results, by task (kept for the tasks a run leaves out)."""
    return {row["task"]: row for row in json.loads(path.read_text())["rows"]} if path.exists() else {}


def photograph(name: str) -> np.ndarray:
    """uint8 ``(H, W, 3)``: one of scikit-learn's sample photographs, or matplotlib's ``grace_hopper.jpg``."""
    if name == "grace_hopper.jpg":
        path = pathlib.Path(matplotlib.get_data_path(), "sample_data", name)
        return np.asarray(Image.open(path).convert("RGB"))
    dataset = load_sample_images()
    (image,) = [im for path, im in zip(dataset.filenames, dataset.images, strict=True) if path.endswith(name)]
    return image


def augmented(images: np.ndarray) -> np.ndarray:
    """``images`` ``(n, H, W, C)``, then their mirror images and their quarter turns either way: 4n
    images, four views of the same photographs' detail for the restorers to learn from."""
    return np.concatenate([images, images[:, :, ::-1], np.rot90(images, 1, (1, 2)), np.rot90(images, 3, (1, 2))])


def patches(photo: str, stride: int) -> np.ndarray:
    """uint8 ``(n, PATCH, PATCH, 3)`` patches of :func:`photograph` ``photo``."""
    image = photograph(photo)
    height, width = image.shape[:2]
    return np.stack(
        [
            image[y : y + PATCH, x : x + PATCH]
            for y in range(0, height - PATCH + 1, stride)
            for x in range(0, width - PATCH + 1, stride)
        ]
    )


def prepare_photos(folder: pathlib.Path) -> tuple[str, Examples]:
    """(the preprocess output of the training photographs' patches, the test photograph's patches)."""
    data_dir = folder / "data"
    if not (data_dir / TRANSFORM_DIR / "transform_fn").exists():
        images = folder / "patches"
        images.mkdir(parents=True, exist_ok=True)
        train = augmented(np.concatenate([patches(photo, TRAIN_STRIDE) for photo in TRAIN_PHOTOS]))
        for i, patch in enumerate(train):
            (images / f"{i:05d}.png").write_bytes(encode_png(patch))
        run_preprocess(PreprocessConfig(input=str(images), output=str(data_dir)))
    test = patches(TEST_PHOTO, TEST_STRIDE)
    ids = [f"{TEST_PHOTO}/{i}" for i in range(len(test))]
    return str(data_dir), Examples(ids, [""] * len(test), test.astype(np.float32) / 255, [encode_png(p) for p in test])


def prepare_digits(folder: pathlib.Path) -> tuple[str, Examples]:
    """(the built-in sample's preprocess output, its eval split)."""
    data_dir = folder / "data"
    if not (data_dir / TRANSFORM_DIR / "transform_fn").exists():
        run_preprocess(PreprocessConfig(input=BUILTIN_MNIST, output=str(data_dir)))
    return str(data_dir), read_split(str(data_dir), "eval", DIGITS_EVAL)


PREPARE = {"photos": prepare_photos, "digits": prepare_digits}  # each task's data, by its ``data``


def run_task(task: Task, data: tuple[str, Examples], models_dir: pathlib.Path) -> dict:
    """Trains the task's model (unless an earlier run did) and scores its restorations."""
    data_dir, test = data
    model_dir = models_dir / task.name.replace(" ", "-")
    model = ModelConfig(task.kind, task.latent_dim, corrupt=task.corrupt, loss=task.loss)
    started = time.time()
    result = train(TrainConfig(data_dir=data_dir, model_dir=str(model_dir), model=model, epochs=task.epochs))
    seconds = time.time() - started
    scored = restore(ExportedModel(str(model_dir)), test, seed=0)
    row = {
        "task": task.name,
        "corruption": scored.corruption,
        "kind": task.kind,
        "loss": resolve_model_config(model).loss,
        "latent_dim": task.latent_dim,
        "epochs": result.epochs,
        "test_images": len(test),
        "baseline": scored.baseline,
        "psnr_input": float(np.mean(scored.psnr_corrupted)),
        "psnr_baseline": float(np.mean(scored.psnr_baseline)),
        "psnr_restored": float(np.mean(scored.psnr_restored)),
        "train_seconds": None if result.already_trained else round(seconds, 1),
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "target_db": task.target_db,
    }
    row["gain_db"] = row["psnr_restored"] - row["psnr_baseline"]
    row["met"] = None if task.target_db is None else row["gain_db"] >= task.target_db
    log.info(
        "%s: %.2f dB restored vs %.2f dB %s", task.name, row["psnr_restored"], row["psnr_baseline"], row["baseline"]
    )
    return row


def markdown(figures: dict) -> str:
    lines = [
        "# Restoration against the classical baselines",
        "",
        f"Photographs: trained on {figures['photos']['train']}, measured on {figures['photos']['test']} "
        f"({figures['photos']['test_patches']} patches). Digits: measured on {figures['digits']['test']}. "
        "Mean PSNR (dB) against the clean images; the model is sent what users have (8-bit PNGs). Rows "
        "measured before 2026-12-08 were trained on the patches alone (no mirror images or turns).",
        "",
        "| task | corruption | model | input | baseline | baseline PSNR | restored PSNR | gain | target | met "
        "| measured |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in figures["rows"]:
        target = "" if r["target_db"] is None else f">= +{r['target_db']:g}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "no")
        lines.append(
            f"| {r['task']} | {r['corruption']} | {r['kind']} {r['latent_dim']}-D, {r['loss']}, {r['epochs']} epochs "
            f"| {r['psnr_input']:.2f} | {r['baseline']} | {r['psnr_baseline']:.2f} | {r['psnr_restored']:.2f} "
            f"| {r['gain_db']:+.2f} | {target} | {met} | {r.get('measured', 'before 2026-12-08')} |"
        )
    return "\n".join(lines) + "\n"
