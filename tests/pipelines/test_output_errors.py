"""Outputs that cannot be written (a file, a read-only or full file system): a UserError naming the
path and the fix, no traceback, for preprocess, train, infer and evaluate."""

import errno
import subprocess

import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from tests.conftest import write_image_tree
from transforms.errors import storage_error


def _commands(tmp_path, output: str) -> dict[str, list[str]]:
    """Each command's arguments with ``output`` as the folder it writes (inputs need not exist:
    the output is checked first)."""
    source, model = str(tmp_path / "in"), str(tmp_path / "model")
    return {
        "preprocess": ["preprocess", "--input", source, "--output", output],
        "train": ["train", "--data", str(tmp_path / "data"), "--model-dir", output],
        "infer": ["infer", "--model-dir", model, "--input", source, "--output", output],
        "evaluate": ["evaluate", "--model-dir", model, "--input", source, "--output", output],
    }


def _refused(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts a tmpfs (as root only): ``mount(options) -> folder``; unmounted afterwards."""
    mounted = []

    def mount(options: str):
        folder = tmp_path / f"fs{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


def test_storage_errors_are_told_apart_from_other_errors():
    outputs = ["/runs/out"]
    full = storage_error(OSError(errno.ENOSPC, "No space left on device", "/runs/out/train-0.tfrecord.gz"), outputs)
    assert str(full) == (
        "cannot write /runs/out/train-0.tfrecord.gz: the disk is full; "
        "free space there (or set a quota) or pass another output folder"
    )
    # TensorFlow's and Beam's errors keep only the text, often as the cause of another error.
    try:
        try:
            raise RuntimeError("/runs/out/stats.json; Read-only file system")
        except RuntimeError as error:
            raise ValueError("the pipeline failed") from error
    except ValueError as wrapped:
        assert str(storage_error(wrapped, outputs)).startswith("cannot write /runs/out: the file system is read-only;")
    unreadable_input = PermissionError(errno.EACCES, "Permission denied", "/data/in/cat.png")
    assert storage_error(unreadable_input, outputs) is None  # a read of the input: not the output's fault
    assert storage_error(ValueError("a bug"), outputs) is None


@pytest.mark.parametrize("command", ["preprocess", "train", "infer", "evaluate"])
def test_an_output_that_is_a_file_is_refused_before_any_work(tmp_path, command):
    (tmp_path / "taken").write_text("not a folder")
    output = _refused(_commands(tmp_path, str(tmp_path / "taken" / "out"))[command])
    assert f"output {tmp_path}/taken/out is not a folder: {tmp_path}/taken is a file; pass a folder path" in output


@pytest.mark.parametrize("command", ["preprocess", "train", "infer", "evaluate"])
def test_a_read_only_output_is_refused_before_any_work(tmp_path, tmpfs, command):
    read_only = tmpfs("ro,size=64k")
    output = _refused(_commands(tmp_path, str(read_only / "out"))[command])
    assert f"cannot write {read_only}/out (in {read_only}): the file system is read-only;" in output
    assert "pass an output folder you can write to" in output


def test_a_disk_that_fills_during_preprocess_is_a_user_error(tmp_path, tmpfs):
    write_image_tree(tmp_path / "in")
    small = tmpfs("size=48k")
    output = _refused(_commands(tmp_path, str(small / "out"))["preprocess"])
    assert f"cannot write {small}/out" in output and "the disk is full; free space there" in output
