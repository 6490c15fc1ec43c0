"""Encoding arrays as lossless PNG, the fast PNG check, and re-encoding what TensorFlow cannot read."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines.inputs.images import PixelError, array_to_png, encode_png, to_tf_readable


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
