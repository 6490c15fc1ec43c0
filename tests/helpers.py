"""Helpers the tests share: paths, Pillow encoders, serving an export, reading dead letters."""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import zlib
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


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def split_idat_png(pixels: np.ndarray | None = None) -> bytes:
    """A PNG of ``pixels`` (8x8 grey by default) whose image data is split in two IDAT chunks with a
    tEXt chunk between them: every CRC is valid and the data inflates to the right size (a structural
    check passes it), but PNG wants consecutive IDATs and TensorFlow's decoder refuses it."""
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) if pixels is None else pixels
    data = encode_image(Image.fromarray(pixels), "PNG")
    position, out = 8, data[:8]
    while position < len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        body = data[position + 8 : position + 8 + length]
        if kind == b"IDAT":
            out += png_chunk(b"IDAT", body[:5]) + png_chunk(b"tEXt", b"note\x00split") + png_chunk(b"IDAT", body[5:])
        else:
            out += png_chunk(kind, body)
        position += 12 + length
    return out


def flipped_jpeg() -> bytes:
    """A 32x32 RGB JPEG with one byte set to 0xFF: Pillow decodes it, TensorFlow's decoder refuses it."""
    pixels = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    data = bytearray(encode_image(Image.fromarray(pixels), "JPEG"))
    data[629] = 0xFF
    Image.open(io.BytesIO(bytes(data))).load()  # Pillow alone passes it
    return bytes(data)


def oriented_jpeg(pixels: np.ndarray, orientation: int) -> bytes:
    """``pixels`` (uint8 RGB) as a JPEG tagged with the EXIF ``orientation`` (1..8)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode_image(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)
