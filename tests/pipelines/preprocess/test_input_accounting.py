"""Every input file accounted for by a real preprocess run: written, dead-lettered or skipped by reason."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from pipelines.config import PreprocessConfig, ReaderOptions
from pipelines.counters import AccountingError, check_accounting
from pipelines.inputs.images import encode_png
from pipelines.preprocess.job import make_stats, run_preprocess
from tests.conftest import known_pixels
from tests.helpers import read_rejected
from tests.pipelines.inputs.test_listing import junk_folder


def _written_ids(data_dir) -> list[str]:
    files = glob.glob(os.path.join(data_dir, "*.tfrecord.gz"))
    spec = {"id": tf.io.FixedLenFeature([], tf.string)}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return sorted(tf.io.parse_single_example(r, spec)["id"].numpy().decode() for r in dataset)


@pytest.mark.parametrize("fmt", ["auto", "images"])
def test_a_junk_laden_folder_gives_the_good_records_and_the_skipped_counts(tmp_path, fmt):
    good = junk_folder(tmp_path / "in")
    cfg = PreprocessConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), reader=ReaderOptions(format=fmt))
    result = run_preprocess(cfg)
    assert _written_ids(result.output) == sorted(good)
    assert read_rejected(tmp_path / "out" / "rejected") == []
    stats = result.stats
    assert stats["skipped"] == {"by_extension": 4, "hidden": 7}
    assert stats["records"] == {"read": len(good), "written": len(good), "rejected": 0}
    assert result.counts["skipped_hidden"] == 7 and result.counts["skipped_by_extension"] == 4
    assert result.counts["files_listed"] == len(good)  # the files the reader was given, each accounted for
    assert "0 rejected, 11 files skipped (by_extension 4, hidden 7)" in result.summary()


def test_links_special_oversize_and_non_utf8_files_are_each_accounted_for(tmp_path):
    root, elsewhere = tmp_path / "in", tmp_path / "elsewhere" / "emu"
    elsewhere.mkdir(parents=True)
    (elsewhere / "000.png").write_bytes(encode_png(known_pixels(2, 0)))
    (root / "cat").mkdir(parents=True)
    for i in range(3):
        (root / "cat" / f"{i:03d}.png").write_bytes(encode_png(known_pixels(0, i)))
    (root / "emu").symlink_to(elsewhere, target_is_directory=True)
    (root / "cat" / "loop").symlink_to(root, target_is_directory=True)
    (root / "cat" / "gone.png").symlink_to(tmp_path / "deleted.png")
    (root / "cat" / "zero.png").symlink_to("/dev/zero")
    (root / "cat" / "big.png").write_bytes(encode_png(known_pixels(0, 9)) + bytes(8192))
    with open(os.path.join(os.fsencode(root / "cat"), b"n\xe4me.png"), "wb") as f:
        f.write(encode_png(known_pixels(0, 5)))
    # A corrupt PNG whose header declares another size: rejected, so the shape probe must not count it.
    other = encode_png(np.zeros((5, 6), np.uint8))
    (root / "cat" / "torn.png").write_bytes(other[:40])
    cfg = PreprocessConfig(
        input=str(root),
        output=str(tmp_path / "out"),
        max_reject_fraction=0.9,
        reader=ReaderOptions(max_file_bytes=4096),
    )
    result = run_preprocess(cfg)  # no --image-size: the probe sees only the valid 12x10 images
    assert result.spec.shape == (12, 10, 1)
    good = ["cat/000.png", "cat/001.png", "cat/002.png", "cat/n\\xe4me.png", "emu/000.png"]
    assert _written_ids(result.output) == good
    rejected = {r["id"]: r["reason"] for r in read_rejected(tmp_path / "out" / "rejected")}
    assert rejected == {
        "cat/gone.png": "unreadable_file",
        "cat/zero.png": "not_a_regular_file",
        "cat/big.png": "file_too_large",
        "cat/torn.png": "corrupt_image",
    }
    stats = result.stats
    assert stats["records"] == {"read": 9, "written": 5, "rejected": 4}
    assert stats["skipped"] == {"repeated_folder": 1}


def test_an_npz_without_the_image_key_fails_with_the_readers_reason(tmp_path):
    np.savez(tmp_path / "digits.npz", pictures=np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(ValueError) as failure:
        run_preprocess(PreprocessConfig(input=str(tmp_path / "digits.npz"), output=str(tmp_path / "out")))
    message = str(failure.value)
    assert "digits.npz: no image array named x or images; arrays: pictures; pass --image-key NAME" in message
    assert "rejected/" not in message and not (tmp_path / "out").exists()
    # With the shape given there is no probe: the job runs, and its failure quotes the dead letter.
    sized = PreprocessConfig(
        input=str(tmp_path / "digits.npz"), output=str(tmp_path / "out"), image_size=(4, 4), channels=1
    )
    with pytest.raises(ValueError, match=r"unsupported_layout \(1\)\. First: digits\.npz: no image array named x or"):
        run_preprocess(sized)


def test_the_probe_gives_the_validations_reasons_when_no_image_is_usable(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n torn")
    (tmp_path / "in" / "b.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"holds no usable image: a\.png: .*; b\.png: the file has zero bytes"):
        run_preprocess(PreprocessConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out")))


def test_stats_read_is_counted_apart_from_written_and_rejected():
    analyzers = {"label_vocabulary": []}
    stats = make_stats({}, analyzers, [(("train", ""), 3)], [("empty_file", 1)], read=5, skipped=[("hidden", 2)])
    assert stats["records"] == {"read": 5, "written": 3, "rejected": 1}  # a lost record shows
    assert stats["skipped"] == {"hidden": 2}


def test_the_record_accounting_fails_loudly_when_records_are_lost():
    counts = {"records_read": 10, "train_records": 8, "preprocess_rejected_empty_file": 1}
    with pytest.raises(AccountingError, match=r"10 records read but 8 written \+ 1 rejected = 9; records were lost"):
        check_accounting(counts, "preprocess", 8)
    check_accounting({**counts, "records_read": 9}, "preprocess", 8)
    assert not issubclass(AccountingError, ValueError)  # a bug: not shown as a user's mistake


def test_the_accounting_fails_loudly_when_listed_files_never_reach_the_reader():
    """Beam's multi-threaded DirectRunner once lost whole units of 100 files before they were read
    (records_read counted after the loss): the listing's count shows it."""
    counts = {"files_listed": 12, "records_read": 9, "records_skipped_label": 2, "train_records": 9}
    with pytest.raises(AccountingError, match=r"12 files listed but 9 read \+ 2 left out .* = 11; files were lost"):
        check_accounting(counts, "preprocess", 9)
    check_accounting({**counts, "skipped_existing": 1}, "infer", 9)  # --skip-existing leaves one out
    check_accounting({"records_read": 9, "train_records": 9}, "preprocess", 9)  # not a whole folder: no count
