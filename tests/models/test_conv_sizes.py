"""The convolutional kinds follow the image size: stages down to a small map, widths growing and capped,
and they build and train at digit, patch and photo sizes, grey and colour."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.config import ModelConfig, TrainConfig
from models.kinds.conv import SMALLEST_MAP, ConvParams, stage_filters
from models.registry import build_autoencoder, resolve_train_config
from models.training import Trainer

SIZES = [(28, 28, 1), (32, 32, 3), (64, 64, 3), (128, 128, 3)]


@pytest.mark.parametrize(
    "shape, filters",
    [
        ((28, 28, 1), (32, 64)),  # 28 -> 14 -> 7
        ((32, 32, 3), (32, 64, 128)),  # 32 -> 16 -> 8 -> 4
        ((64, 64, 3), (32, 64, 128, 256)),
        ((128, 128, 3), (32, 64, 128, 256, 256)),  # capped at max_filters
        ((128, 40, 3), (32, 64, 128)),  # the smaller side decides: 40 -> 20 -> 10 -> 5
        ((7, 5, 1), (32,)),  # at least one stage
    ],
)
def test_stages_halve_down_to_a_small_map_with_growing_capped_widths(shape, filters):
    assert stage_filters(ConvParams(), shape) == filters
    assert stage_filters(ConvParams(filters=8, max_filters=16), shape) == tuple(min(f // 4, 16) for f in filters)


@pytest.mark.parametrize("kind", ["conv", "conv-vae"])
@pytest.mark.parametrize("shape", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_conv_kinds_build_and_train_at_every_size(kind, shape):
    keras.utils.set_random_seed(0)
    config = resolve_train_config(TrainConfig("data", "model", model=ModelConfig(kind, latent_dim=16)))
    model = build_autoencoder(config.model, shape)
    trainer = Trainer(model, tf.distribute.get_strategy(), config.learning_rate, image_shape=shape)
    images = tf.constant(np.random.default_rng(0).random((2, *shape), dtype=np.float32))
    weights = [w.numpy().copy() for w in model.trainable_variables]
    for _ in range(2):
        trainer.train_step({"inputs": images, "pixels": images})
    assert any(not np.array_equal(w, v.numpy()) for w, v in zip(weights, model.trainable_variables, strict=True))
    assert tuple(model(images).shape) == (2, *shape)
    assert tuple(model.encode(images).shape) == (2, 16)
    encoder_map = [layer for layer in model.encoder.layers if isinstance(layer, keras.layers.Conv2D)][-1]
    assert max(encoder_map.output.shape[1:3]) <= SMALLEST_MAP


def test_bad_conv_parameters_name_the_choices():
    with pytest.raises(ValueError, match="upsample must be one of transpose, nearest"):
        ConvParams(upsample="bilinear")
    with pytest.raises(ValueError, match="at most max_filters"):
        ConvParams(filters=64, max_filters=32)


@pytest.mark.parametrize("shape, latent_dim, spatial", [((32, 32, 3), 64, True), ((28, 28, 1), 32, False)])
def test_the_code_is_a_map_when_it_has_a_value_per_position(shape, latent_dim, spatial):
    model = build_autoencoder(ModelConfig("conv", latent_dim), shape)
    pointwise = [layer for layer in model.encoder.layers if getattr(layer, "kernel_size", None) == (1, 1)]
    assert bool(pointwise) == spatial  # 32x32 at 64-D: 61 learned values >= 4x4 positions; 28x28 at 32-D: 31 < 7x7


def test_the_first_code_values_are_the_mean_colour_and_set_the_output_colour():
    model = build_autoencoder(ModelConfig("conv", 16, params={"base": "mean-colour"}), (32, 32, 3))
    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    codes = model.encode(images).numpy()
    np.testing.assert_allclose(codes[:, :3], images.mean(axis=(1, 2)), rtol=1e-5)
    # Another mean colour in the code moves the decoded image's colour the same way.
    reddish, bluish = codes.copy(), codes.copy()
    reddish[:, :3], bluish[:, :3] = (0.9, 0.1, 0.1), (0.1, 0.1, 0.9)
    red, blue = model.decode(reddish).numpy(), model.decode(bluish).numpy()
    assert np.all(red[..., 0].mean(axis=(1, 2)) > blue[..., 0].mean(axis=(1, 2)))
    assert np.all(red[..., 2].mean(axis=(1, 2)) < blue[..., 2].mean(axis=(1, 2)))


def test_mean_colour_needs_code_values_left_to_learn():
    with pytest.raises(ValueError, match="raise --latent-dim or pass --param base=none"):
        build_autoencoder(ModelConfig("conv", 1), (28, 28, 1))
    assert build_autoencoder(ModelConfig("conv", 1, params={"base": "none"}), (28, 28, 1)).latent_dim == 1
    with pytest.raises(ValueError, match="base pca is not available for conv-vae"):
        build_autoencoder(ModelConfig("conv-vae", 8, params={"base": "pca"}), (32, 32, 3))
