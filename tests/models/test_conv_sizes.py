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
