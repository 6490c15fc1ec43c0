"""The preprocess job on generated PNGs, through the real DirectRunner."""

import collections
import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from models.input_pipeline import load_transform_output
from pipelines.cli import cli
from pipelines.config import PreprocessConfig
from pipelines.inputs.images import encode_png
from pipelines.preprocess.job import check_rejects, make_stats, run_preprocess
from pipelines.preprocess.transform import is_eval
from tests.conftest import CLASSES, CONTAINER_COUNT, PER_CLASS, container_pixels, write_image_tree
from tests.helpers import encode_image, read_rejected


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


def test_stats_json_holds_counts_and_the_train_split_analyzers(preprocessed, image_tree):
    _, images = image_tree
    stats = preprocessed.stats
    train = _read_split(preprocessed.output, "train")
    train_ids = [e["id"].decode() for e in train]
    assert stats["records"] == {"read": len(images), "written": len(images), "rejected": 0}
    assert stats["splits"]["train"]["records"] == len(train) == preprocessed.counts["train_records"]
    for split in ("train", "eval"):
        labels = collections.Counter(e["label"].decode() for e in _read_split(preprocessed.output, split))
        assert stats["splits"][split]["labels"] == dict(labels)
    pixels = np.stack([images[i] for i in train_ids]) / 255.0  # the train split only: no eval leakage
    analyzers = stats["analyzers"]
    assert analyzers["examples"] == len(train)
    assert analyzers["pixel_min"] == pytest.approx(pixels.min()) and analyzers["pixel_max"] == pytest.approx(
        pixels.max()
    )
    assert analyzers["pixel_mean"]["max"] == pytest.approx(pixels.mean(axis=0).max(), abs=1e-5)
    assert analyzers["pixel_stddev"]["mean"] == pytest.approx(pixels.std(axis=0).mean(), abs=1e-5)
    assert sorted(analyzers["label_vocabulary"]) == sorted(CLASSES) and analyzers["label_vocabulary_size"] == 3
    assert stats["image"]["channels"] == 1 and "alpha composited" in stats["image"]["channel_policy"]
    assert stats["format"] == "images" and stats["rejected_by_reason"] == {}


