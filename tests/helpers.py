"""Helpers the tests share: paths, Pillow encoders, serving an export, reading dead letters."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The console script of this environment (what a user runs).
HOURGLASS = os.path.join(os.path.dirname(sys.executable), "hourglass")


def encode_image(image: Image.Image, fmt: str, **kwargs) -> bytes:
    """``image`` encoded by Pillow as ``fmt`` (e.g. ``JPEG``, ``WEBP``; ``kwargs`` go to ``save``)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def serve(saved_model: str, images: list[bytes], signature: str = "serving_default") -> dict[str, np.ndarray]:
    """Loads a SavedModel and calls ``signature`` on encoded images; returns numpy outputs."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model))
    outputs = loaded.signatures[signature](images=tf.constant(images))
    return {name: value.numpy() for name, value in outputs.items()}


def read_rejected(folder) -> list[dict]:
    """Every dead letter in ``folder/*.jsonl``."""
    return [json.loads(line) for path in sorted(Path(folder).glob("*.jsonl")) for line in path.read_text().splitlines()]


def readme_block(language: str) -> str:
    """The README's first fenced block of ``language``."""
    return README.read_text().split(f"```{language}\n", 1)[1].split("```", 1)[0]


def fail_rename_into(monkeypatch, dst) -> None:
    """Makes ``tf.io.gfile.rename`` fail when a staging folder's content is moved to ``dst`` (a fault
    injected in a publication's final rename); every other rename, the restoring ones included, works."""
    import tensorflow as tf

    rename = tf.io.gfile.rename

    def failing(src, target, overwrite=False):
        if ".staging-" in src and target == str(dst):
            raise OSError(f"injected: renaming {src} failed")
        rename(src, target, overwrite)

    monkeypatch.setattr(tf.io.gfile, "rename", failing)
