"""Job config files: resolution, overrides and errors that name the key."""

import os

import pytest

from pipelines.config_loader import beam_arguments, load_config_file, resolve_job_config, with_overrides
from transforms.errors import UserError


def test_defaults_put_every_stage_under_one_output():
    job, args = resolve_job_config({"output": "/runs/today"})
    assert job.preprocess.input == job.infer.input == "builtin:mnist"
    assert job.preprocess.output == job.train.data_dir == "/runs/today/data"
    assert job.train.model_dir == job.infer.model_dir == "/runs/today/model"
    assert job.infer.output == "/runs/today/predictions"
    assert job.evaluate.output == "/runs/today/report" and job.evaluate.data == "/runs/today/data"
    assert job.evaluate.model_dir == "/runs/today/model"
    assert args == []


def test_sections_fill_the_stage_dataclasses(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(
        "input: /data/digits\n"
        "beam_options: {direct_num_workers: 2, direct_running_mode: multi_processing, save_main_session: true}\n"
        "preprocess: {image_size: 32x24, channels: 3, resize: pad}\n"
        "train: {epochs: 3, learning_rate: 1, model: {kind: dense, latent_dim: 8}}\n"
        "infer: {batch_size_max: 256}\n"
    )
    job, args = resolve_job_config(load_config_file(str(path)))
    assert job.preprocess.input == "/data/digits" and job.preprocess.image_size == (32, 24)
    assert job.preprocess.channels == 3 and job.preprocess.resize == "pad"
    assert job.train.epochs == 3 and job.train.learning_rate == 1.0 and job.train.model.latent_dim == 8
    assert job.infer.batch_size_max == 256
    assert args == ["--direct_num_workers=2", "--direct_running_mode=multi_processing", "--save_main_session"]


def test_overrides_win_over_the_file_and_skip_unset_flags():
    data = {"train": {"epochs": 3, "model": {"kind": "dense"}}}
    merged = with_overrides(data, {"train.epochs": 7, "train.model.latent_dim": 2, "train.batch_size": None})
    job, _ = resolve_job_config(merged)
    assert job.train.epochs == 7 and job.train.model.latent_dim == 2 and job.train.batch_size == 128
    assert data == {"train": {"epochs": 3, "model": {"kind": "dense"}}}  # the input is not changed


@pytest.mark.parametrize(
    "data, message",
    [
        ({"ouput": "x"}, r"unknown key\(s\) ouput in config; allowed: input, output, reader, limit, beam_options"),
        ({"train": {"epoch": 3}}, r"unknown key\(s\) epoch in train; allowed: data_dir, model_dir, model, epochs"),
        ({"train": {"model": {"kin": "x"}}}, r"unknown key\(s\) kin in train.model; allowed: kind, latent_dim"),
        ({"train": {"epochs": "many"}}, r"train.epochs must be an integer, got 'many'"),
        ({"train": {"epochs": True}}, r"train.epochs must be an integer, got True"),
        ({"preprocess": {"resize": "zoom"}}, r"preprocess: resize must be one of stretch, pad, crop"),
        ({"preprocess": {"image_size": "big"}}, r"preprocess.image_size: image size must look like HxW"),
        ({"train": {"strategy": "tpu"}}, r"train: strategy must be one of auto, default, mirrored"),
        ({"preprocess": "fast"}, r"config key 'preprocess' must be a mapping"),
        ({"beam_options": 3}, r"beam_options must be a mapping"),
    ],
)
def test_bad_configs_name_the_key_and_the_allowed_values(data, message):
    with pytest.raises(ValueError, match=message):
        resolve_job_config(data)


def test_beam_options_as_a_list_pass_through():
    assert beam_arguments(["--runner=FlinkRunner", "--flink_master=localhost:8081"]) == [
        "--runner=FlinkRunner",
        "--flink_master=localhost:8081",
    ]


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="nope.yaml not found"):
        load_config_file(str(tmp_path / "nope.yaml"))
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="list.yaml must hold a mapping"):
        load_config_file(str(tmp_path / "list.yaml"))
    (tmp_path / "bad.yaml").write_text("train: {epochs: [\n")
    with pytest.raises(ValueError, match="bad.yaml is not valid YAML"):
        load_config_file(str(tmp_path / "bad.yaml"))


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    # 374 bytes that would expand to 9**9 strings under beam_options once walked.
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    levels += [f"{n}: &{n} [{', '.join(['*' + p] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("beam_options:\n" + "".join(f"  {line}\n" for line in levels))
    with pytest.raises(
        UserError, match=r"config file .*bomb\.yaml uses a YAML anchor &a at line 2: .* write the values"
    ):
        load_config_file(str(bomb))
    alias_only = tmp_path / "alias.yaml"
    alias_only.write_text("input: *nowhere\n")
    with pytest.raises(UserError, match=r"alias\.yaml uses a YAML alias \*nowhere at line 1"):
        load_config_file(str(alias_only))


def test_local_paths_become_absolute_and_uris_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = {
        "output": "runs/today",
        "reader": {"labels": "y.npy"},
        "train": {"warm_start": "~/models/old"},
        "infer": {"input": "gs://bucket/new/*.png", "output": "s3://bucket/predictions"},
        "evaluate": {"input": "images/"},
    }
    job, _ = resolve_job_config(data)
    assert job.preprocess.input == "builtin:mnist"
    assert job.preprocess.output == job.train.data_dir == str(tmp_path / "runs" / "today" / "data")
    assert job.train.model_dir == job.infer.model_dir == job.evaluate.model_dir == str(tmp_path / "runs/today/model")
    assert job.preprocess.reader.labels == job.infer.reader.labels == str(tmp_path / "y.npy")
    assert job.train.warm_start == os.path.expanduser("~/models/old")
    assert (job.infer.input, job.infer.output) == ("gs://bucket/new/*.png", "s3://bucket/predictions")
    assert job.evaluate.input == str(tmp_path / "images") and job.evaluate.output == str(tmp_path / "runs/today/report")
