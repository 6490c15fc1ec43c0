"""The one publishing home: per-run staging, the lock, the sweep, the swap that restores on failure,
and outputs that overlap inputs."""

import json
import multiprocessing
import os
import re
from pathlib import Path

import pytest
import tensorflow as tf

from tests.helpers import fail_rename_into
from transforms import publishing
from transforms.errors import UserError


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _publish(target: Path, files: dict[str, str], **kwargs) -> None:
    with publishing.Publication(str(target), **kwargs) as publication:
        for name, text in files.items():
            Path(publication.staging, name).write_text(text)
        publication.publish()


def test_a_rerun_replaces_the_whole_folder_and_leaves_nothing_beside_it(tmp_path):
    _publish(tmp_path / "out", {"a": "1", "b": "2", "MARK": ""}, marker="MARK")
    _publish(tmp_path / "out", {"a": "3", "MARK": ""}, marker="MARK")
    assert _tree(tmp_path / "out") == {"a": b"3", "MARK": b""}  # b is gone: replaced, not mixed
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging, no .old-*, no lock file


def test_a_failed_run_deletes_its_staging_and_keeps_the_output(tmp_path):
    _publish(tmp_path / "out", {"a": "1"})
    with pytest.raises(RuntimeError), publishing.Publication(str(tmp_path / "out")) as publication:
        Path(publication.staging, "a").write_text("half")
        raise RuntimeError("the pipeline failed")
    assert _tree(tmp_path / "out") == {"a": b"1"}
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_fault_in_the_final_rename_restores_the_previous_output(tmp_path, monkeypatch):
    _publish(tmp_path / "out", {"a": "1"})
    fail_rename_into(monkeypatch, tmp_path / "out")  # moving the new output in fails
    with pytest.raises(OSError, match="injected"):
        _publish(tmp_path / "out", {"a": "2"})
    assert _tree(tmp_path / "out") == {"a": b"1"}  # moved aside, then back
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_entries_are_published_together_and_the_rest_of_the_folder_stays(tmp_path, monkeypatch):
    model = tmp_path / "model"
    (model / "checkpoints").mkdir(parents=True)
    (model / "checkpoints" / "ckpt").write_text("keep")
    _publish(model, {"export": "v1", "report.json": "r1"}, entries=("export", "report.json"))
    rename = tf.io.gfile.rename
    fail_rename_into(monkeypatch, model / "report.json")  # the second entry's move in fails
    with pytest.raises(OSError, match="injected"):
        _publish(model, {"export": "v2", "report.json": "r2"}, entries=("export", "report.json"))
    assert _tree(model) == {"checkpoints/ckpt": b"keep", "export": b"v1", "report.json": b"r1"}
    monkeypatch.setattr(tf.io.gfile, "rename", rename)
    _publish(model, {"export": "v3", "report.json": "r3"}, entries=("export", "report.json"))
    assert _tree(model) == {"checkpoints/ckpt": b"keep", "export": b"v3", "report.json": b"r3"}


def _hold(target: str, started, release) -> None:
    with publishing.Publication(target, stage="preprocess"):
        started.set()
        release.wait(30)


def test_a_second_run_on_a_held_target_fails_fast_naming_the_first(tmp_path):
    ctx = multiprocessing.get_context("fork")
    started, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path / "out"), started, release))
    holder.start()
    try:
        assert started.wait(30)
        with pytest.raises(publishing.TargetBusy) as busy:
            publishing.Publication(str(tmp_path / "out")).__enter__()
        assert busy.value.exit_code == 75
        assert f"preprocess run {_lock_holder(tmp_path)['run']}, pid {holder.pid}" in str(busy.value)
    finally:
        release.set()
        holder.join(30)
    _publish(tmp_path / "out", {"a": "1"})  # free again once the holder has ended
    assert _tree(tmp_path / "out") == {"a": b"1"}


def _lock_holder(tmp_path: Path) -> dict:
    return json.loads((tmp_path / ".out.lock").read_text())


def test_the_sweep_deletes_crashed_runs_leftovers_and_restores_a_target_moved_aside(tmp_path):
    (tmp_path / ".out.staging-20260101T000000-1-abcdef").mkdir()  # a run killed while writing
    (tmp_path / ".out.old-20260101T000000-2-abcdef").mkdir()  # killed between the two renames
    (tmp_path / ".out.old-20260101T000000-2-abcdef" / "a").write_text("1")
    (tmp_path / ".out.lock").write_text('{"pid": 1}')  # a killed run's lock file, unlocked
    (tmp_path / ".other.staging-x").mkdir()  # another target's: not ours to sweep
    with publishing.Publication(str(tmp_path / "out")) as publication:
        assert _tree(tmp_path / "out") == {"a": b"1"}  # restored before anything else
        (tmp_path / "out" / "beam-temp-train-0123").mkdir()
        assert sorted(os.listdir(tmp_path)) == sorted(
            [".other.staging-x", ".out.lock", "out", Path(publication.staging).name]
        )
    with publishing.Publication(str(tmp_path / "out")):
        assert not (tmp_path / "out" / "beam-temp-train-0123").exists()
    assert sorted(os.listdir(tmp_path)) == [".other.staging-x", "out"]


def test_a_folder_that_is_not_the_stages_output_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"out exists and is not a preprocess output \(it holds no stats.json\)"):
        _publish(tmp_path / "out", {"a": "1"}, marker="stats.json", stage="preprocess")
    assert _tree(tmp_path / "out") == {"notes.txt": b"mine"}


def test_keep_failed_keeps_the_staging_for_the_user_and_the_next_success_drops_it(tmp_path):
    _publish(tmp_path / "out", {"a": "1"})
    with publishing.Publication(str(tmp_path / "out")) as publication:
        Path(publication.staging, "rejected.jsonl").write_text("bad")
        kept = publication.keep_failed()
    assert Path(kept, "rejected.jsonl").read_text() == "bad" and _tree(tmp_path / "out") == {"a": b"1"}
    _publish(tmp_path / "out", {"a": "2"})
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.parametrize(
    "output, inputs, relation",
    [
        ("in", {"--input": "in"}, "is"),
        ("in/sub", {"--input": "in"}, "is inside"),
        ("in/sub", {"--input": "in/*.png"}, "is inside"),
        ("top", {"--input": "top/in"}, "holds"),
    ],
)
def test_outputs_overlapping_inputs_are_refused(tmp_path, output, inputs, relation):
    inputs = {k: str(tmp_path / v) for k, v in inputs.items()}
    spec = next(iter(inputs.values()))
    with pytest.raises(UserError, match=re.escape(f"--output {tmp_path / output} {relation} --input {spec}: ")):
        publishing.check_apart(str(tmp_path / output), "--output", inputs)


def test_outputs_apart_from_inputs_pass(tmp_path):
    inputs = {"--input": str(tmp_path / "in"), "--data": None, "--builtin": "builtin:mnist"}
    publishing.check_apart(str(tmp_path / "out"), "--output", inputs)
    publishing.check_apart(str(tmp_path / "in2"), "--output", inputs)  # a shared prefix is not a parent
    publishing.check_apart(str(tmp_path), "--model-dir", inputs, replaced_whole=False)
