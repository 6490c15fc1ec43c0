"""Training knows its data: the fingerprint in training.json and the checkpoints, refusing to resume
on changed data, --restart, a finished run doing nothing, and the export published atomically."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from models.checkpoints import CHECKPOINT_DIR
from models.config import ModelConfig, TrainConfig
from models.input_pipeline import data_fingerprint
from models.training import TRAINING_JSON, train
from pipelines.cli import cli
from pipelines.inputs.images import encode_png
from tests.conftest import known_pixels
from tests.helpers import fail_rename_into, serve
from transforms.errors import UserError


def _config(data_dir, model_dir, **kwargs) -> TrainConfig:
    kwargs = {"epochs": 1, "batch_size": 4, "learning_rate": 0.01, **kwargs}
    return TrainConfig(str(data_dir), str(model_dir), ModelConfig("dense", latent_dim=3), **kwargs)


def _train_command(data_dir, model_dir: Path):
    """``hourglass train`` for two epochs with the model of :func:`_config`."""
    args = ["--data", str(data_dir), "--model-dir", str(model_dir), "--epochs", "2", "--kind", "dense"]
    return CliRunner().invoke(cli, ["train", *args, "--latent-dim", "3"])


def _published(model_dir: Path) -> dict[str, bytes]:
    """The files a run publishes (export, training.json, config.json), by path."""
    files = [model_dir / TRAINING_JSON, model_dir / "config.json", *(model_dir / "saved_model").rglob("*")]
    return {str(p.relative_to(model_dir)): p.read_bytes() for p in files if p.is_file()}


def test_training_records_the_data_fingerprint_and_reports_this_runs_epochs(make_data, tmp_path):
    data = make_data()
    first = train(_config(data, tmp_path / "m"))
    second = train(_config(data, tmp_path / "m", epochs=3))
    assert (first.epochs_run, first.epochs) == (1, 1) and (second.epochs_run, second.epochs) == (2, 3)
    assert second.summary().startswith("trained 2 epochs (3 in total), eval loss ")
    report = json.loads((tmp_path / "m" / TRAINING_JSON).read_text())
    fingerprint = data_fingerprint(data)
    assert report["data"] == {"path": data, **fingerprint} and fingerprint["shards"] == {"train": 1, "eval": 1}
    assert report["epochs_this_invocation"] == 2 and report["epochs_run"] == 3
    assert json.loads((tmp_path / "m" / "config.json").read_text())["epochs"] == 3  # published with the export
    checkpoint = tf.train.latest_checkpoint(str(tmp_path / "m" / CHECKPOINT_DIR))
    progress = json.loads(tf.train.load_variable(checkpoint, "progress/.ATTRIBUTES/py_state"))
    assert progress["data_fingerprint"] == fingerprint["fingerprint"]


def test_resuming_on_changed_data_names_the_fix_and_restart_starts_over(make_data, tmp_path):
    model_dir = tmp_path / "m"
    train(_config(make_data(), model_dir, epochs=2))
    before = _published(model_dir)
    changed = make_data(train=(20, 4))  # another preprocess output: other shards, other records
    with pytest.raises(UserError, match=r"were trained on other data .*pass a new --model-dir to train on it, or "):
        train(_config(changed, model_dir, epochs=3))
    assert _published(model_dir) == before
    result = _train_command(changed, model_dir)
    assert result.exit_code == 1 and "or --restart to start over in" in result.output
    restarted = train(_config(changed, model_dir, epochs=2, restart=True))
    assert restarted.resumed_from is None and restarted.epochs_run == 2
    report = json.loads((model_dir / TRAINING_JSON).read_text())
    assert report["data"]["fingerprint"] == data_fingerprint(changed)["fingerprint"]
    assert report["global_step"] == 2 * 6  # 24 records / batch 4, twice: from scratch


def test_a_finished_run_with_the_same_data_does_nothing_and_says_so(make_data, tmp_path):
    data, model_dir = make_data(), tmp_path / "m"
    train(_config(data, model_dir, epochs=2))
    before = _published(model_dir)
    result = _train_command(data, model_dir)
    assert result.exit_code == 0, result.output
    assert "nothing to do: already trained 2 epochs on this data" in result.output
    assert _published(model_dir) == before


def test_a_fault_in_the_final_rename_keeps_the_previous_export(make_data, tmp_path, monkeypatch):
    data, model_dir = make_data(), tmp_path / "m"
    train(_config(data, model_dir))
    before = _published(model_dir)
    fail_rename_into(monkeypatch, model_dir / "saved_model")  # moving the new export in fails
    with pytest.raises(OSError, match="injected"):
        train(_config(data, model_dir, epochs=2))
    assert _published(model_dir) == before
    served = serve(model_dir / "saved_model", [encode_png(known_pixels(0, 0))])
    assert served["latent"].shape == (1, 3) and np.isfinite(served["reconstruction"]).all()
    assert sorted(os.listdir(tmp_path)) == sorted(["m", Path(data).name])  # no staging or .old-* left
