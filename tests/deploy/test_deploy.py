"""deploy/: every manifest and config parses, and every command in it is a real ``hourglass``
command whose options exist (checked by click's own parser, not by string matching)."""

import ast
import json
import re
import shlex
import subprocess
import sys
import tarfile
import zipfile

import click
import pytest
import yaml

from pipelines.cli import cli
from pipelines.config_loader import load_config_file, resolve_job_config
from pipelines.flex_template import TEMPLATE_OPTIONS, template_argv
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"
DATE = "2026-11-22"


def parse_hourglass(argv: list[str]) -> click.Context:
    """Parses ``hourglass SUBCOMMAND ...`` with the real CLI; raises click errors on bad options."""
    assert argv[0].endswith("hourglass"), argv
    name, *args = argv[1:]
    assert name in cli.commands, f"{name!r} is not an hourglass command ({', '.join(cli.commands)})"
    return cli.commands[name].make_context(name, args)


def _shell_words(text: str) -> list[str]:
    text = text.replace("$(date -u +\\%F)", DATE).replace("$(date -u +%F)", DATE).replace("{{ ds }}", DATE)
    return shlex.split(text)


def _hourglass_commands_in(words: list[str]) -> list[list[str]]:
    """Every ``hourglass ...`` command in a word list, up to a shell redirection."""
    commands = []
    for i, word in enumerate(words):
        if word.endswith("hourglass") and i + 1 < len(words) and words[i + 1] in cli.commands:
            end = next((j for j in range(i + 1, len(words)) if words[j] in (">>", ">", "2>&1", "&&", ";")), len(words))
            commands.append(words[i:end])
    return commands


def deploy_commands() -> dict[str, list[list[str]]]:
    """The hourglass commands each deploy file runs."""
    found = {}
    tfjob = yaml.safe_load((DEPLOY / "k8s" / "train-multiworker.yaml").read_text())
    found["k8s/train-multiworker.yaml"] = [
        spec["template"]["spec"]["containers"][0]["command"] + spec["template"]["spec"]["containers"][0]["args"]
        for spec in tfjob["spec"]["tfReplicaSpecs"].values()
    ]
    cron = yaml.safe_load((DEPLOY / "k8s" / "cronjob-infer.yaml").read_text())
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    found["k8s/cronjob-infer.yaml"] = _hourglass_commands_in(_shell_words(" ".join(container["args"])))
    dag = ast.parse((DEPLOY / "airflow" / "hourglass_nightly.py").read_text())
    (command,) = [
        ast.literal_eval(n.value) for n in dag.body if isinstance(n, ast.Assign) and n.targets[0].id == "INFER_COMMAND"
    ]
    found["airflow/hourglass_nightly.py"] = _hourglass_commands_in(_shell_words(command))
    crontab = [line for line in (DEPLOY / "cron" / "crontab").read_text().splitlines() if line and line[0] != "#"]
    found["cron/crontab"] = [c for line in crontab for c in _hourglass_commands_in(_shell_words(line))]
    for readme in (ROOT / "README.md", DEPLOY / "README.md"):
        blocks = re.findall(r"```bash\n(.*?)```", readme.read_text(), flags=re.S)
        text = "\n".join(blocks).replace("\\\n", " ")
        lines = [re.sub(r"\s+#.*$", "", line) for line in text.splitlines() if line.strip().startswith("hourglass ")]
        found[readme.relative_to(ROOT).as_posix()] = [_shell_words(line) for line in lines]
    return found


@pytest.mark.parametrize("path", sorted(p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*.y*ml")))
def test_every_yaml_parses(path):
    documents = list(yaml.safe_load_all((DEPLOY / path).read_text()))
    assert documents and all(isinstance(d, dict) for d in documents)


@pytest.mark.parametrize("path", sorted(p.name for p in (DEPLOY / "examples").glob("*.yaml")))
def test_every_example_config_resolves(path):
    job, beam_args = resolve_job_config(load_config_file(str(DEPLOY / "examples" / path)))
    assert job.train.data_dir == job.preprocess.output and job.infer.model_dir == job.train.model_dir
    if path.startswith("local"):
        assert job.preprocess.input == "builtin:mnist"
    else:
        assert any(arg.startswith("--runner=") for arg in beam_args)


@pytest.mark.parametrize("source, commands", sorted(deploy_commands().items()))
def test_deploy_commands_are_real_hourglass_commands(source, commands):
    assert commands, f"no hourglass command found in {source}"
    for argv in commands:
        ctx = parse_hourglass(argv)
        assert ctx.params, argv


def test_scheduled_runs_are_dated_partitions():
    for source in ("k8s/cronjob-infer.yaml", "airflow/hourglass_nightly.py", "cron/crontab"):
        (argv,) = deploy_commands()[source]
        params = parse_hourglass(argv).params
        assert params["run_id"] == DATE and DATE in params["input"], source


def test_multi_worker_spec_trains_with_the_multi_worker_strategy():
    for argv in deploy_commands()["k8s/train-multiworker.yaml"]:
        assert parse_hourglass(argv).params["strategy"] == "multi-worker"


def test_flex_template_parameters_map_to_infer_options():
    metadata = json.loads((DEPLOY / "dataflow" / "metadata.json").read_text())
    assert {p["name"] for p in metadata["parameters"]} == set(TEMPLATE_OPTIONS)
    argv = template_argv(["--model_dir=gs://b/m", "--input=gs://b/i/", "--output=gs://b/p", "--run_id=d", "--runner=X"])
    ctx = parse_hourglass(["hourglass", *argv])
    params = ctx.params
    assert (params["model_dir"], params["input"], params["output"], params["run_id"]) == (
        "gs://b/m",
        "gs://b/i/",
        "gs://b/p",
        "d",
    )
    assert ctx.meta["beam_args"] == ["--runner=X"]


@pytest.mark.slow
def test_sdist_and_wheel_hold_the_three_packages_and_the_entry_point(tmp_path):
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)], cwd=ROOT, check=True)
    (sdist,) = tmp_path.glob("hourglass-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    for module in ("setup.py", "pipelines/cli.py", "models/training.py", "transforms/preprocessing.py"):
        assert any(n.endswith(module) for n in names), module
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(sdist),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("hourglass-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        assert "hourglass = pipelines.cli:main" in zf.read(entry_points).decode()
    for package in ("pipelines", "models", "transforms"):
        assert f"{package}/__init__.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "deploy/")) for n in names)
