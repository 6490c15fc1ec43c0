import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from pipelines.inputs.images import encode_png
from tests.helpers import oriented_jpeg
from transforms.image_ops import decode_images, decode_pixels, exif_orientation
from transforms.image_spec import ImageSpec


def _encoded(*arrays):
    return tf.constant([encode_png(a) for a in arrays])


def test_decode_scales_to_unit_range_and_keeps_pixels():
    pixels = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10) * 2
    out = decode_images(_encoded(pixels, 255 - pixels), ImageSpec(12, 10, 1)).numpy()
    assert out.shape == (2, 12, 10, 1)
    np.testing.assert_allclose(out[0, :, :, 0], pixels / 255.0, atol=1e-6)
    np.testing.assert_allclose(out[1, :, :, 0], (255 - pixels) / 255.0, atol=1e-6)


def test_grayscale_to_three_channels_repeats_the_grey():
    pixels = np.full((4, 4), 51, np.uint8)
    out = decode_images(_encoded(pixels), ImageSpec(4, 4, 3)).numpy()
    assert out.shape == (1, 4, 4, 3)
    np.testing.assert_allclose(out, 0.2, atol=1e-6)


@pytest.mark.parametrize("policy", ["stretch", "pad", "crop"])
def test_resize_policies_reach_the_target_shape(policy):
    wide = np.full((8, 16), 200, np.uint8)
    out = decode_images(_encoded(wide), ImageSpec(8, 8, 1, policy)).numpy()
    assert out.shape == (1, 8, 8, 1)
    assert out.min() >= 0.0 and out.max() <= 1.0
    if policy == "pad":  # aspect kept: top and bottom rows are padding (black)
        assert out[0, 0].max() == 0.0 and out[0, 4].min() > 0.7
    else:
        np.testing.assert_allclose(out, 200 / 255.0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"height": 0, "width": 4, "channels": 1}, "positive"),
        ({"height": 4, "width": 4, "channels": 2}, "channels must be 1 or 3"),
        ({"height": 4, "width": 4, "channels": 1, "resize": "zoom"}, "stretch, pad, crop"),
    ],
)
def test_bad_specs_raise_with_the_valid_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageSpec(**kwargs)


def test_alpha_is_composited_on_the_background_for_either_channel_count():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent
    rgba[1, 0] = (0, 0, 255, 128)  # half blue
    white = ImageSpec(2, 2, 3, background=(255, 255, 255))
    out = decode_images(_encoded(rgba), white).numpy()[0]
    np.testing.assert_allclose(out[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out[0, 1], [1, 1, 1], atol=1e-6)
    a = 128 / 255
    np.testing.assert_allclose(out[1, 0], [1 - a, 1 - a, 1], atol=1e-6)
    grey = decode_images(_encoded(rgba), ImageSpec(2, 2, 1, background=(255, 255, 255))).numpy()[0, ..., 0]
    np.testing.assert_allclose(grey[0, 1], 1.0, atol=1e-4)  # transparent -> white background
    np.testing.assert_allclose(grey[0, 0], 0.2989, atol=1e-4)  # red -> its luma
    grey_alpha = np.stack([np.full((2, 2), 100, np.uint8), np.array([[255, 0], [0, 0]], np.uint8)], -1)
    out = decode_images(_encoded(grey_alpha), ImageSpec(2, 2, 1, background=(0, 0, 0))).numpy()[0, ..., 0]
    np.testing.assert_allclose(out, [[100 / 255, 0], [0, 0]], atol=1e-6)


def test_palette_and_sixteen_bit_images_decode_to_their_values():
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 128, 0] + [0] * 762)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    out = decode_images(tf.constant([buffer.getvalue()]), ImageSpec(2, 2, 3)).numpy()[0]
    np.testing.assert_allclose(out[0, 1], [1, 128 / 255, 0], atol=1e-6)
    sixteen = np.array([[0, 1], [32768, 65535]], np.uint16)
    out = decode_images(_encoded(sixteen), ImageSpec(2, 2, 1)).numpy()[0, ..., 0]
    np.testing.assert_allclose(out, sixteen / 65535, atol=1e-7)


