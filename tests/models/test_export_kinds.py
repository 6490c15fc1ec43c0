"""The export of every kind: identical outputs after the round trip, and the optional outputs.

``restored`` only for models trained with a corruption (and ``denoised`` for a noise),
``interpolate`` only for the VAEs, and ``model_info.json`` saying which. Uses the shared 12x10x1
preprocess output (an odd size).
"""

import numpy as np
import pytest
import tensorflow as tf

from models import export
from models.config import ModelConfig
from models.input_pipeline import load_transform_output
from models.model_check import check_export
from models.model_info import ModelInfo
from models.registry import build_autoencoder, known_kinds
from pipelines.inputs.images import encode_png
from tests.conftest import CLASSES, HEIGHT, WIDTH, known_pixels
from transforms import features

SHAPE = (HEIGHT, WIDTH, 1)


@pytest.fixture(scope="module")
def tft_output(preprocessed):
    return load_transform_output(preprocessed.output)


def _images(index: int = 0):
    return tf.constant([encode_png(known_pixels(c, index)) for c in range(len(CLASSES))])


def _export(config: ModelConfig, tft_output, model_dir):
    model = build_autoencoder(config, SHAPE)
    path = export.export_model(model, tft_output, str(model_dir), params={})
    return model, tf.saved_model.load(path)


@pytest.mark.parametrize("kind", known_kinds())
def test_export_round_trips_to_identical_outputs(kind, tft_output, tmp_path):
    model, loaded = _export(ModelConfig(kind, latent_dim=3), tft_output, tmp_path)
    in_memory = export.ServingModule(model, tft_output)
    images = _images()
    before, after = in_memory.serve(images), loaded.signatures["serving_default"](images=images)
    assert set(before) == set(after)
    for name in before:
        np.testing.assert_array_equal(before[name].numpy(), after[name].numpy())
    np.testing.assert_array_equal(loaded.signatures["encode"](images=images)["latent"].numpy(), after["latent"].numpy())
    latent = tf.constant(np.random.default_rng(0).normal(size=(4, 3)).astype("float32"))
    np.testing.assert_array_equal(
        loaded.signatures["decode"](latent=latent)["reconstruction"].numpy(),
        in_memory.decode(latent)["reconstruction"].numpy(),
    )

    info = ModelInfo.read(str(tmp_path))
    assert check_export(str(tmp_path)) == info  # its signatures, graph and hash pass the checks
    assert info.kind == kind and info.variational == model.variational
    assert info.denoising == (kind == "denoising") and ("denoised" in after) == (kind == "denoising")
    assert info.noise == info.corruption == ("gaussian:0.5" if kind == "denoising" else None)
    assert ("restored" in after) == (kind == "denoising")
    assert ("interpolate" in loaded.signatures) == (kind in ("vae", "conv-vae"))


def test_any_kind_trained_with_noise_fills_restored_and_denoised(tft_output, tmp_path):
    _, loaded = _export(ModelConfig("dense", latent_dim=3, noise="salt-pepper:0.2"), tft_output, tmp_path)
    out = loaded.signatures["serving_default"](images=_images())
    np.testing.assert_array_equal(out["restored"].numpy(), out["reconstruction"].numpy())
    np.testing.assert_array_equal(out["denoised"].numpy(), out["reconstruction"].numpy())
    info = ModelInfo.read(str(tmp_path))
    assert info.denoising is True and info.noise == "salt-pepper:0.2" and info.variational is False


def test_interpolate_signature_matches_the_python_function(tft_output, tmp_path):
    model, loaded = _export(ModelConfig("vae", latent_dim=3), tft_output, tmp_path)
    images_a, images_b = _images(0), _images(1)
    alphas = tf.constant([0.0, 0.25, 1.0])
    path = loaded.signatures["interpolate"](images_a=images_a, images_b=images_b, alphas=alphas)["reconstruction"]
    assert path.shape == (len(CLASSES), 3, *SHAPE)

    transform = tft_output.transform_features_layer()
    inputs_a = transform({features.IMAGE: images_a})[features.INPUTS]
    inputs_b = transform({features.IMAGE: images_b})[features.INPUTS]
    np.testing.assert_allclose(path.numpy(), model.interpolate(inputs_a, inputs_b, alphas).numpy(), atol=1e-6)
    ends = [loaded.signatures["serving_default"](images=i)["reconstruction"].numpy() for i in (images_a, images_b)]
    np.testing.assert_allclose(path.numpy()[:, 0], ends[0], atol=1e-6)
    np.testing.assert_allclose(path.numpy()[:, 2], ends[1], atol=1e-6)
