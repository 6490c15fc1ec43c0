"""The classical baselines of the restoration triplets, on small arrays with known answers."""

import numpy as np
import tensorflow as tf

from pipelines.evaluate.restoration import BASELINES, bicubic_upscaled, grey_replicated, mean_filled


def test_every_corruption_kind_has_its_baseline():
    assert {kind: name for kind, (name, _) in BASELINES.items()} == {
        "gaussian": "the noisy input",
        "salt-pepper": "the noisy input",
        "mask": "the noisy input",
        "grey": "grey replicated",
        "downscale": "bicubic upscaling",
        "blocks": "mean fill of the holes",
    }
    noisy = np.random.default_rng(0).uniform(0, 1, (2, 4, 4, 1)).astype(np.float32)
    assert BASELINES["gaussian"][1](noisy, np.zeros_like(noisy), 0.5) is noisy


def test_grey_replicated_puts_the_luma_in_every_channel():
    colour = np.zeros((1, 2, 2, 3), np.float32)
    colour[0, 0, 0] = (1.0, 0.0, 0.0)
    colour[0, 1, 1] = (0.2, 0.4, 0.6)
    grey = grey_replicated(colour, colour, 0)
    assert grey.shape == colour.shape
    np.testing.assert_allclose(grey[0, 0, 0], [0.2989] * 3, atol=1e-3)
    np.testing.assert_allclose(grey[0, 1, 1], [0.2989 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6] * 3, atol=1e-3)
    single = colour[..., :1]
    assert grey_replicated(single, single, 0) is single


def test_bicubic_upscaled_is_the_small_image_brought_back_up():
    clean = np.random.default_rng(1).uniform(0, 1, (2, 8, 6, 3)).astype(np.float32)
    up = bicubic_upscaled(clean, clean, 2.0)
    small = tf.image.resize(clean, (4, 3), method="area")
    np.testing.assert_allclose(up, np.clip(tf.image.resize(small, (8, 6), method="bicubic").numpy(), 0, 1), atol=1e-6)
    flat = np.full((1, 8, 8, 1), 0.25, np.float32)  # a flat image survives any resizing
    np.testing.assert_allclose(bicubic_upscaled(flat, flat, 4.0), flat, atol=1e-6)


def test_mean_filled_fills_only_the_holes_with_the_known_mean():
    clean = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) / 16
    holed = clean.copy()
    holed[0, :2, :2] = 0.0  # a block; pixel (0, 0) was already 0, so it counts as known
    filled = mean_filled(holed, clean, 0.25)
    known = [v for i, v in enumerate(clean.ravel()) if i not in (1, 4, 5)]
    np.testing.assert_allclose(filled[0, 0, 1, 0], np.mean(known), rtol=1e-6)
    np.testing.assert_allclose(filled[0, 1, :2, 0], [np.mean(known)] * 2, rtol=1e-6)
    np.testing.assert_array_equal(filled[0, 2:], clean[0, 2:])
    assert filled[0, 0, 0, 0] == 0.0
