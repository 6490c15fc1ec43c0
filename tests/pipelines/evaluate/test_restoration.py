"""The restoration baselines and what the model is sent, on small arrays with known answers."""

import io

import numpy as np
from PIL import Image

from pipelines.evaluate.restoration import BASELINES, mean_filled, what_users_have
from transforms.corruption import CorruptionSpec


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
    assert BASELINES["gaussian"][1](noisy, None) is noisy


def test_mean_filled_fills_only_the_holes_with_the_known_mean():
    clean = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) / 16
    holes = np.zeros_like(clean, bool)
    holes[0, :2, :2] = True
    holed = np.where(holes, 0.0, clean)
    filled = mean_filled(holed, holes)
    known = [v for i, v in enumerate(clean.ravel()) if i not in (0, 1, 4, 5)]
    np.testing.assert_allclose(filled[0, :2, :2, 0], np.full((2, 2), np.mean(known)), rtol=1e-6)
    np.testing.assert_array_equal(filled[0, 2:], clean[0, 2:])


def _decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_users_send_grey_images_to_a_recolouring_model_and_small_ones_to_an_upscaler():
    clean = np.random.default_rng(1).uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)
    sent, corrupted, holes = what_users_have(clean, CorruptionSpec("grey"), seed=0)
    assert _decoded(sent[0]).shape == (8, 8) and holes is None  # one channel
    np.testing.assert_allclose(corrupted[0], np.repeat(_decoded(sent[0])[..., None] / 255, 3, axis=-1), atol=1e-6)
    sent, corrupted, _ = what_users_have(clean, CorruptionSpec("downscale", 2), seed=0)
    assert _decoded(sent[0]).shape == (4, 4, 3) and corrupted.shape == clean.shape


def test_blocks_report_their_holes():
    clean = np.full((4, 16, 16, 3), 0.5, np.float32)
    sent, corrupted, holes = what_users_have(clean, CorruptionSpec("blocks", 0.3), seed=3)
    assert holes.shape == (4, 16, 16, 1) and 0 < holes.mean() < 1
    np.testing.assert_array_equal(corrupted == 0, np.repeat(holes, 3, axis=-1))
    np.testing.assert_allclose(_decoded(sent[1]) / 255, corrupted[1], atol=1e-6)
