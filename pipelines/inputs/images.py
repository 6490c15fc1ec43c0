"""Pillow and numpy helpers shared by readers and validation: inspecting and encoding images.

TensorFlow's decoder (used in the transform graph) reads every PNG and baseline JPEG, so those pass
on as they are; everything else Pillow reads (BMP, GIF's first frame, TIFF, WebP, CMYK JPEG, ...)
is re-encoded losslessly as PNG by :func:`to_tf_readable`. Arrays (IDX, NPY, NPZ, CSV rows) become
PNG through :func:`array_to_png`: 8-bit when the data is 8-bit, 16-bit otherwise.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

COLOR_MODES = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"})
# JPEG modes TensorFlow's decoder reads (it cannot read CMYK/YCCK JPEGs).
_TF_JPEG_MODES = frozenset({"L", "RGB"})
# Pillow mode -> the mode an image is converted to before re-encoding it as PNG (None: keep it).
_PNG_MODES = {
    "1": "L",
    "L": None,
    "LA": None,
    "La": "LA",
    "P": None,
    "PA": "RGBA",
    "RGB": None,
    "RGBA": None,
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PixelError(ValueError):
    """An array or image that cannot become a valid image; ``reason`` is the dead-letter code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def encode_png(pixels: np.ndarray) -> bytes:
    """Encodes uint8 or uint16 pixels ``(H, W)`` or ``(H, W, 1|2|3|4)`` as PNG bytes (lossless)."""
    array = np.asarray(pixels)
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"encode_png takes uint8 or uint16 pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise ValueError(f"encode_png takes (H, W) or (H, W, 1|2|3|4) pixels, got shape {array.shape}")
    if array.dtype == np.uint16:
        return _encode_png16(array)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _encode_png16(array: np.ndarray) -> bytes:
    """16-bit PNG writer (Pillow writes 16-bit grey only): colour type from the channel count."""
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = np.ascontiguousarray(array, dtype=">u2").view(np.uint8).reshape(height, width * channels * 2)
    raw = np.hstack([np.zeros((height, 1), np.uint8), rows]).tobytes()  # filter byte 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")


def array_to_png(array: np.ndarray, pixel_max: float | None = None) -> bytes:
    """One image of an array container -> PNG bytes, mapping ``[0, pixel_max]`` to black..white.

    ``pixel_max`` defaults by dtype: 65535 for uint16, 1.0 for floats, 255 otherwise. 8-bit data
    (uint8, or integers with ``pixel_max`` 255) is written exactly as 8-bit PNG; anything else as
    16-bit PNG (integers 0..255 scaled to 16 bits stay exact: v * 257).

    Raises:
      PixelError: ``non_finite_pixels`` (NaN or inf) or ``pixel_out_of_range``.
    """
    array = np.asarray(array)
    if pixel_max is None:
        pixel_max = 65535.0 if array.dtype == np.uint16 else 1.0 if array.dtype.kind == "f" else 255.0
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise PixelError("non_finite_pixels", f"{int(np.size(array) - np.isfinite(array).sum())} pixels are NaN or inf")
    if array.dtype.kind == "b":
        array = array.astype(np.uint8) * 255
    low, high = array.min(), array.max()
    if low < 0 or high > pixel_max:
        raise PixelError(
            "pixel_out_of_range",
            f"pixel values span [{low}, {high}], outside [0, {pixel_max:g}]; pass --pixel-max to set the white level",
        )
    if array.dtype.kind in "iu" and pixel_max == 255:
        return encode_png(array.astype(np.uint8))
    if array.dtype == np.uint16 and pixel_max == 65535:
        return encode_png(array)
    return encode_png(np.rint(array.astype(np.float64) * (65535.0 / pixel_max)).astype(np.uint16))


# PNG colour type -> (channels, allowed bit depths).
_PNG_TYPES = {0: (1, (1, 2, 4, 8, 16)), 2: (3, (8, 16)), 3: (1, (1, 2, 4, 8)), 4: (2, (8, 16)), 6: (4, (8, 16))}


