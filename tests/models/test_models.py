"""Every registered kind: builds, shapes, learns, and refuses bad configs."""

import numpy as np
import pytest
import tensorflow as tf

from models.config import ModelConfig
from models.registry import build_autoencoder, describe_kinds, known_kinds, resolve_params
from models.training import Trainer

SHAPES = [(28, 28, 1), (32, 32, 3)]


def _images(shape, n=16, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth images (a per-image brightness times a fixed pattern) that a small code can capture.
    pattern = rng.random(shape).astype("float32")
    return (rng.random((n, 1, 1, 1)).astype("float32") * pattern).clip(0, 1)


@pytest.mark.parametrize("kind", known_kinds())
@pytest.mark.parametrize("shape", SHAPES)
def test_output_and_latent_shapes(kind, shape):
    model = build_autoencoder(ModelConfig(kind, latent_dim=8), shape)
    images = _images(shape, n=5)
    assert tuple(model(images).shape) == (5, *shape)
    assert tuple(model.encode(images).shape) == (5, 8)
    out = model(images).numpy()
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("kind", known_kinds())
def test_a_few_steps_lower_the_loss(kind):
    shape = (28, 28, 1)
    model = build_autoencoder(ModelConfig(kind, latent_dim=4), shape)
    trainer = Trainer(model, tf.distribute.get_strategy(), learning_rate=0.01, image_shape=shape)
    batch = {"inputs": tf.constant(_images(shape, n=32)), "pixels": tf.constant(_images(shape, n=32))}
    first = float(trainer.eval_step(batch))
    for _ in range(20):
        trainer.train_step(batch)
    assert float(trainer.eval_step(batch)) < 0.8 * first


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"known kinds: .*dense"):
        build_autoencoder(ModelConfig("transformer"), (28, 28, 1))


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(ValueError, match="it takes: negative_slope"):
        resolve_params("dense", {"depth": 3})


@pytest.mark.parametrize(
    "kwargs, message", [({"latent_dim": 0}, "latent_dim must be positive"), ({"loss": "l1"}, "mse, bce")]
)
def test_bad_model_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig("dense", **kwargs)


def test_describe_kinds_lists_parameters_with_defaults():
    described = describe_kinds()
    assert set(described) == set(known_kinds())
    assert described["dense"]["params"] == {"negative_slope": 0.2}