@pytest.mark.slow
def test_every_bad_input_kind_is_dead_lettered_and_counted_and_other_formats_are_kept(tmp_path):
    root = tmp_path / "in"
    images = write_image_tree(root)
    good = (root / "cat" / "000.png").read_bytes()
    rng = np.random.default_rng(0)
    jpeg = encode_image(Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)), "JPEG")
    bad = {
        "cat/empty.png": (b"", "empty_file"),
        "dog/notes.png": (b"this is not an image at all", "not_an_image"),
        "emu/truncated.png": (good[: len(good) // 2], "corrupt_image"),
        "emu/corrupted.png": (good[:45] + bytes(10) + good[55:], "corrupt_image"),
        "cat/truncated.jpg": (jpeg[:400], "corrupt_image"),
        "dog/float.tiff": (encode_image(Image.fromarray(np.ones((4, 4), np.float32)), "TIFF"), "unsupported_mode"),
        "dog/huge.png": (encode_png(np.zeros((120, 100), np.uint8)), "too_many_pixels"),
    }
    transparent = np.zeros((12, 10, 4), np.uint8)
    kept = {
        "cat/photo.bmp": encode_image(Image.fromarray(rng.integers(0, 255, (30, 20, 3), dtype=np.uint8)), "BMP"),
        "dog/anim.gif": encode_image(Image.new("P", (10, 12)), "GIF"),
        "emu/scan.tiff": encode_image(Image.fromarray((np.arange(120, dtype=np.uint16) * 500).reshape(12, 10)), "TIFF"),
        "cat/logo.webp": encode_image(Image.new("RGBA", (10, 12), (0, 0, 255, 255)), "WEBP", lossless=True),
        "emu/clear.png": encode_png(transparent),
        "cat/photo.jpg": jpeg,
    }
    for name, data in {**{k: v for k, (v, _) in bad.items()}, **kept}.items():
        (root / name).write_bytes(data)
    out = tmp_path / "out"
    cfg = PreprocessConfig(
        input=str(root),
        output=str(out),
        image_size=(12, 10),
        channels=3,
        resize="pad",
        background=(255, 255, 255),
        max_pixels=10_000,
        max_reject_fraction=0.5,
    )
    result = run_preprocess(cfg)
    counts, rejected = result.counts, read_rejected(out / "rejected")
    assert {r["id"]: r["reason"] for r in rejected} == {name: reason for name, (_, reason) in bad.items()}
    assert all(r["source"].endswith(r["id"]) and r["error"] and r["stage"] == "preprocess" for r in rejected)
    read = len(images) + len(bad) + len(kept)
    assert counts["records_read"] == read == counts["train_records"] + counts["eval_records"] + result.rejected
    stats = result.stats
    assert stats["records"] == {"read": read, "written": len(images) + len(kept), "rejected": len(bad)}
    assert stats["rejected_by_reason"] == dict(collections.Counter(reason for _, reason in bad.values()))
    written = {e["id"].decode(): e for split in ("train", "eval") for e in _read_split(str(out), split)}
    assert set(written) == set(images) | set(kept)
    assert all(e["pixels"].shape == (12, 10, 3) for e in written.values())
    np.testing.assert_allclose(written["emu/clear.png"]["pixels"], 1.0)  # transparent on white
    np.testing.assert_allclose(written["cat/logo.webp"]["pixels"][..., 2], 1.0)  # blue


def test_too_many_rejects_fail_naming_the_worst_reasons():
    counts = {"records_read": 10, "preprocess_rejected_not_an_image": 3, "preprocess_rejected_empty_file": 1}
    with pytest.raises(ValueError, match=r"4 of 10 .*not_an_image \(3\), empty_file \(1\)"):
        check_rejects(counts, 0.1, "some/dir")


def test_an_input_with_no_usable_record_fails_even_under_a_generous_limit():
    with pytest.raises(ValueError, match=r"none of the 2 records of 'd' could be used; reasons: empty_file \(2\)"):
        check_rejects({"records_read": 2, "preprocess_rejected_empty_file": 2}, 1.0, "d")


def test_make_stats_adds_up_counts_and_drops_the_empty_vocabulary_placeholder():
    analyzers = {"examples": 3, "label_vocabulary": ["49d0cd50-04bb-48c0-bc6f-5b575dce351a"]}
    counts = [(("train", ""), 3), (("eval", ""), 1)]
    stats = make_stats({"input": "x"}, analyzers, counts, [("empty_file", 1), ("not_an_image", 2)], read=7)
    assert stats["records"] == {"read": 7, "written": 4, "rejected": 3}
    assert stats["splits"]["train"] == {"records": 3, "labels": {"(unlabelled)": 3}}
    assert list(stats["rejected_by_reason"]) == ["not_an_image", "empty_file"]  # worst first
    assert stats["analyzers"]["label_vocabulary"] == [] and stats["analyzers"]["label_vocabulary_size"] == 0
    labelled = make_stats({}, {"label_vocabulary": ["b", "a"]}, [(("train", "a"), 1), (("train", "b"), 2)], [], 3)
    assert labelled["analyzers"]["label_vocabulary"] == ["b", "a"]


def test_empty_input_fails_clearly(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        run_preprocess(PreprocessConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out")))


def test_missing_input_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        run_preprocess(PreprocessConfig(input=str(tmp_path / "nope"), output=str(tmp_path / "out")))


def test_images_of_several_sizes_need_an_image_size(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.png").write_bytes(encode_png(np.zeros((4, 4), np.uint8)))
    (root / "b.png").write_bytes(encode_png(np.zeros((5, 6), np.uint8)))
    with pytest.raises(ValueError, match=r"differ in size: 4x4 \(1 images\), 5x6 \(1 images\).*--image-size"):
        run_preprocess(PreprocessConfig(input=str(root), output=str(tmp_path / "out")))


def test_worker_threads_are_refused_before_any_work_naming_the_fix(image_tree, tmp_path):
    # Beam's multi_threading mode drops elements (benchmarks/results/multi-threading-loss.md).
    root, _ = image_tree
    args = ["--direct_running_mode=multi_threading", "--direct_num_workers=2"]
    with pytest.raises(ValueError, match=r"multi_threading loses records.*--direct_running_mode=multi_processing"):
        run_preprocess(PreprocessConfig(input=str(root), output=str(tmp_path / "out")), args)
    assert not (tmp_path / "out").exists()
    other_runner = ["--runner=PortableRunner", "--direct_running_mode=multi_threading"]
    with pytest.raises(ValueError, match="does not exist"):  # the flag is no concern of other runners
        run_preprocess(PreprocessConfig(input=str(tmp_path / "nope"), output=str(tmp_path / "out")), other_runner)


@pytest.mark.slow
def test_multi_process_direct_runner_gives_the_same_records(preprocessed, image_tree, tmp_path):
    root, images = image_tree
    args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    result = run_preprocess(PreprocessConfig(input=str(root), output=str(tmp_path), eval_percent=25), args)
    assert result.counts["records_read"] == len(images)
    assert result.counts["train_records"] + result.counts["eval_records"] == len(images)
    for split in ("train", "eval"):
        assert sorted(e["id"] for e in _read_split(result.output, split)) == sorted(
            e["id"] for e in _read_split(preprocessed.output, split)
        )
    ours, single = result.stats["analyzers"], preprocessed.stats["analyzers"]
    assert ours["label_vocabulary"] == single["label_vocabulary"] and ours["examples"] == single["examples"]
    for key in ("pixel_mean", "pixel_stddev"):
        for summary in ("min", "mean", "max"):
            assert ours[key][summary] == pytest.approx(single[key][summary], abs=1e-6)
    assert result.stats["splits"] == preprocessed.stats["splits"]


@pytest.mark.slow
def test_float_arrays_through_the_cli_with_standardize_and_dead_letters(tmp_path):
    images = container_pixels()[0].astype(np.float32) / 255
    labels = container_pixels()[1]
    images[2, 0, 0], images[5, 1, 1] = np.nan, 1.5
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "x.npy", images)
    np.save(tmp_path / "in" / "y.npy", labels)
    out = tmp_path / "out"
    args = ["preprocess", "--input", str(tmp_path / "in"), "--output", str(out), "--normalize", "standardize"]
    result = CliRunner().invoke(cli, [*args, "--eval-percent", "30", "--max-reject-fraction", "0.3"])
    assert result.exit_code == 0, result.output
    assert "2 rejected" in result.output
    assert {r["id"]: r["reason"] for r in read_rejected(out / "rejected")} == {
        "x.npy/2": "non_finite_pixels",
        "x.npy/5": "pixel_out_of_range",
    }
    train, evaluation = _read_split(str(out), "train"), _read_split(str(out), "eval")
    assert len(train) + len(evaluation) == CONTAINER_COUNT - 2
    for example in train + evaluation:
        index = int(example["id"].decode().split("/")[1])
        assert example["label"].decode() == str(labels[index])
        np.testing.assert_allclose(example["pixels"][..., 0], images[index], atol=1 / 65535)  # 16-bit PNG
    pixels = np.stack([e["pixels"] for e in train])
    mean, stddev = pixels.mean(axis=0), np.maximum(pixels.std(axis=0), 1e-3)
    for example in train + evaluation:
        np.testing.assert_allclose(example["inputs"], (example["pixels"] - mean) / stddev, rtol=1e-4, atol=1e-3)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["format"] == "npy" and stats["normalize"] == "standardize"
    assert stats["records"] == {"read": CONTAINER_COUNT, "written": CONTAINER_COUNT - 2, "rejected": 2}


def test_shards_follow_the_data_size_and_hold_every_record_once(image_tree, tmp_path, monkeypatch):
    import pipelines.preprocess.job as job

    root, images = image_tree
    record_bytes = 2 * 12 * 10 * 4  # pixels and inputs, float32: a record is larger than this
    monkeypatch.setattr(job, "SHARD_BYTES", 3 * record_bytes)  # a few records per shard
    result = run_preprocess(PreprocessConfig(input=str(root), output=str(tmp_path / "out"), eval_percent=25))
    names = sorted(os.path.basename(f) for f in glob.glob(str(tmp_path / "out" / "train-*.tfrecord.gz")))
    assert len(names) >= result.counts["train_records"] // 4  # a new file every few records
    total = len(names)
    assert names == [f"train-{i:05d}-of-{total:05d}.tfrecord.gz" for i in range(total)]
    ids = [e["id"].decode() for split in ("train", "eval") for e in _read_split(tmp_path / "out", split)]
    assert sorted(ids) == sorted(images)
