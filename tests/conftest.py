"""Shared fixtures: tiny generated images with known pixels, and one preprocess + train run
shared by the tests that need a real preprocess output or a real exported model."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from pipelines.images import encode_png

HEIGHT, WIDTH = 12, 10
CLASSES = ("cat", "dog", "emu")
PER_CLASS = 8


def known_pixels(class_index: int, index: int) -> np.ndarray:
    """A deterministic uint8 HxW image: a class-specific gradient plus a per-image offset."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    return ((rows * 7 + cols * (3 + class_index) + index * 11 + class_index * 60) % 256).astype(np.uint8)


def write_image_tree(root) -> dict[str, np.ndarray]:
    """Writes CLASSES x PER_CLASS PNGs under ``root/<class>/<nnn>.png``; returns id -> pixels."""
    images = {}
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            pixels = known_pixels(c, i)
            (root / name / f"{i:03d}.png").write_bytes(encode_png(pixels))
            images[f"{name}/{i:03d}.png"] = pixels
    return images


@pytest.fixture(scope="session")
def image_tree(tmp_path_factory):
    """(root, {id: uint8 pixels}) of a clean labelled PNG tree."""
    root = tmp_path_factory.mktemp("images")
    return root, write_image_tree(root)


@pytest.fixture(scope="session")
def preprocessed(image_tree, tmp_path_factory):
    """A real preprocess output of ``image_tree`` (DirectRunner)."""
    from pipelines.config import PreprocessConfig
    from pipelines.preprocess import run_preprocess

    root, _ = image_tree
    out = tmp_path_factory.mktemp("data")
    cfg = PreprocessConfig(input=str(root), output=str(out), eval_percent=25)
    return run_preprocess(cfg)


@pytest.fixture(scope="session")
def trained(preprocessed, tmp_path_factory):
    """A dense model trained a few epochs on ``preprocessed`` and exported."""
    from models.config import ModelConfig, TrainConfig
    from models.training import train

    model_dir = tmp_path_factory.mktemp("model")
    cfg = TrainConfig(
        data_dir=preprocessed.output,
        model_dir=str(model_dir),
        model=ModelConfig("dense", latent_dim=4),
        epochs=10,
        batch_size=8,
        learning_rate=0.01,
    )
    return cfg, train(cfg)
