"""Encoding arrays as lossless PNG, the fast PNG check, and re-encoding what TensorFlow cannot read."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines.inputs.images import (
    PixelError,
    array_to_png,
    decoded_bytes,
    encode_png,
    open_image,
    passes_as_is,
    png_header,
    to_tf_readable,
)
from tests.helpers import encode_image, png_chunk


def _tf_pixels(data: bytes) -> np.ndarray:
    return tf.io.decode_image(data, dtype=tf.uint16, expand_animations=False).numpy()


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_encode_png_is_lossless_for_8_and_16_bit_and_every_channel_count(channels, dtype):
    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, np.iinfo(dtype).max, size=(5, 7, channels), endpoint=True).astype(dtype)
    decoded = tf.io.decode_image(encode_png(pixels), dtype=tf.as_dtype(dtype)).numpy()
    np.testing.assert_array_equal(decoded, pixels)


def test_array_to_png_keeps_8_bit_data_8_bit_and_scales_the_rest_to_16_bit():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    assert Image.open(io.BytesIO(array_to_png(grey))).mode == "L"
    as_ints = array_to_png(grey.astype(np.int64))  # integers default to 0..255 too
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(as_ints))), grey)
    floats = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(_tf_pixels(array_to_png(floats))[..., 0] / 65535, floats, atol=1 / 65535)
    twelve_bit = np.array([[0, 4095]], np.uint16)
    np.testing.assert_array_equal(_tf_pixels(array_to_png(twelve_bit, pixel_max=4095))[..., 0], [[0, 65535]])


@pytest.mark.parametrize(
    "array, pixel_max, reason",
    [
        (np.array([[0.5, np.nan]], np.float32), None, "non_finite_pixels"),
        (np.array([[0.5, np.inf]], np.float64), None, "non_finite_pixels"),
        (np.array([[0.0, 2.0]], np.float32), None, "pixel_out_of_range"),
        (np.array([[-1, 3]], np.int16), None, "pixel_out_of_range"),
        (np.array([[0, 300]], np.int32), 255, "pixel_out_of_range"),
    ],
)
def test_bad_arrays_raise_with_a_reason(array, pixel_max, reason):
    with pytest.raises(PixelError) as raised:
        array_to_png(array, pixel_max)
    assert raised.value.reason == reason
    if reason == "pixel_out_of_range":
        assert "--pixel-max" in str(raised.value)


def _saved(image: Image.Image, fmt: str, **kwargs) -> tuple[Image.Image, bytes]:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    data = buffer.getvalue()
    opened = Image.open(io.BytesIO(data))
    opened.load()
    return opened, data


def test_png_and_grey_or_rgb_jpeg_pass_through_untouched():
    for image, fmt in ((Image.new("RGBA", (4, 3)), "PNG"), (Image.new("L", (4, 3)), "JPEG")):
        opened, data = _saved(image, fmt)
        assert to_tf_readable(opened, data) is data


@pytest.mark.parametrize(
    "mode, fmt",
    [("L", "BMP"), ("RGB", "BMP"), ("P", "GIF"), ("RGB", "TIFF"), ("RGBA", "WEBP"), ("1", "BMP"), ("CMYK", "JPEG")],
)
def test_other_formats_become_png_with_the_same_pixels(mode, fmt):
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 255, size=(6, 5, 3), dtype=np.uint8)).convert(mode)
    opened, data = _saved(source, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    converted = to_tf_readable(opened, data)
    assert converted.startswith(b"\x89PNG")
    expected = np.asarray(opened.convert("RGBA" if "A" in opened.getbands() else "RGB"))
    actual = tf.io.decode_image(converted, channels=expected.shape[-1]).numpy()
    np.testing.assert_array_equal(actual, expected)


def test_sixteen_bit_tiff_becomes_sixteen_bit_png():
    pixels = (np.arange(20, dtype=np.uint16) * 3000).reshape(4, 5)
    opened, data = _saved(Image.fromarray(pixels), "TIFF")
    np.testing.assert_array_equal(_tf_pixels(to_tf_readable(opened, data))[..., 0], pixels)


def test_float_images_are_an_unsupported_mode():
    opened, data = _saved(Image.fromarray(np.ones((3, 3), np.float32)), "TIFF")
    with pytest.raises(PixelError, match="convert it to 8- or 16-bit") as raised:
        to_tf_readable(opened, data)
    assert raised.value.reason == "unsupported_mode"


def _with_chunk(png: bytes, kind: bytes, data: bytes, crc_ok: bool = True) -> bytes:
    """``png`` with a chunk inserted after IHDR (its CRC broken unless ``crc_ok``)."""
    chunk = png_chunk(kind, data)
    if not crc_ok:
        chunk = chunk[:-4] + bytes(4)
    return png[:33] + chunk + png[33:]


_PLAIN = [
    Image.new("L", (5, 3), 7),
    Image.new("RGB", (4, 6), (1, 2, 3)),
    Image.new("LA", (2, 2)),
    Image.new("RGBA", (3, 3)),
    Image.new("P", (6, 2)),
    Image.new("1", (9, 4)).convert("P"),
]


@pytest.mark.parametrize("image", _PLAIN, ids=lambda image: image.mode)
def test_png_header_agrees_with_pillow_on_plain_pngs(image):
    data = encode_image(image, "PNG")
    opened = open_image(data)
    assert png_header(data) == (opened.width * opened.height, decoded_bytes(opened))
    assert passes_as_is(opened)
    with_gamma = _with_chunk(data, b"gAMA", (45455).to_bytes(4, "big"))
    assert png_header(with_gamma) == png_header(data)


@pytest.mark.parametrize(
    "data",
    [
        encode_png(np.zeros((4, 4), np.uint16)),  # 16-bit: Pillow's mode decides
        _with_chunk(encode_png(np.zeros((4, 4), np.uint8)), b"eXIf", b"MM\x00*"),  # may hold an orientation
        _with_chunk(encode_png(np.zeros((4, 4), np.uint8)), b"tRNS", b"\x00\x00"),
        _with_chunk(encode_png(np.zeros((4, 4), np.uint8)), b"gAMA", bytes(4), crc_ok=False),
        encode_png(np.zeros((4, 4), np.uint8))[:40],  # truncated before the image data
        encode_png(np.zeros((4, 4), np.uint8))[:20],
        b"\x89PNG\r\n\x1a\n" + bytes(40),
        encode_image(Image.new("L", (4, 4)), "BMP"),
    ],
    ids=["16-bit", "exif", "transparency", "bad-crc", "no-idat", "short", "no-ihdr", "bmp"],
)
def test_png_header_leaves_everything_else_to_pillow(data):
    assert png_header(data) is None
