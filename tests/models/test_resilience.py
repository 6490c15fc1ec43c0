"""Interrupted and bad runs: resume after SIGKILL, NaN losses, plateaus, warm starts, clear errors."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from models.checkpoints import CHECKPOINT_DIR, Progress
from models.config import ModelConfig, TrainConfig
from models.model_info import ModelInfo
from models.training import LOG_DIR, TRAINING_JSON, train
from pipelines.cli import cli
from pipelines.inputs.images import encode_png
from tests.conftest import known_pixels
from tests.helpers import HOURGLASS, serve
from transforms.errors import UserError


def _config(data_dir, model_dir, **kwargs) -> TrainConfig:
    kwargs = {"epochs": 2, "batch_size": 4, "learning_rate": 0.01, **kwargs}
    return TrainConfig(str(data_dir), str(model_dir), ModelConfig("dense", latent_dim=3), **kwargs)


def _report(model_dir) -> dict:
    return json.loads(Path(model_dir, TRAINING_JSON).read_text())


def _latest_step(model_dir) -> int:
    return int(tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIR)).rsplit("-", 1)[1])


@pytest.mark.slow
@pytest.mark.integration
def test_a_run_killed_mid_epoch_resumes_from_its_last_checkpoint(make_data, tmp_path):
    data = make_data(train=(300, 300), eval=(20,))
    model_dir = tmp_path / "model"
    steps_per_epoch = 600 // 2
    args = ["train", "--data", data, "--model-dir", str(model_dir), "--epochs", "2", "--batch-size", "2"]
    args += ["--latent-dim", "3", "--checkpoint-every", "25"]
    proc = subprocess.Popen([HOURGLASS, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = model_dir / CHECKPOINT_DIR / "checkpoint"
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    assert not (model_dir / "saved_model").exists()
    killed_at = _latest_step(model_dir)
    assert 0 < killed_at < 2 * steps_per_epoch

    rerun = CliRunner().invoke(cli, args)  # the same command again
    assert rerun.exit_code == 0, rerun.output
    report = _report(model_dir)
    epoch, step = divmod(killed_at, steps_per_epoch)
    assert report["resumed_from"] == {"epoch": epoch, "step": step, "global_step": killed_at}
    # The resumed epoch skipped exactly the steps already done: no step was run twice.
    assert report["global_step"] == 2 * steps_per_epoch and report["epochs_run"] == 2
    assert len(report["history"]["loss"]) == 2
    out = serve(model_dir / "saved_model", [encode_png(known_pixels(0, 0))])
    assert out["latent"].shape == (1, 3)


def test_a_finished_run_continues_when_asked_for_more_epochs(preprocessed, tmp_path):
    first = train(_config(preprocessed.output, tmp_path, epochs=1))
    second = train(_config(preprocessed.output, tmp_path, epochs=2))
    assert first.resumed_from is None
    assert second.resumed_from["epoch"] == 1 and second.resumed_from["step"] == 0
    assert second.history["loss"][0] == first.history["loss"][0] and len(second.history["loss"]) == 2


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_export(preprocessed, make_data, tmp_path):
    good = train(_config(preprocessed.output, tmp_path, epochs=1))
    before = ModelInfo.read(str(tmp_path))
    bad = make_data(value=float("nan"))
    trained = _report(tmp_path)
    # Other data: --restart (resuming the first run's checkpoints on it is refused).
    with pytest.raises(FloatingPointError, match=r"train loss became nan in epoch 1 \(step 1\).*untouched"):
        train(_config(bad, tmp_path, epochs=2, restart=True))
    assert ModelInfo.read(str(tmp_path)) == before
    assert _report(tmp_path) == trained
    served = serve(good.saved_model, [encode_png(known_pixels(0, 0))])
    assert np.isfinite(served["reconstruction"]).all()


def test_plateau_reduces_the_learning_rate_then_stops_early(preprocessed, tmp_path):
    # min_delta 1 makes every epoch after the first "no improvement".
    cfg = _config(
        preprocessed.output,
        tmp_path,
        epochs=6,
        early_stopping_patience=2,
        reduce_lr_patience=1,
        reduce_lr_factor=0.5,
        min_delta=1.0,
    )
    result = train(cfg)
    assert result.stopped_early and result.epochs == 3
    np.testing.assert_allclose(result.history["learning_rate"], [0.01, 0.01, 0.005], rtol=1e-6)
    report = _report(tmp_path)
    assert report["stopped_early"] and report["epochs_run"] == 3
    assert set(report["history"]) == {"loss", "eval_loss", "learning_rate"}
    assert report["examples_per_second"] > 0 and report["wall_seconds"] > 0
    # TensorBoard logs: one loss point per epoch for train and eval.
    for split in ("train", "eval"):
        events = tf.data.TFRecordDataset([str(p) for p in (tmp_path / LOG_DIR / split).iterdir()])
        tags = [v.tag for e in events for v in tf.compat.v1.Event.FromString(e.numpy()).summary.value]
        assert tags.count("loss") == 3
    # Started again, a run that stopped early stays stopped.
    assert train(cfg).epochs == 3


@pytest.mark.parametrize(
    "losses, patience, expected",
    [
        ([1.0, 0.9, 0.8], (0, 0), [(False, False)] * 3),
        ([1.0, 1.0, 1.0, 1.0], (2, 0), [(False, False), (False, False), (True, False), (True, False)]),
        (
            [1.0, 1.0, 1.0, 0.5, 0.6],
            (0, 1),
            [(False, False), (False, True), (False, True), (False, False), (False, True)],
        ),
    ],
)
def test_progress_tracks_plateaus_like_keras_callbacks(losses, patience, expected):
    cfg = TrainConfig("d", "m", early_stopping_patience=patience[0], reduce_lr_patience=patience[1])
    progress = Progress()
    assert [progress.end_epoch(0.0, loss, 1e-3, cfg) for loss in losses] == expected
    assert progress.epoch == len(losses) and progress.history["eval_loss"] == losses


def test_warm_start_continues_from_a_model_of_the_same_kind_and_shape(trained, tmp_path):
    trained_cfg, trained_result = trained
    cfg = TrainConfig(
        trained_cfg.data_dir,
        str(tmp_path),
        trained_cfg.model,
        epochs=1,
        batch_size=8,
        learning_rate=1e-6,
        warm_start=trained_cfg.model_dir,
    )
    result = train(cfg)
    assert result.history["eval_loss"][0] < trained_result.history["eval_loss"][0]
    np.testing.assert_allclose(result.history["eval_loss"][0], trained_result.history["eval_loss"][-1], rtol=0.02)
    assert _report(tmp_path)["warm_start"] == trained_cfg.model_dir


def test_warm_start_from_another_shape_names_the_fix(trained, tmp_path):
    trained_cfg, _ = trained
    cfg = TrainConfig(
        trained_cfg.data_dir, str(tmp_path), ModelConfig("dense", latent_dim=5), warm_start=trained_cfg.model_dir
    )
    with pytest.raises(ValueError, match=r"holds a different model \(latent_dim 4, not 5\); warm-start from a model"):
        train(cfg)


def test_a_model_dir_holding_another_model_names_the_fix(trained, tmp_path):
    trained_cfg, _ = trained
    config = Path(trained_cfg.model_dir, "config.json").read_bytes()
    result = CliRunner().invoke(
        cli, ["train", "--data", trained_cfg.data_dir, "--model-dir", trained_cfg.model_dir, "--latent-dim", "6"]
    )
    assert result.exit_code == 1
    assert "already holds a different model" in result.output and "latent_dim 4, not 6" in result.output
    assert "pass a new --model-dir, or delete" in result.output
    # A refused run writes nothing there: the config published with the export is the fixture's.
    assert Path(trained_cfg.model_dir, "config.json").read_bytes() == config


@pytest.mark.parametrize(
    "setup, error, message",
    [
        ("missing", UserError, "does not exist; run `hourglass preprocess --output"),
        ("empty", UserError, "holds no tf.Transform output; run `hourglass preprocess"),
        ("no_eval_records", ValueError, r"eval TFRecords in .* hold no records; .*or with a larger --eval-percent"),
        ("other_shape", ValueError, "does not match .*expected images of shape 12x10x1.*different preprocess runs"),
    ],
)
def test_bad_data_folders_name_the_fix(make_data, tmp_path, setup, error, message):
    data = {
        "missing": lambda: str(tmp_path / "nope"),
        "empty": lambda: str(tmp_path),
        "no_eval_records": lambda: make_data(eval=(0,)),
        "other_shape": lambda: make_data(size=99),
    }[setup]()
    with pytest.raises(error, match=message):
        train(_config(data, tmp_path / "model"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"strategy": "tpu"}, "strategy must be one of auto, default, mirrored, multi-worker, got 'tpu'"),
        ({"precision": "float8"}, "precision must be one of float32, mixed_float16, mixed_bfloat16"),
        ({"lr_scaling": "cubic"}, "lr_scaling must be one of none, linear, sqrt"),
        ({"checkpoint_every_steps": -1}, "must not be negative"),
        ({"reduce_lr_factor": 1.5}, "reduce_lr_factor must be between 0 and 1"),
    ],
)
def test_bad_train_options_name_the_valid_ones(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig("data", "model", **kwargs)
