"""Shared fixtures: tiny generated images with known pixels, and one preprocess + train run
shared by the tests that need a real preprocess output or a real exported model."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import models.kinds  # noqa: F401  (registers every kind, for the tests that list or build them)
from pipelines.inputs.images import encode_png

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
    from pipelines.preprocess.job import run_preprocess

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


# --- container inputs: the same CONTAINER_COUNT images in every format ----------------------------------

CONTAINER_COUNT = 10
SIDE = 6  # square, so that the CSV layout (flattened rows) fits too


def container_pixels() -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, SIDE, SIDE), int labels (N,)) with known, distinct pixels."""
    images = (np.arange(CONTAINER_COUNT * SIDE * SIDE).reshape(CONTAINER_COUNT, SIDE, SIDE) * 7 % 256).astype(np.uint8)
    return images, np.arange(CONTAINER_COUNT) % 3


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (uint8) as MNIST distributes them."""
    import struct

    return (
        bytes([0, 0, 0x08, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.uint8).tobytes()
    )


def write_tfrecord_examples(path, images, labels, image_key="image", label_key="label") -> None:
    import tensorflow as tf

    from pipelines.inputs.formats.tfrecord import write_tfrecord

    with open(path, "wb") as f:
        for image, label in zip(images, labels, strict=True):
            feature = {image_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encode_png(image)]))}
            if label_key:
                feature[label_key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))
            write_tfrecord(f, tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


@pytest.fixture(scope="session")
def containers(tmp_path_factory):
    """{format: path} of one input per container format, all holding ``container_pixels()``."""
    import gzip

    images, labels = container_pixels()
    root = tmp_path_factory.mktemp("containers")
    paths = {}
    (root / "idx").mkdir()
    (root / "idx" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (root / "idx" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    paths["idx"] = root / "idx"
    (root / "npy").mkdir()
    np.save(root / "npy" / "x.npy", images)
    np.save(root / "npy" / "y.npy", labels)
    paths["npy"] = root / "npy"
    np.savez_compressed(root / "digits.npz", images=images, labels=labels)
    paths["npz"] = root / "digits.npz"
    rows = [",".join(map(str, image.ravel())) + f",{label}" for image, label in zip(images, labels, strict=True)]
    (root / "sample.csv.gz").write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    paths["csv"] = root / "sample.csv.gz"
    write_tfrecord_examples(root / "images.tfrecord", images, labels)
    paths["tfrecord"] = root / "images.tfrecord"
    return paths
