"""``linear`` under MSE learns the PCA subspace: small principal angles, MSE within 3% of PCA-k."""

import numpy as np
import tensorflow as tf
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

from models.config import ModelConfig
from models.registry import build_autoencoder
from models.training import Trainer

SHAPE, K = (8, 8, 1), 3


def _low_rank_images(n: int, seed: int) -> np.ndarray:
    """Three strong directions (std 0.2, 0.12, 0.08) plus isotropic noise (std 0.03).

    Centred on 0: an offset does not move the optimum (the biases absorb it) but makes the
    problem badly conditioned, so it would only make the test slow; the quality benchmark checks
    the real digits, offset and all.
    """
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(64, K)))
    codes = rng.normal(size=(n, K)) * np.array([0.2, 0.12, 0.08])
    flat = codes @ basis.T + rng.normal(scale=0.03, size=(n, 64))
    return flat.reshape(n, *SHAPE).astype("float32")


def test_linear_autoencoder_recovers_the_pca_subspace():
    train, held_out = _low_rank_images(512, seed=1), _low_rank_images(256, seed=2)
    model = build_autoencoder(ModelConfig("linear", latent_dim=K), SHAPE)
    trainer = Trainer(model, tf.distribute.get_strategy(), learning_rate=0.01, image_shape=SHAPE)
    batch = {"inputs": tf.constant(train), "pixels": tf.constant(train)}
    for _ in range(300):
        trainer.train_step(batch)

    pca = PCA(n_components=K).fit(train.reshape(len(train), -1))
    decoder_kernel = model.decoder.layers[0].kernel.numpy()  # (K, 64): its rows span the decoded images
    angles = np.degrees(subspace_angles(decoder_kernel.T, pca.components_.T))
    assert angles.max() < 1.0, angles

    flat = held_out.reshape(len(held_out), -1)
    pca_mse = np.mean((pca.inverse_transform(pca.transform(flat)) - flat) ** 2)
    # training=True: the affine map itself (at inference the outputs are also clipped to [0, 1]).
    model_mse = np.mean((model(held_out, training=True).numpy().reshape(len(held_out), -1) - flat) ** 2)
    assert model_mse <= 1.03 * pca_mse, (model_mse, pca_mse)
