"""Training on a real preprocess output, and the exported SavedModel."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.model_info import ModelInfo
from models.training import TRAINING_JSON, train
from pipelines.inputs.images import encode_png
from tests.conftest import known_pixels
from transforms.errors import UserError


def test_training_records_history_and_improves(trained):
    cfg, result = trained
    assert len(result.history["loss"]) == cfg.epochs
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.history["eval_loss"][-1] < result.history["eval_loss"][0]
    report = json.loads(Path(cfg.model_dir, TRAINING_JSON).read_text())
    assert report["epochs_run"] == cfg.epochs and report["replicas"] == 1
    assert report["history"] == result.history


def test_export_takes_raw_bytes_and_returns_every_output(trained):
    _, result = trained
    loaded = tf.saved_model.load(result.saved_model)
    pixels = [known_pixels(0, 1), known_pixels(2, 5)]
    out = loaded.signatures["serving_default"](images=tf.constant([encode_png(p) for p in pixels]))
    assert out["latent"].shape == (2, 4)
    assert out["reconstruction"].shape == (2, 12, 10, 1)
    expected = np.mean((out["reconstruction"].numpy()[..., 0] - np.stack(pixels) / 255.0) ** 2, axis=(1, 2))
    np.testing.assert_allclose(out["reconstruction_error"].numpy(), expected, rtol=1e-5)


def test_encode_and_decode_signatures_agree_with_serving(trained):
    _, result = trained
    loaded = tf.saved_model.load(result.saved_model)
    images = tf.constant([encode_png(known_pixels(1, i)) for i in range(3)])
    served = loaded.signatures["serving_default"](images=images)
    latent = loaded.signatures["encode"](images=images)["latent"]
    np.testing.assert_allclose(latent.numpy(), served["latent"].numpy(), rtol=1e-6)
    decoded = loaded.signatures["decode"](latent=latent)["reconstruction"]
    np.testing.assert_allclose(decoded.numpy(), served["reconstruction"].numpy(), rtol=1e-5, atol=1e-6)


def test_model_info_records_identity(trained):
    cfg, _ = trained
    info = ModelInfo.read(cfg.model_dir)
    assert info.kind == "dense" and info.latent_dim == 4
    assert info.image_shape == (12, 10, 1)
    assert len(info.model_hash) == 64  # SHA-256 of the saved files and the other fields (models.model_check)


def test_missing_export_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="run `hourglass train` first"):
        ModelInfo.read(str(tmp_path))


def test_training_on_a_folder_without_data_names_the_fix(tmp_path):
    from models.config import TrainConfig
    from models.training import train

    with pytest.raises(UserError, match="run `hourglass preprocess"):
        train(TrainConfig(data_dir=str(tmp_path), model_dir=str(tmp_path / "m")))


def test_training_read_from_disk_every_epoch_follows_the_cached_run(trained, tmp_path):
    cached_cfg, cached = trained
    # --cache-mb 0: every epoch read from disk through the epoch stream; the same batches, so the same losses.
    cfg = dataclasses.replace(cached_cfg, model_dir=str(tmp_path / "from-disk"), cache_mb=0)
    from_disk = train(cfg)
    assert from_disk.epochs == cached.epochs == 10
    for key in ("loss", "eval_loss"):
        np.testing.assert_allclose(from_disk.history[key], cached.history[key], rtol=1e-5)
