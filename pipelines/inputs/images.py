"""Pillow and numpy helpers shared by readers and validation: inspecting and encoding images.

TensorFlow's decoder (used in the transform graph) reads every PNG and baseline JPEG, so those pass
on as they are (:func:`passes_as_is`); everything else Pillow reads (BMP, GIF's first frame, TIFF,
WebP, CMYK JPEG, a PNG with an EXIF orientation, ...) is re-encoded losslessly as PNG, turned
upright by its EXIF orientation, by :func:`to_tf_readable`. :func:`decoded_bytes` and
:func:`upright_size` read only the header. Arrays (IDX, NPY, NPZ, CSV rows) become
PNG through :func:`array_to_png`: 8-bit when the data is 8-bit, 16-bit otherwise.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps

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
# Bytes per sample of the modes whose samples are wider than one byte.
_SAMPLE_BYTES = {**dict.fromkeys(_SIXTEEN_BIT_MODES, 2), "I": 4, "F": 4}
_ORIENTATION_TAG = 0x0112
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


# (bit depth, colour type) of the PNGs :func:`png_header` reads -> the bytes a pixel decodes to, as
# :func:`decoded_bytes` counts Pillow's mode (L, RGB, P as RGBA, LA, RGBA); other kinds go to Pillow.
_PNG_PIXEL_BYTES = {(8, 0): 1, (8, 2): 3, (1, 3): 4, (2, 3): 4, (4, 3): 4, (8, 3): 4, (8, 4): 2, (8, 6): 4}
# Chunks that may come between IHDR and the image data without changing what Pillow makes of the
# header: no transparency (tRNS), EXIF (eXIf), colour profile (iCCP) or text; others go to Pillow.
_PLAIN_PNG_CHUNKS = frozenset({b"PLTE", b"gAMA", b"cHRM", b"sRGB", b"pHYs", b"sBIT", b"bKGD", b"tIME"})


def png_header(data: bytes) -> tuple[int, int] | None:
    """``(pixels, decoded bytes)`` of a plain PNG from its chunks before the image data, without
    Pillow (1 us against Pillow's 25 us for a small image), or None when the file is anything else.

    Plain: the PNG signature, a 13-byte IHDR of an 8-bit grey, RGB, grey+alpha, RGBA or palette
    image (compression and filter method 0), then only :data:`_PLAIN_PNG_CHUNKS` up to the first
    IDAT, every chunk whole with a good CRC, and at most ``Image.MAX_IMAGE_PIXELS`` pixels. Pillow
    accepts such a header as it is and finds no EXIF orientation in it, so it
    :func:`passes_as_is`; for everything else (None) the caller opens the file with Pillow, whose
    checks and messages stand. Whether the image data decodes is not checked here.
    """
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    pixel_bytes = _PNG_PIXEL_BYTES.get((depth, colour))
    if pixel_bytes is None or compression or filtering or interlace > 1 or width * height > Image.MAX_IMAGE_PIXELS:
        return None
    position = 8
    while True:
        if position + 12 > len(data):
            return None
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            return width * height, width * height * pixel_bytes
        end = position + 8 + length
        if (position > 8 and kind not in _PLAIN_PNG_CHUNKS) or end + 4 > len(data):
            return None
        if zlib.crc32(data[position + 4 : end]) != struct.unpack_from(">I", data, end)[0]:
            return None
        position = end + 4


def open_image(data: bytes) -> Image.Image:
    """Opens encoded bytes lazily (header only); raises PIL's errors for non-images."""
    return Image.open(io.BytesIO(data))


def is_color(mode: str) -> bool:
    return mode in COLOR_MODES


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8) of an opened image from its header; 1 when it has none or it is unreadable."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # Pillow's PNG getexif() would decode the whole image to look for an eXIf chunk after it
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # damaged EXIF data: shown upright, as TensorFlow's graph does
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(image: Image.Image) -> tuple[int, int]:
    """``(height, width)`` as the image is shown, i.e. after its EXIF orientation (5..8 swap them)."""
    return (image.width, image.height) if orientation(image) >= 5 else (image.height, image.width)


def decoded_bytes(image: Image.Image) -> int:
    """The bytes of an opened (not loaded) image's decoded pixels: width x height x channels x bytes
    per sample (a palette counts as RGBA, as the decoder may expand it so)."""
    channels = 4 if image.mode in ("P", "PA") else len(image.getbands())
    return image.width * image.height * channels * _SAMPLE_BYTES.get(image.mode, 1)


def passes_as_is(image: Image.Image) -> bool:
    """True when TensorFlow's decoder reads the image as it is: a PNG with no EXIF orientation to
    apply (the graph turns JPEGs upright itself) or a grey/RGB JPEG."""
    if image.format == "PNG":
        return orientation(image) == 1
    return image.format == "JPEG" and image.mode in _TF_JPEG_MODES


def to_tf_readable(image: Image.Image, data: bytes) -> bytes:
    """Returns bytes TensorFlow decodes to the same pixels: ``data`` itself when it
    :func:`passes_as_is`, else a lossless PNG of the (first frame of the) loaded ``image``, upright.

    Raises:
      PixelError: ``unsupported_mode`` for modes with no lossless 8/16-bit equivalent (32-bit
        integer ``I`` and float ``F`` images, ...).
    """
    if passes_as_is(image):
        return data
    if orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
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
