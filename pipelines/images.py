"""Pillow helpers shared by readers and validation: inspecting and encoding images.

TensorFlow's decoder (used in the transform graph) reads PNG, JPEG, BMP and GIF; every image we
pass on is in one of those, so formats Pillow reads but TensorFlow does not are re-encoded as PNG.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Formats and modes tf.io.decode_image reads as they are.
TF_FORMATS = frozenset({"PNG", "JPEG", "BMP", "GIF"})
TF_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})
COLOR_MODES = frozenset({"RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV"})


def encode_png(pixels: np.ndarray) -> bytes:
    """Encodes uint8 pixels ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3|4)`` as PNG bytes."""
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png takes uint8 pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def open_image(data: bytes) -> Image.Image:
    """Opens encoded bytes lazily (header only); raises PIL's errors for non-images."""
    return Image.open(io.BytesIO(data))


def is_color(mode: str) -> bool:
    return mode in COLOR_MODES


# Leading bytes of the formats Pillow reads that we expect in image datasets.
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def has_image_signature(data: bytes) -> bool:
    """True when ``data`` starts like a PNG, JPEG, GIF, BMP, TIFF or WebP file."""
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
