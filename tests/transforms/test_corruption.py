import numpy as np
import pytest
import tensorflow as tf

from transforms.corruption import CorruptionSpec, parse_corruption
from transforms.image_ops import bicubic_to_size, corrupt, decode_pixels, grey, shrink

FORMS = "gaussian:SIGMA, salt-pepper:P, mask:P, grey, downscale:F, blocks:P"


def test_parse_round_trips_every_kind():
    assert parse_corruption("gaussian:0.5") == CorruptionSpec("gaussian", 0.5)
    assert parse_corruption("grey") == CorruptionSpec("grey")
    for text in ("salt-pepper:0.2", "mask:0.3", "grey", "downscale:2", "blocks:0.25"):
        assert str(parse_corruption(text)) == text
    assert parse_corruption(None) is None and parse_corruption("") is None
    assert parse_corruption("gaussian:0.5", noise_only=True).is_noise
    assert not parse_corruption("blocks:0.5").is_noise


@pytest.mark.parametrize(
    ("text", "noise_only", "message"),
    [
        ("speckle:0.1", False, f"--corrupt must be one of {FORMS}, got 'speckle:0.1'"),
        ("gaussian", False, f"must be one of {FORMS}"),
        ("grey:0.5", False, f"must be one of {FORMS}"),
        ("blocks:lots", False, f"must be one of {FORMS}"),
        ("mask:1.5", False, r"mask:P needs P in \(0, 1\), got 1.5"),
        ("downscale:1.5", False, "downscale:F needs an integer factor F >= 2, got 1.5"),
        ("gaussian:0", False, "gaussian:SIGMA needs SIGMA > 0"),
        ("grey", True, "--noise must be one of gaussian:SIGMA, salt-pepper:P, mask:P, got 'grey'"),
    ],
)
def test_bad_specs_name_the_valid_forms(text, noise_only, message):
    option = "--noise" if noise_only else "--corrupt"
    with pytest.raises(ValueError, match=message):
        parse_corruption(text, noise_only=noise_only, option=option)


def test_shape_checks_name_the_fix():
    with pytest.raises(ValueError, match="needs colour images, but the data is 28x28x1; preprocess with --channels 3"):
        CorruptionSpec("grey").check_shape((28, 28, 1))
    with pytest.raises(ValueError, match="use a smaller factor"):
        CorruptionSpec("downscale", 8).check_shape((8, 8, 3))
    CorruptionSpec("grey").check_shape((8, 8, 3))


@pytest.mark.parametrize("text", ["gaussian:0.5", "salt-pepper:0.2", "mask:0.3", "grey", "downscale:2", "blocks:0.3"])
def test_corruption_keeps_shape_and_range(text):
    images = tf.random.stateless_uniform([4, 16, 16, 3], seed=[1, 2])
    noisy = corrupt(images, parse_corruption(text), seed=1).numpy()
    assert noisy.shape == (4, 16, 16, 3)
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert np.mean(np.abs(noisy - images.numpy()) > 1e-3) > 0.1


def test_corruption_amounts_are_honoured():
    images = tf.fill([64, 32, 32, 1], 0.5)
    masked = corrupt(images, CorruptionSpec("mask", 0.3), seed=2).numpy()
    assert np.mean(masked == 0.0) == pytest.approx(0.3, abs=0.02)
    salted = corrupt(images, CorruptionSpec("salt-pepper", 0.2), seed=3).numpy()
    assert np.mean(salted == 1.0) == pytest.approx(0.1, abs=0.02)
    assert np.mean(salted == 0.0) == pytest.approx(0.1, abs=0.02)
    gaussian = corrupt(tf.fill([64, 32, 32, 1], 0.5), CorruptionSpec("gaussian", 0.1), seed=4).numpy()
    assert np.std(gaussian) == pytest.approx(0.1, rel=0.05)


def test_blocks_zero_square_blocks_in_every_channel():
    images = tf.fill([64, 32, 32, 3], 0.5)
    holed = corrupt(images, CorruptionSpec("blocks", 0.25), seed=5).numpy()
    missing = holed == 0.0
    assert np.mean(missing) == pytest.approx(0.25, abs=0.03)
    assert (missing.all(axis=-1) == missing.any(axis=-1)).all()  # every channel, or none
    # Blocks of 32 / 8 = 4 pixels: each 4x4 cell is all missing or all kept.
    cells = missing[..., 0].reshape(64, 8, 4, 8, 4)
    assert (cells.all(axis=(2, 4)) == cells.any(axis=(2, 4))).all()


def test_grey_and_downscale_are_what_they_say():
    rgb = tf.random.stateless_uniform([2, 8, 8, 3], seed=[3, 4])
    greyed = corrupt(rgb, CorruptionSpec("grey")).numpy()
    luma = np.tensordot(rgb.numpy(), [0.2989, 0.5870, 0.1140], axes=([-1], [0]))
    np.testing.assert_allclose(greyed, np.repeat(luma[..., None], 3, axis=-1), atol=1e-3)
    np.testing.assert_allclose(grey(rgb).numpy(), greyed)
    down = corrupt(rgb, CorruptionSpec("downscale", 2)).numpy()
    small = rgb.numpy().reshape(2, 4, 2, 4, 2, 3).mean(axis=(2, 4))  # area averaging by 2
    np.testing.assert_allclose(shrink(rgb, 2).numpy(), small, atol=1e-6)
    expected = np.clip(tf.image.resize(small, (8, 8), method="bicubic").numpy(), 0, 1)
    np.testing.assert_allclose(down, expected, atol=1e-6)


def test_bicubic_to_size_brings_only_smaller_images_up():
    small = tf.cast(tf.random.stateless_uniform([4, 6, 3], seed=[5, 6], maxval=256, dtype=tf.int32), tf.uint8)
    up = decode_pixels(bicubic_to_size(tf.io.encode_png(small), 8, 12)).numpy()
    assert up.shape == (8, 12, 3)
    expected = np.clip(tf.image.resize(tf.cast(small, tf.float32)[None] / 255, (8, 12), method="bicubic")[0], 0, 1)
    np.testing.assert_allclose(up, expected, atol=1 / 65535)
    for shape in ([8, 12, 3], [9, 6, 3]):  # as large, or larger on one side: as it is
        encoded = tf.io.encode_png(tf.zeros(shape, tf.uint8))
        assert bicubic_to_size(encoded, 8, 12).numpy() == encoded.numpy()
