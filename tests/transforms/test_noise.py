import numpy as np
import pytest
import tensorflow as tf

from transforms.image_ops import corrupt
from transforms.noise import NoiseSpec, parse_noise


def test_parse_round_trips_and_rejects_bad_specs():
    assert parse_noise("gaussian:0.5") == NoiseSpec("gaussian", 0.5)
    assert str(parse_noise("salt-pepper:0.2")) == "salt-pepper:0.2"
    assert parse_noise(None) is None and parse_noise("") is None
    with pytest.raises(ValueError, match="gaussian, salt-pepper, mask"):
        parse_noise("speckle:0.1")
    with pytest.raises(ValueError, match="KIND:AMOUNT"):
        parse_noise("gaussian")
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        parse_noise("mask:1.5")


@pytest.mark.parametrize("text", ["gaussian:0.5", "salt-pepper:0.2", "mask:0.3"])
def test_corruption_keeps_shape_and_range(text):
    images = tf.fill([4, 8, 8, 1], 0.5)
    noisy = corrupt(images, parse_noise(text), seed=1).numpy()
    assert noisy.shape == (4, 8, 8, 1)
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert np.mean(noisy != 0.5) > 0.1


def test_corruption_amounts_are_honoured():
    images = tf.fill([64, 32, 32, 1], 0.5)
    masked = corrupt(images, NoiseSpec("mask", 0.3), seed=2).numpy()
    assert np.mean(masked == 0.0) == pytest.approx(0.3, abs=0.02)
    salted = corrupt(images, NoiseSpec("salt-pepper", 0.2), seed=3).numpy()
    assert np.mean(salted == 1.0) == pytest.approx(0.1, abs=0.02)
    assert np.mean(salted == 0.0) == pytest.approx(0.1, abs=0.02)
    gaussian = corrupt(tf.fill([64, 32, 32, 1], 0.5), NoiseSpec("gaussian", 0.1), seed=4).numpy()
    assert np.std(gaussian) == pytest.approx(0.1, rel=0.05)
