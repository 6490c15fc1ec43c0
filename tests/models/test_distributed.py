"""Training under tf.distribute: MirroredStrategy over two logical CPUs, two real
MultiWorkerMirroredStrategy workers on loopback ports, and mixed precision."""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from models.config import ModelConfig, TrainConfig
from models.model_info import ModelInfo
from models.strategies import make_strategy
from models.training import TRAINING_JSON, train
from pipelines.inputs.images import encode_png
from tests.conftest import known_pixels
from tests.helpers import HOURGLASS, ROOT, serve


def _serve(saved_model: str, n: int = 3) -> dict:
    return serve(saved_model, [encode_png(known_pixels(1, i)) for i in range(n)])


@pytest.mark.slow
def test_mirrored_over_two_cpus_follows_the_default_strategy(preprocessed, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tests.models.two_cpus", preprocessed.output, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reports = json.loads(done.stdout.strip().splitlines()[-1])
    default, mirrored = reports["default"], reports["mirrored"]
    assert (default["strategy"], default["replicas"]) == ("DefaultStrategy", 1)
    assert (mirrored["strategy"], mirrored["replicas"]) == ("MirroredStrategy", 2)
    assert default["global_batch"] == mirrored["global_batch"] == 8
    assert default["global_step"] == mirrored["global_step"] > 0
    # The same global batches split over two replicas: the same trajectory up to float summation order.
    for key in ("loss", "eval_loss"):
        np.testing.assert_allclose(mirrored["history"][key], default["history"][key], rtol=1e-5)
    assert default["history"]["eval_loss"][-1] < default["history"]["eval_loss"][0]
    assert _serve(mirrored["saved_model"])["latent"].shape == (3, 4)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.integration
def test_two_workers_train_in_step_and_only_the_chief_exports(make_data, tmp_path):
    # Three train shards over two workers: sharded by file, unevenly (5 + 3 against 4 records).
    # mixed_float16: loss scaling must skip or apply each step on both workers alike.
    data = make_data(train=(5, 4, 3), eval=(3,))
    model_dir = tmp_path / "model"
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    args = [HOURGLASS, "train", "--data", data, "--model-dir", str(model_dir), "--strategy", "multi-worker"]
    args += ["--epochs", "2", "--batch-size", "2", "--latent-dim", "3", "--precision", "mixed_float16"]
    configs = [{"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}} for i in range(2)]
    procs = [
        subprocess.Popen(
            args,
            env=dict(os.environ, TF_CONFIG=json.dumps(tf_config)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tf_config in configs
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    # Every worker reports the same (all-reduced) losses, epoch by epoch.
    epochs = [re.findall(r"epoch \d/2: loss ([\d.]+), eval_loss ([\d.]+)", err) for _, err in outputs]
    assert len(epochs[0]) == 2 and epochs[0] == epochs[1]
    report = json.loads((model_dir / TRAINING_JSON).read_text())
    assert report["strategy"] == "MultiWorkerMirroredStrategy"
    assert report["workers"] == 2 and report["replicas"] == 2 and report["global_batch"] == 4
    assert report["shard_policy"] == {"train": "FILE", "eval": "DATA"} and report["precision"] == "mixed_float16"
    assert ModelInfo.read(str(model_dir)).latent_dim == 3
    assert _serve(report["saved_model"])["latent"].shape == (3, 3)
    # Only the chief wrote into the model folder: one set of logs, checkpoints named by global step.
    assert len(list((model_dir / "logs" / "train").iterdir())) == 1
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith(f"ckpt-{report['global_step']}")


def test_multi_worker_without_tf_config_names_the_fix(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG, which is not set; set TF_CONFIG on every worker"):
        make_strategy("multi-worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ValueError, match="needs both 'cluster' and 'task'"):
        make_strategy("multi-worker")


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_and_exports_float32(preprocessed, tmp_path, precision):
    cfg = TrainConfig(
        preprocessed.output,
        str(tmp_path),
        ModelConfig("dense", latent_dim=4, loss="bce"),
        epochs=3,
        batch_size=4,
        learning_rate=0.01,
        precision=precision,
    )
    result = train(cfg)
    assert all(np.isfinite(result.history["loss"])) and result.history["loss"][-1] < result.history["loss"][0]
    served = _serve(result.saved_model)
    assert {v.dtype for k, v in served.items() if k != "is_anomaly"} == {np.dtype("float32")}
    assert served["is_anomaly"].dtype == np.dtype("bool")  # the one non-float output
    assert np.isfinite(served["reconstruction_error"]).all()