def test_grey_images_stay_exact_and_rgb_becomes_luma():
    pixels = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    out = decode_images(_encoded(pixels), ImageSpec(4, 4, 1)).numpy()[0, ..., 0]
    np.testing.assert_allclose(out, pixels / 255, atol=1e-7)  # no round trip through RGB
    rgb = np.zeros((1, 1, 3), np.uint8) + np.array([0, 255, 0], np.uint8)
    np.testing.assert_allclose(decode_images(_encoded(rgb), ImageSpec(1, 1, 1)).numpy().ravel(), [0.587], atol=1e-4)


def test_pad_fills_with_the_background():
    wide = np.zeros((4, 8), np.uint8)
    out = decode_images(_encoded(wide), ImageSpec(8, 8, 3, "pad", background=(255, 0, 0))).numpy()[0]
    np.testing.assert_allclose(out[0, 0], [1, 0, 0], atol=1e-6)  # padding row: the background
    np.testing.assert_allclose(out[4, 4], [0, 0, 0], atol=1e-6)  # the image itself


def test_background_must_be_a_colour():
    with pytest.raises(ValueError, match=r"three values in 0\.\.255"):
        ImageSpec(2, 2, 1, background=(0, 300, 0))


def _oriented_jpeg(orientation: int) -> bytes:
    """A 16x24 JPEG with distinct corners, tagged with the EXIF ``orientation``."""
    pixels = np.zeros((16, 24, 3), np.uint8)
    pixels[:4, :8] = 255
    pixels[10:, 20:, 0] = 200
    return oriented_jpeg(pixels, orientation)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_exif_transpose_does(orientation):
    data = _oriented_jpeg(orientation)
    assert int(exif_orientation(tf.constant(data))) == orientation
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data)))).astype(int)
    decoded = decode_pixels(tf.constant(data), tf.uint8).numpy().astype(int)
    assert decoded.shape == expected.shape
    assert np.abs(decoded - expected).max() <= 8  # two JPEG decoders: rounding differences only
    # Inside a graph too (tf.function, as in the tf.Transform graph and the export).
    spec = ImageSpec(*expected.shape[:2], 3)
    in_graph = tf.function(lambda e: decode_images(e, spec))(tf.constant([data])).numpy()[0]
    np.testing.assert_allclose(in_graph * 255, decoded, atol=1)


def test_a_batch_mixing_jpegs_and_pngs_keeps_its_order_and_turns_only_the_jpegs():
    rotated = _oriented_jpeg(6)  # stored 16x24, shown 24x16
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(rotated))))
    pngs = [np.full((24, 16, 3), v, np.uint8) for v in (10, 120, 250)]
    batch = [encode_png(pngs[0]), rotated, encode_png(pngs[1]), rotated, encode_png(pngs[2])]
    out = tf.function(lambda e: decode_images(e, ImageSpec(24, 16, 3)))(tf.constant(batch)).numpy()
    assert out.shape == (5, 24, 16, 3)
    for index, pixels in zip((0, 2, 4), pngs, strict=True):
        np.testing.assert_allclose(out[index] * 255, pixels, atol=1e-3)
    for index in (1, 3):
        assert np.abs(out[index] * 255 - upright).max() <= 8  # two JPEG decoders: rounding differences only


def test_damaged_or_missing_exif_means_upright():
    data = _oriented_jpeg(6)
    app1 = data.index(b"Exif")
    damaged = data[: app1 + 6] + b"\xff" * 8 + data[app1 + 14 :]  # TIFF header overwritten
    for encoded in (damaged, encode_png(np.zeros((3, 5), np.uint8)), b"\xff\xd8"):
        assert int(exif_orientation(tf.constant(encoded))) == 1