def check_png(data: bytes, max_pixels: int) -> tuple[int, int, bool] | None:
    """Proves a plain PNG whole without Pillow (the common case, about 5x faster): every chunk's CRC,
    and the image data inflates to exactly the expected rows, each with a valid filter byte.

    Returns:
      ``(height, width, has_colour)``, or None when the PNG uses something this check leaves to
      Pillow (interlacing, unknown critical chunks, unusual headers).

    Raises:
      PixelError: ``corrupt_image`` (truncated, bad CRC, bad data) or ``too_many_pixels``.
    """
    view, position, header, data_chunks, has_palette = memoryview(data), 8, None, [], False
    while True:
        if position + 12 > len(data):
            raise PixelError("corrupt_image", "the PNG ends before its IEND chunk (truncated)")
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            raise PixelError("corrupt_image", f"the PNG ends inside its {_chunk_name(kind)} chunk (truncated)")
        if zlib.crc32(view[position + 4 : end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            raise PixelError("corrupt_image", f"the PNG's {_chunk_name(kind)} chunk fails its CRC (corrupt)")
        if kind == b"IHDR" and length == 13:
            header = struct.unpack_from(">IIBBBBB", data, position + 8)
        elif kind == b"IDAT":
            data_chunks.append(view[position + 8 : end - 4])
        elif kind == b"PLTE":
            has_palette = True
        elif kind == b"IEND":
            break
        elif not kind[0] & 0x20:  # an unknown critical chunk
            return None
        position = end
    if header is None:
        raise PixelError("corrupt_image", "the PNG has no valid IHDR chunk")
    width, height, depth, colour, compression, filtering, interlace = header
    if colour not in _PNG_TYPES or depth not in _PNG_TYPES[colour][1] or compression or filtering or interlace:
        return None
    if width * height > max_pixels:
        raise PixelError(
            "too_many_pixels", f"{width}x{height} = {width * height} pixels is over --max-pixels {max_pixels}"
        )
    if colour == 3 and not has_palette:
        raise PixelError("corrupt_image", "the palette PNG has no PLTE chunk")
    stride = (width * _PNG_TYPES[colour][0] * depth + 7) // 8 + 1
    inflater = zlib.decompressobj()
    try:
        rows = inflater.decompress(b"".join(data_chunks), height * stride + 1)
    except zlib.error as error:
        raise PixelError("corrupt_image", f"the PNG's image data does not inflate: {error}") from error
    if len(rows) != height * stride or not inflater.eof:
        raise PixelError("corrupt_image", f"the PNG's image data holds {len(rows)} bytes, not {height * stride}")
    if np.frombuffer(rows, np.uint8)[::stride].max(initial=0) > 4:
        raise PixelError("corrupt_image", "the PNG's image data has an invalid row filter")
    return height, width, colour in (2, 3, 6)


def _chunk_name(kind: bytes) -> str:
    """A chunk type as people read it (``IHDR``), not as a bytes repr (``b'IHDR'``)."""
    return kind.decode("latin-1").encode("unicode_escape").decode("ascii")


def open_image(data: bytes) -> Image.Image:
    """Opens encoded bytes lazily (header only); raises PIL's errors for non-images."""
    return Image.open(io.BytesIO(data))


def is_color(mode: str) -> bool:
    return mode in COLOR_MODES


def to_tf_readable(image: Image.Image, data: bytes) -> bytes:
    """Returns bytes TensorFlow decodes to the same pixels: ``data`` itself for PNG and grey/RGB JPEG,
    else a lossless PNG of the (first frame of the) loaded ``image``.

    Raises:
      PixelError: ``unsupported_mode`` for modes with no lossless 8/16-bit equivalent (32-bit
        integer ``I`` and float ``F`` images, ...).
    """
    if image.format == "PNG" or (image.format == "JPEG" and image.mode in _TF_JPEG_MODES):
        return data
    if image.mode in _SIXTEEN_BIT_MODES:
        return encode_png(np.asarray(image).astype(np.uint16))
    if image.mode not in _PNG_MODES:
        raise PixelError(
            "unsupported_mode",
            f"{image.format} image in mode {image.mode!r} (e.g. 32-bit integer or float samples); "
            "convert it to 8- or 16-bit grey, RGB or RGBA",
        )
    target = _PNG_MODES[image.mode]
    converted = image.convert(target) if target else image
    buffer = io.BytesIO()
    converted.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# Leading bytes of the formats Pillow reads that we expect in image datasets.
_SIGNATURES = (PNG_SIGNATURE, b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def has_image_signature(data: bytes) -> bool:
    """True when ``data`` starts like a PNG, JPEG, GIF, BMP, TIFF or WebP file."""
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
