"""The ``hourglass`` command: in-process with CliRunner, and once as a real console script."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from models.registry import known_kinds
from pipelines.cli import cli, resolve
from pipelines.inputs.images import encode_png
from tests.conftest import HEIGHT, WIDTH, known_pixels
from tests.helpers import HOURGLASS, ROOT, serve


def test_models_lists_every_kind_with_parameters():
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0
    listed = json.loads(result.output)
    assert sorted(listed) == ["conv", "conv-vae", "deep", "denoising", "dense", "linear", "sparse", "vae"]
    assert listed["dense"]["params"] == {"negative_slope": 0.2}
    assert listed["deep"]["params"]["tied"] is False
    assert listed["vae"]["training"]["loss"] == "bce"


def test_train_takes_kind_parameters_and_noise(preprocessed, tmp_path):
    args = ["train", "--data", preprocessed.output, "--model-dir", str(tmp_path), "--kind", "deep"]
    args += ["--latent-dim", "3", "--param", "widths=16,8", "--param", "tied=true", "--noise", "mask:0.3"]
    result = CliRunner().invoke(cli, [*args, "--epochs", "1", "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == {
        "kind": "deep",
        "latent_dim": 3,
        "loss": "mse",
        "params": {"widths": [16, 8], "activation": "relu", "tied": True},
        "noise": "mask:0.3",
        "corrupt": "mask:0.3",  # the resolved corruption, however it was given
    }
    assert config["learning_rate"] > 0  # the kind's default, resolved
    info = json.loads((tmp_path / "saved_model" / "model_info.json").read_text())
    assert info["denoising"] is True and info["noise"] == info["corruption"] == "mask:0.3"
    assert info["variational"] is False


@pytest.mark.slow
@pytest.mark.parametrize("kind", known_kinds())
def test_every_kind_trains_and_exports_from_the_command_line(kind, preprocessed, tmp_path):
    args = ["train", "--data", preprocessed.output, "--model-dir", str(tmp_path), "--kind", kind, "--epochs", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "saved_model" / "model_info.json").read_text())
    assert info["kind"] == kind
    outputs = serve(tmp_path / "saved_model", [encode_png(known_pixels(0, 0))])
    assert outputs["latent"].shape == (1, info["latent_dim"])
    assert outputs["reconstruction"].shape == (1, HEIGHT, WIDTH, 1)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--param", "depth=3"], "unknown parameter(s) depth for kind 'deep'; it takes: widths, activation, tied"),
        (["--param", "widths"], "--param takes KEY=VALUE"),
        (["--param", "tied=perhaps"], "parameter 'tied' of kind 'deep' must be true or false"),
        (["--noise", "blur:2"], "--noise must be one of gaussian:SIGMA, salt-pepper:P, mask:P, got 'blur:2'"),
        (["--corrupt", "sepia"], "--corrupt must be one of gaussian:SIGMA, salt-pepper:P, mask:P, grey, downscale:F"),
        (["--corrupt", "downscale:1"], "--corrupt: downscale:F needs an integer factor F >= 2, got 1"),
        (["--noise", "mask:0.3", "--corrupt", "grey"], "--noise mask:0.3 and --corrupt grey disagree"),
    ],
)
def test_bad_kind_parameters_fail_with_the_valid_ones(tmp_path, extra, message):
    result = CliRunner().invoke(
        cli, ["train", "--data", str(tmp_path), "--model-dir", str(tmp_path), "--kind", "deep", *extra]
    )
    assert result.exit_code == 1
    assert message in result.output


def test_unknown_kind_fails_with_the_known_ones(preprocessed, tmp_path):
    result = CliRunner().invoke(
        cli, ["train", "--data", preprocessed.output, "--model-dir", str(tmp_path), "--kind", "nope"]
    )
    assert result.exit_code == 1
    assert "unknown autoencoder kind 'nope'; known kinds: conv, conv-vae, deep, denoising, dense" in result.output


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


def test_infer_writes_a_run_partition_with_the_chosen_columns(trained, image_tree, tmp_path):
    root, images = image_tree
    args = ["infer", "--model-dir", trained[0].model_dir, "--input", str(root), "--output", str(tmp_path)]
    args += ["--run-id", "2026-02-01", "--outputs", "latent, reconstruction", "--pixels", "png"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"wrote {len(images)} Parquet rows, 0 rejected" in result.output and "RunInference:" in result.output
    table = pq.read_table(glob.glob(str(tmp_path / "run_id=2026-02-01" / "*.parquet")))
    assert table.schema.names[:5] == ["id", "source", "label", "latent", "reconstruction"]
    assert str(table.schema.field("reconstruction").type) == "binary"


def test_infer_refuses_a_tampered_model_without_a_traceback_unless_trusted(trained, image_tree, tmp_path):
    root, images = image_tree
    model_dir = tmp_path / "m"
    shutil.copytree(os.path.join(trained[0].model_dir, "saved_model"), model_dir / "saved_model")
    info_path = model_dir / "saved_model" / "model_info.json"
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), "kind": "conv"}))
    args = ["infer", "--model-dir", str(model_dir), "--input", str(root), "--output", str(tmp_path / "o")]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert f"{model_dir}/saved_model is refused: its model_hash does not match" in refused.output
    assert "pass --trust-model if you made this folder yourself" in refused.output
    assert not (tmp_path / "o").exists()
    trusted = CliRunner().invoke(cli, [*args, "--trust-model"])
    assert trusted.exit_code == 0, trusted.output
    table = pq.read_table(glob.glob(str(tmp_path / "o" / "*.parquet")))
    assert table.num_rows == len(images) and table.schema.metadata[b"hourglass.model_kind"] == b"conv"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--outputs", "latent,pixels"], "outputs must be a non-empty selection of latent, reconstruction, restored"),
        (["--run-id", "../up"], "run id must be letters, digits"),
        (["--watch", "somewhere"], "pass only one of --input"),
        (["--skip-existing"], "pass --run-id too"),
    ],
)
def test_infer_rejects_bad_options_naming_the_valid_ones(tmp_path, args, message):
    base = ["infer", "--model-dir", str(tmp_path), "--input", str(tmp_path), "--output", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, base + args)
    assert result.exit_code != 0 and message in result.output


@pytest.mark.slow
@pytest.mark.integration
def test_console_script_runs_the_whole_job(tmp_path):
    script = HOURGLASS
    config = os.path.join(ROOT, "deploy", "examples", "local.yaml")
    args = [script, "run", "--config", config, "--output", str(tmp_path), "--limit", "300", "--epochs", "2"]
    args += ["--latent-dim", "8"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "300 records read" in done.stdout and "300 Parquet rows" in done.stdout
    table = pq.read_table(glob.glob(str(tmp_path / "predictions" / "*.parquet")))
    assert table.num_rows == 300
    assert len(set(table.column("id").to_pylist())) == 300
    assert set(table.column("label").to_pylist()) == {str(digit) for digit in range(10)}  # --limit mixes classes
    assert {len(v) for v in table.column("latent").to_pylist()} == {8}
    for stage in ("data", "model", "report"):
        assert os.path.exists(tmp_path / stage / "config.json")
    assert os.path.exists(tmp_path / "predictions" / "_config.json")
    assert os.path.exists(tmp_path / "predictions" / "_manifest.json")
    assert f"-> {tmp_path / 'report' / 'index.html'}" in done.stdout
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["model"]["latent_dim"] == 8 and metrics["data"]["evaluated"] + metrics["data"]["reference"] == 300


def test_flags_override_the_config_file_and_absent_flags_keep_it(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text(
        "output: /runs/a\n"
        "beam_options: {direct_num_workers: 2}\n"
        "train: {epochs: 3, batch_size: 64, model: {kind: deep, latent_dim: 2, params: {widths: [64, 32]}}}\n"
    )
    argv = ["--config", str(config), "--epochs", "5", "--param", "tied=true", "--", "--runner=DirectRunner"]
    ctx = cli.commands["run"].make_context("run", argv)
    job, beam_args = resolve(ctx)
    assert job.train.epochs == 5 and job.train.batch_size == 64
    assert job.train.model.kind == "deep" and job.train.model.latent_dim == 2
    assert job.train.model.params["widths"] == (64, 32) and job.train.model.params["tied"] is True
    assert job.preprocess.output == "/runs/a/data" and job.infer.output == "/runs/a/predictions"
    assert beam_args == ["--direct_num_workers=2", "--runner=DirectRunner"]


def test_stage_commands_take_their_section_of_the_config(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text("output: /runs/b\ninfer: {batch_size_max: 64, pixels: png}\n")
    ctx = cli.commands["infer"].make_context("infer", ["--config", str(config), "--output", "/elsewhere"])
    job, _ = resolve(ctx)
    assert job.infer.model_dir == "/runs/b/model" and job.infer.output == "/elsewhere"
    assert job.infer.batch_size_max == 64 and job.infer.pixels == "png"


def test_a_bad_config_key_fails_naming_it(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text("train: {epochz: 3}\n")
    result = CliRunner().invoke(cli, ["train", "--config", str(config)])
    assert result.exit_code == 1
    assert "unknown key(s) epochz in train; allowed:" in result.output


@pytest.mark.slow
@pytest.mark.integration
def test_the_multi_process_example_config_runs(tmp_path):
    config = os.path.join(ROOT, "deploy", "examples", "local-multiprocess.yaml")
    argv = ["run", "--config", config, "--output", str(tmp_path), "--limit", "200", "--epochs", "1"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert "200 records read" in result.output and "200 Parquet rows" in result.output
    resolved = json.loads((tmp_path / "data" / "config.json").read_text())
    assert resolved["limit"] == 200 and resolved["input"] == "builtin:mnist"


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["preprocess", "--eval-percnt", "20"], "'--eval-percent'"),
        (["infer", "--model-dir", "m", "--input", "i", "--ouputs", "latent"], "'--outputs'"),
        (["run", "--epoch", "3"], "'--epochs'"),
    ],
)
def test_a_misspelled_option_fails_with_a_suggestion(argv, suggestion):
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2 and "No such option" in result.output
    assert "Did you mean" in result.output and suggestion in result.output


def test_beam_flags_are_taken_only_after_the_separator():
    stray = CliRunner().invoke(cli, ["preprocess", "--direct_num_workers=2"])
    assert stray.exit_code == 2 and "No such option" in stray.output
    extra = CliRunner().invoke(cli, ["preprocess", "somewhere"])
    assert extra.exit_code == 2 and "unexpected extra argument" in extra.output
    no_beam = CliRunner().invoke(cli, ["train", "--", "--runner=DirectRunner"])
    assert no_beam.exit_code == 2 and "runs no Beam pipeline" in no_beam.output


def test_run_takes_every_stages_options_and_evaluate_the_reader_options(tmp_path):
    argv = ["--input", str(tmp_path), "--image-size", "32x32", "--channels", "3", "--max-pixels", "99"]
    argv += ["--kind", "conv", "--outputs", "latent", "--threshold-percentile", "95", "--format", "images"]
    job, _ = resolve(cli.commands["run"].make_context("run", argv))
    assert job.preprocess.image_size == (32, 32) and job.preprocess.channels == 3
    assert job.preprocess.max_pixels == job.infer.max_pixels == job.evaluate.max_pixels == 99
    assert job.train.model.kind == "conv" and job.infer.outputs == ("latent",)
    assert job.evaluate.threshold_percentile == 95 and job.preprocess.reader.format == "images"
    argv = ["--model-dir", "m", "--input", str(tmp_path), "--output", "o", "--format", "npz", "--image-key", "x"]
    job, _ = resolve(cli.commands["evaluate"].make_context("evaluate", argv))
    assert job.evaluate.reader.format == "npz" and job.evaluate.reader.image_key == "x"


def test_help_shows_each_default_from_its_dataclass():
    result = CliRunner().invoke(cli, ["preprocess", "--help"])
    text = " ".join(result.output.split())
    assert result.exit_code == 0
    assert "by a hash of the id) that go to the eval split. [default: 10]" in text  # --eval-percent
    assert "[default: hourglass-output/data]" in text  # the derived output folder


def test_a_command_builds_only_its_stages_and_infer_never_imports_the_kinds(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text("train: {epochz: 3, model: {kind: nope}}\n")
    code = (
        "import sys\n"
        "from pipelines.cli import cli, resolve\n"
        f"ctx = cli.commands['infer'].make_context('infer', ['--config', {str(config)!r}, '--model-dir', 'm'])\n"
        "job, _ = resolve(ctx)\n"
        "print(job.train is None, job.infer.model_dir, 'models.kinds' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.split() == ["True", str(ROOT / "m"), "False"]  # paths resolve against the cwd
    result = CliRunner().invoke(cli, ["train", "--config", str(config)])
    assert result.exit_code == 1 and "unknown key(s) epochz in train" in result.output
