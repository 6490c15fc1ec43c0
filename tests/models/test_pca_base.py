"""``conv``'s PCA base (``base=pca``, the default for colour): before training the model codes and
reconstructs as PCA of its training images does, through the export too, and training fits the base
to the train split (with the transform's standardized inputs) before its first step."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.decomposition import PCA

from models import export, input_pipeline
from models.config import ModelConfig, TrainConfig
from models.kinds.conv import ConvParams, image_base
from models.model_check import check_export
from models.registry import build_autoencoder
from models.training import train
from pipelines.inputs.images import encode_png
from tests.conftest import HEIGHT, WIDTH
from transforms import features
from transforms.layout import TRAIN

LATENT = 4


def _images(n: int, shape: tuple, seed: int = 0) -> np.ndarray:
    """``n`` smooth random images in [0, 1] that lie near a few directions (so PCA has structure)."""
    rng = np.random.default_rng(seed)
    directions = rng.random((6, int(np.prod(shape))))
    mix = rng.random((n, 6)) / 6
    return np.clip(mix @ directions, 0.0, 1.0).astype(np.float32).reshape(n, *shape)


def _pca_reconstruction(train_pixels: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    pca = PCA(LATENT).fit(train_pixels.reshape(len(train_pixels), -1))
    projected = pca.inverse_transform(pca.transform(pixels.reshape(len(pixels), -1)))
    return np.clip(projected, 1e-3, 1 - 1e-3).reshape(pixels.shape)  # the base's clip


def test_auto_base_is_pca_for_colour_and_the_mean_colour_for_grey():
    assert image_base(ConvParams(), (32, 32, 3)) == "pca"
    assert image_base(ConvParams(), (28, 28, 1)) == "mean-colour"
    assert image_base(ConvParams(base="none"), (32, 32, 3)) == "none"
    with pytest.raises(ValueError, match="base must be one of auto, pca, mean-colour, none"):
        ConvParams(base="median")


@pytest.mark.parametrize("refine", [0, 2])  # without and with the full-resolution layers
@pytest.mark.parametrize("standardized", [False, True])
@pytest.mark.parametrize("shape", [(16, 16, 3), (4, 4, 3)])  # fewer images than values, and more
def test_an_untrained_model_codes_and_reconstructs_as_pca(refine, standardized, shape):
    pixels = _images(64, shape)
    mean, std = pixels.mean(axis=0), pixels.std(axis=0) + 0.1
    inputs = (pixels - mean) / std if standardized else pixels  # what --normalize standardize gives
    model = build_autoencoder(ModelConfig("conv", LATENT, params={"refine": refine}), shape)
    model.build((None, *shape))
    model.fit_base(inputs, pixels)
    held_out = _images(8, shape, seed=1)
    held_in = (held_out - mean) / std if standardized else held_out
    np.testing.assert_allclose(model(held_in).numpy(), _pca_reconstruction(pixels, held_out), atol=2e-5)
    pca = PCA(LATENT).fit(pixels.reshape(len(pixels), -1))
    codes = pca.transform(held_out.reshape(len(held_out), -1))
    np.testing.assert_allclose(np.abs(model.encode(held_in).numpy()), np.abs(codes), atol=2e-4)  # up to sign


def test_only_the_pca_base_has_the_full_resolution_layers_that_see_the_base_image():
    def full_resolution(shape, params):
        decoder = build_autoencoder(ModelConfig("conv", 16, params=params), shape).decoder
        return [layer for layer in decoder.layers if isinstance(layer, keras.layers.Concatenate)]

    assert len(full_resolution((32, 32, 3), {"refine": 2})) == 1  # colour: base auto is pca
    assert full_resolution((32, 32, 3), {}) == []  # off by default
    assert full_resolution((28, 28, 1), {"refine": 2}) == []  # grey: base auto is mean-colour
    with pytest.raises(ValueError, match="refine must be >= 0"):
        ConvParams(refine=-1)


def test_the_base_survives_the_export(preprocessed, tmp_path):
    shape = (HEIGHT, WIDTH, 1)
    tft_output = input_pipeline.load_transform_output(preprocessed.output)
    model = build_autoencoder(ModelConfig("conv", LATENT, params={"base": "pca"}), shape)
    model.build((None, *shape))
    pixels = _images(32, shape)
    model.fit_base(pixels, pixels)
    loaded = tf.saved_model.load(export.export_model(model, tft_output, str(tmp_path), params={}))
    served_pixels = np.round(_images(4, shape, seed=2) * 255).astype(np.uint8)
    served = loaded.signatures["serving_default"](images=tf.constant([encode_png(p) for p in served_pixels]))
    expected = _pca_reconstruction(pixels, served_pixels.astype(np.float32) / 255)
    np.testing.assert_allclose(served["reconstruction"].numpy(), expected, atol=1e-4)
    assert check_export(str(tmp_path)).kind == "conv"  # its graph passes the checks of a loaded model


@pytest.fixture(scope="module")
def colour_photos(tmp_path_factory):
    """A real preprocess output of 40 smooth 12x10 colour PNGs, standardized."""
    from pipelines.config import PreprocessConfig
    from pipelines.preprocess.job import run_preprocess

    root = tmp_path_factory.mktemp("photos")
    for i, image in enumerate(_images(40, (12, 10, 3), seed=3)):
        (root / f"{i:03d}.png").write_bytes(encode_png(np.round(image * 255).astype(np.uint8)))
    out = tmp_path_factory.mktemp("photos-data")
    return run_preprocess(PreprocessConfig(str(root), str(out), eval_percent=20, normalize="standardize")).output


def test_training_fits_the_base_to_the_train_split_before_its_first_step(colour_photos, tmp_path):
    model = ModelConfig("conv", LATENT)
    cfg = TrainConfig(colour_photos, str(tmp_path), model, epochs=1, batch_size=8, learning_rate=1e-9)
    train(cfg)  # a learning rate of ~0 keeps the model at its start: the PCA of the train split
    tft_output = input_pipeline.load_transform_output(colour_photos)
    files = input_pipeline.split_files(colour_photos, TRAIN)
    batch = next(iter(input_pipeline.make_dataset(files, tft_output, 1000, shuffle=False)))
    train_pixels = batch[features.PIXELS].numpy()
    loaded = tf.saved_model.load(f"{tmp_path}/saved_model")
    pngs = [encode_png(np.round(p * 255).astype(np.uint8)) for p in train_pixels[:5]]
    served = loaded.signatures["serving_default"](images=tf.constant(pngs))["reconstruction"].numpy()
    np.testing.assert_allclose(served, _pca_reconstruction(train_pixels, train_pixels[:5]), atol=1e-3)
