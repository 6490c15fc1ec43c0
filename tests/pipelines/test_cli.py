"""The ``hourglass`` command: in-process with CliRunner, and once as a real console script."""

import glob
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipelines.cli import cli


def test_models_lists_every_kind_with_parameters():
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0
    assert json.loads(result.output)["dense"]["params"] == {"negative_slope": 0.2}


def test_unknown_kind_fails_with_the_known_ones(preprocessed, tmp_path):
    result = CliRunner().invoke(
        cli, ["train", "--data", preprocessed.output, "--model-dir", str(tmp_path), "--kind", "nope"]
    )
    assert result.exit_code == 1
    assert "unknown autoencoder kind 'nope'; known kinds: dense" in result.output


def test_bad_image_size_fails_clearly(tmp_path):
    result = CliRunner().invoke(
        cli, ["preprocess", "--input", "builtin:mnist", "--output", str(tmp_path), "--image-size", "28by28"]
    )
    assert result.exit_code == 1
    assert "image size must look like HxW" in result.output


def test_bad_background_and_format_fail_naming_the_choices(tmp_path):
    args = ["preprocess", "--input", "builtin:mnist", "--output", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--background", "purple"])
    assert result.exit_code == 1
    assert "colour must be black, white, grey, gray, #rrggbb or R,G,B (0..255), got 'purple'" in result.output
    result = CliRunner().invoke(cli, [*args, "--format", "hdf5"])
    assert result.exit_code == 2 and "'auto', 'images', 'idx', 'npy', 'npz', 'csv', 'tfrecord'" in result.output


def test_preprocess_and_infer_commands_on_a_folder(trained, image_tree, tmp_path):
    root, images = image_tree
    train_cfg, _ = trained
    result = CliRunner().invoke(
        cli, ["infer", "--model-dir", train_cfg.model_dir, "--input", str(root), "--output", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {len(images)} Parquet rows" in result.output


@pytest.mark.slow
@pytest.mark.integration
def test_console_script_runs_the_whole_job(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "hourglass")
    args = [script, "run", "--output", str(tmp_path), "--limit", "300", "--epochs", "2", "--latent-dim", "8"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "300 records read" in done.stdout and "300 Parquet rows" in done.stdout
    table = pq.read_table(glob.glob(str(tmp_path / "predictions" / "*.parquet")))
    assert table.num_rows == 300
    assert sorted(table.column("id").to_pylist()) == sorted(f"mnist/{i}" for i in range(300))
    assert {len(v) for v in table.column("latent").to_pylist()} == {8}
    for stage in ("data", "model", "predictions"):
        assert os.path.exists(tmp_path / stage / "config.json")
