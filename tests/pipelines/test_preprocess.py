"""The preprocess job on generated PNGs, through the real DirectRunner."""

import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.input_pipeline import load_transform_output
from pipelines.config import PreprocessConfig
from pipelines.preprocess import check_rejects, is_eval, run_preprocess
from tests.conftest import CLASSES, PER_CLASS, write_image_tree


def _read_split(data_dir, split):
    spec = load_transform_output(data_dir).transformed_feature_spec()
    files = sorted(glob.glob(os.path.join(data_dir, f"{split}-*.tfrecord.gz")))
    assert files, f"no {split} shards in {data_dir}"
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").map(lambda r: tf.io.parse_single_example(r, spec))
    return [{k: v.numpy() for k, v in example.items()} for example in dataset]


def test_counts_ids_labels_and_pixels(preprocessed, image_tree):
    _, images = image_tree
    train, evaluation = _read_split(preprocessed.output, "train"), _read_split(preprocessed.output, "eval")
    ids = {e["id"].decode() for e in train + evaluation}
    assert ids == set(images)
    assert len(train) == preprocessed.counts["train_records"]
    assert len(evaluation) == preprocessed.counts["eval_records"]
    assert len(train) + len(evaluation) == len(CLASSES) * PER_CLASS
    for example in train + evaluation:
        record_id = example["id"].decode()
        assert example["label"].decode() == record_id.split("/")[0]
        assert example["pixels"].shape == (12, 10, 1)
        assert example["pixels"].min() >= 0.0 and example["pixels"].max() <= 1.0
        np.testing.assert_allclose(example["pixels"][..., 0], images[record_id] / 255.0, atol=1e-6)
        np.testing.assert_array_equal(example["inputs"], example["pixels"])  # normalize=unit


def test_split_follows_the_id_hash(preprocessed):
    for split, expected in (("train", False), ("eval", True)):
        for example in _read_split(preprocessed.output, split):
            assert is_eval(example["id"].decode(), 25) is expected


def test_label_vocabulary_comes_from_train_and_indexes_labels(preprocessed):
    tft_output = load_transform_output(preprocessed.output)
    vocabulary = [v.decode() for v in tft_output.vocabulary_by_name("label_vocabulary")]
    assert sorted(vocabulary) == sorted(CLASSES)
    for example in _read_split(preprocessed.output, "train"):
        assert vocabulary[example["label_index"]] == example["label"].decode()


def test_split_is_stable_across_runs(preprocessed, image_tree, tmp_path):
    root, _ = image_tree
    again = run_preprocess(PreprocessConfig(input=str(root), output=str(tmp_path), eval_percent=25))
    for split in ("train", "eval"):
        first = sorted(e["id"] for e in _read_split(preprocessed.output, split))
        assert first == sorted(e["id"] for e in _read_split(again.output, split))


def test_resolved_config_is_written_beside_the_data(preprocessed):
    config = json.loads(Path(preprocessed.output, "config.json").read_text())
    assert config["eval_percent"] == 25 and config["normalize"] == "unit"


@pytest.mark.slow
def test_bad_files_are_dead_lettered_and_counted(tmp_path):
    root = tmp_path / "in"
    images = write_image_tree(root)
    good = (root / "cat" / "000.png").read_bytes()
    (root / "cat" / "empty.png").write_bytes(b"")
    (root / "dog" / "notes.png").write_bytes(b"this is not an image at all")
    (root / "emu" / "truncated.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"
    result = run_preprocess(PreprocessConfig(input=str(root), output=str(out), max_reject_fraction=0.5))
    counts = result.counts
    assert counts["records_read"] == len(images) + 3
    assert counts["train_records"] + counts["eval_records"] + result.rejected == counts["records_read"]
    rejected = [json.loads(line) for f in (out / "rejected").glob("*.jsonl") for line in f.read_text().splitlines()]
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert reasons == {
        "cat/empty.png": "empty_file",
        "dog/notes.png": "not_an_image",
        "emu/truncated.png": "corrupt_image",
    }
    assert all(r["source"].endswith(r["id"]) and r["error"] for r in rejected)


def test_too_many_rejects_fail_naming_the_worst_reasons():
    counts = {"records_read": 10, "preprocess_rejected_not_an_image": 3, "preprocess_rejected_empty_file": 1}
    with pytest.raises(ValueError, match=r"4 of 10 .*not_an_image \(3\), empty_file \(1\)"):
        check_rejects(counts, 0.1, "some/dir")


def test_empty_input_fails_clearly(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        run_preprocess(PreprocessConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out")))


def test_missing_input_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        run_preprocess(PreprocessConfig(input=str(tmp_path / "nope"), output=str(tmp_path / "out")))


def test_images_of_several_sizes_need_an_image_size(tmp_path):
    from pipelines.images import encode_png

    root = tmp_path / "in"
    root.mkdir()
    (root / "a.png").write_bytes(encode_png(np.zeros((4, 4), np.uint8)))
    (root / "b.png").write_bytes(encode_png(np.zeros((5, 6), np.uint8)))
    with pytest.raises(ValueError, match=r"differ in size: 4x4 \(1 images\), 5x6 \(1 images\).*--image-size"):
        run_preprocess(PreprocessConfig(input=str(root), output=str(tmp_path / "out")))


@pytest.mark.slow
def test_multi_process_direct_runner_gives_the_same_records(preprocessed, image_tree, tmp_path):
    root, images = image_tree
    args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    result = run_preprocess(PreprocessConfig(input=str(root), output=str(tmp_path), eval_percent=25), args)
    assert result.counts["records_read"] == len(images)
    for split in ("train", "eval"):
        assert sorted(e["id"] for e in _read_split(result.output, split)) == sorted(
            e["id"] for e in _read_split(preprocessed.output, split)
        )
