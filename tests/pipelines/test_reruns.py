"""Reruns, failures and overlapping runs on real jobs: a rerun replaces and never mixes, a failed or
killed run leaves the earlier output byte for byte, two runs on one target give one clean output,
and outputs that overlap inputs are refused."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.config import EvaluateConfig, PreprocessConfig
from pipelines.evaluate.job import run_evaluate
from pipelines.inputs.images import encode_png
from pipelines.preprocess.job import run_preprocess
from tests.conftest import CLASSES, PER_CLASS, known_pixels, write_image_tree
from tests.helpers import HOURGLASS, read_rejected
from transforms.layout import SPLITS, split_pattern

RECORDS = len(CLASSES) * PER_CLASS


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _ids(data_dir) -> list[str]:
    """The record ids of every TFRecord shard of both splits."""
    files = [f for split in SPLITS for f in tf.io.gfile.glob(split_pattern(str(data_dir), split))]
    spec = {"id": tf.io.FixedLenFeature([], tf.string)}
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.io.parse_single_example(r, spec)["id"].numpy().decode() for r in records]


def _kill_when_staging_appears(args: list[str], parent: Path, name: str) -> subprocess.Popen:
    """Starts the console script with ``args`` and SIGKILLs it as soon as its staging folder for
    ``parent/name`` appears."""
    proc = subprocess.Popen([HOURGLASS, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list(parent.glob(f".{name}.staging-*")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    return proc


@pytest.mark.slow
def test_a_rerun_replaces_the_output_also_in_multi_process_mode(image_tree, tmp_path):
    root, images = image_tree
    out = tmp_path / "data"
    run_preprocess(PreprocessConfig(input=str(root), output=str(out), eval_percent=25))
    first = sorted(_ids(out))
    args = ["preprocess", "--input", str(root), "--output", str(out), "--eval-percent", "25"]
    rerun = CliRunner().invoke(cli, [*args, "--", "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert rerun.exit_code == 0, rerun.output
    assert sorted(_ids(out)) == first == sorted(images)  # the same records, and no more
    assert sorted(os.listdir(tmp_path)) == ["data"]  # no staging, no .old-*, no lock left


def test_a_failed_run_leaves_the_earlier_output_byte_for_byte(tmp_path):
    write_image_tree(tmp_path / "in")
    for i in range(3):
        (tmp_path / "in" / "cat" / f"broken-{i}.png").write_bytes(b"not a png")
    out = tmp_path / "data"
    args = ["preprocess", "--input", str(tmp_path / "in"), "--output", str(out)]
    assert CliRunner().invoke(cli, [*args, "--max-reject-fraction", "0.5"]).exit_code == 0
    before = _tree(out)
    failed = CliRunner().invoke(cli, args)  # the default 1% limit
    assert failed.exit_code == 1
    assert "3 of 27 records" in failed.output and f"{out} is left as it was" in failed.output
    assert _tree(out) == before
    kept = tmp_path / ".data.failed"
    assert f"dead letters in {kept}/rejected/" in failed.output
    assert sorted(r["id"] for r in read_rejected(kept / "rejected")) == [f"cat/broken-{i}.png" for i in range(3)]


@pytest.mark.slow
@pytest.mark.integration
def test_sigkill_during_preprocess_leaves_the_earlier_output_and_the_next_run_sweeps(image_tree, tmp_path):
    root, images = image_tree
    out = tmp_path / "data"
    cfg = PreprocessConfig(input=str(root), output=str(out), eval_percent=25)
    run_preprocess(cfg)
    before = _tree(out)
    _kill_when_staging_appears(["preprocess", "--input", str(root), "--output", str(out)], tmp_path, "data")
    assert _tree(out) == before
    assert [p.name for p in tmp_path.glob(".data.staging-*")]  # what the killed run left
    run_preprocess(cfg)
    assert sorted(_ids(out)) == sorted(images)
    assert sorted(os.listdir(tmp_path)) == ["data"]  # swept


@pytest.mark.slow
@pytest.mark.integration
def test_sigkill_during_evaluate_leaves_the_earlier_report(trained, preprocessed, tmp_path):
    train_cfg, _ = trained
    report = tmp_path / "report"
    run_evaluate(EvaluateConfig(model_dir=train_cfg.model_dir, output=str(report), data=preprocessed.output))
    before = _tree(report)
    args = ["evaluate", "--model-dir", train_cfg.model_dir, "--data", preprocessed.output, "--output", str(report)]
    _kill_when_staging_appears(args, tmp_path, "report")
    assert _tree(report) == before and "index.html" in before


@pytest.mark.slow
@pytest.mark.integration
def test_two_overlapping_runs_on_one_partition_give_one_clean_output(trained, tmp_path):
    train_cfg, _ = trained
    write_image_tree(tmp_path / "in")
    out = tmp_path / "predictions"
    args = ["infer", "--model-dir", train_cfg.model_dir, "--input", str(tmp_path / "in"), "--output", str(out)]
    args += ["--run-id", "R9"]
    first = subprocess.Popen([HOURGLASS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list(out.glob(".run_id=R9.staging-*")) and first.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    second = CliRunner().invoke(cli, args)  # while the first one runs
    _, err = first.communicate(timeout=240)
    assert first.returncode == 0, err[-3000:]
    assert second.exit_code == 75, second.output
    assert f"{out}/run_id=R9 is being written by another run (hourglass infer run " in second.output
    assert f"pid {first.pid} on " in second.output
    table = pq.read_table(out / "run_id=R9")
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == RECORDS
    assert os.listdir(out) == ["run_id=R9"]  # nothing of the second run, no staging


def test_outputs_that_overlap_inputs_are_refused(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(encode_png(known_pixels(0, 0)))
    same = CliRunner().invoke(cli, ["preprocess", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "in")])
    assert same.exit_code == 1
    assert f"--output {tmp_path / 'in'} is --input {tmp_path / 'in'}: the run would read its own output" in same.output
    (tmp_path / "m" / "saved_model").mkdir(parents=True)
    (tmp_path / "m" / "saved_model" / "model_info.json").write_text(
        '{"kind": "dense", "latent_dim": 1, "loss": "mse", "image_shape": [12, 10, 1], "model_hash": "f", "params": {}}'
    )
    args = ["infer", "--model-dir", str(tmp_path / "m"), "--input", str(tmp_path / "in")]
    inside = CliRunner().invoke(cli, [*args, "--output", str(tmp_path / "in" / "p"), "--run-id", "R"])
    assert inside.exit_code == 1
    assert f"--output {tmp_path / 'in' / 'p' / 'run_id=R'} is inside --input {tmp_path / 'in'}" in inside.output
    assert sorted(os.listdir(tmp_path / "in")) == ["a.png"]
