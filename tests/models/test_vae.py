"""The VAEs: KL term, reparameterized sampling and the mean code, checked numerically."""

import numpy as np
import pytest
import tensorflow as tf

from models.base import gaussian_kl
from models.config import ModelConfig
from models.registry import build_autoencoder

SHAPE = (6, 5, 1)


def test_gaussian_kl_matches_the_closed_form_and_a_monte_carlo_estimate():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(3, 4)).astype("float32")
    log_var = rng.normal(scale=0.5, size=(3, 4)).astype("float32")
    expected = 0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=1)
    np.testing.assert_allclose(gaussian_kl(mean, log_var).numpy(), expected, rtol=1e-5)
    # E_q[log q(z) - log p(z)] over draws from q: the definition, not the formula.
    std = np.exp(0.5 * log_var)
    z = mean + std * rng.normal(size=(200_000, 3, 4))
    log_q = -0.5 * (((z - mean) / std) ** 2 + log_var + np.log(2 * np.pi))
    log_p = -0.5 * (z**2 + np.log(2 * np.pi))
    np.testing.assert_allclose(np.mean(np.sum(log_q - log_p, axis=2), axis=0), expected, rtol=0.03, atol=0.01)
    assert np.all(gaussian_kl(np.zeros((1, 4)), np.zeros((1, 4))).numpy() == 0.0)


@pytest.mark.parametrize("kind", ["vae", "conv-vae"])
def test_training_codes_are_reparameterized_samples_and_the_penalty_is_the_scaled_kl(kind):
    model = build_autoencoder(ModelConfig(kind, latent_dim=3, params={"beta": 2.0}), SHAPE)
    image = np.random.default_rng(1).random((1, *SHAPE)).astype("float32")
    images = tf.constant(np.repeat(image, 20_000, axis=0))
    mean, log_var = (t.numpy()[0] for t in model.posterior(image))
    codes, penalty = (t.numpy() for t in model.code_and_penalty(images, training=True))
    np.testing.assert_allclose(codes.mean(axis=0), mean, atol=0.05)
    np.testing.assert_allclose(codes.std(axis=0), np.exp(0.5 * log_var), rtol=0.05)
    kl = 0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var)
    np.testing.assert_allclose(penalty, np.full(20_000, 2.0 * kl / np.prod(SHAPE)), rtol=1e-4)
    eval_codes, _ = model.code_and_penalty(image, training=False)
    np.testing.assert_array_equal(eval_codes.numpy()[0], mean)
    np.testing.assert_array_equal(model.encode(image).numpy()[0], mean)


def test_samples_from_the_prior_are_images():
    model = build_autoencoder(ModelConfig("vae", latent_dim=2), SHAPE)
    samples = model.sample(7).numpy()
    assert samples.shape == (7, *SHAPE)
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    assert samples.std(axis=0).max() > 0  # different draws decode to different images


def test_loss_is_the_negative_elbo_per_pixel():
    model = build_autoencoder(ModelConfig("vae", latent_dim=2, loss="bce"), SHAPE)
    images = np.random.default_rng(2).random((4, *SHAPE)).astype("float32")
    loss = model.per_example_loss(images, images, training=False).numpy()
    mean, log_var = model.posterior(images)
    recon = model.decode(mean).numpy().reshape(4, -1).clip(1e-7, 1 - 1e-7)
    flat = images.reshape(4, -1)
    bce = -np.mean(flat * np.log(recon) + (1 - flat) * np.log(1 - recon), axis=1)
    kl = gaussian_kl(mean, log_var).numpy()
    np.testing.assert_allclose(loss, bce + kl / np.prod(SHAPE), rtol=1e-4)
