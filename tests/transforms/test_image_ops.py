import numpy as np
import pytest
import tensorflow as tf

from pipelines.images import encode_png
from transforms.image_ops import ImageSpec, decode_images


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
