"""Recognising input formats and the low-level layouts (IDX, NPY, TFRecord framing, CSV)."""

import gzip
import io

import numpy as np
import pytest

from pipelines.inputs import formats
from pipelines.inputs.formats import arrays, csv, tfrecord
from tests.conftest import container_pixels, idx_bytes


@pytest.mark.parametrize("fmt", ["idx", "npy", "npz", "csv", "tfrecord"])
def test_containers_are_recognised_by_name_and_by_content(containers, fmt):
    path = containers[fmt]
    files = sorted(p for p in path.iterdir()) if path.is_dir() else [path]
    for file in files:
        assert formats.sniff_format(str(file), b"") == fmt
        assert formats.sniff_format("no-extension", file.read_bytes()[: formats.SNIFF_BYTES]) == fmt


def test_images_and_unknown_files():
    assert formats.sniff_format("a/b/photo.JPEG", b"") == "images"
    assert formats.sniff_format("blob", b"\x89PNG\r\n\x1a\n....") == "images"
    assert formats.sniff_format("blob", b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "images"
    assert formats.sniff_format("notes.txt", b"\x00\x01\xfe binary junk \xff") is None


def test_array_headers_read_any_range_by_seeking():
    images, _ = container_pixels()
    header = arrays.read_idx_header(io.BytesIO(idx_bytes(images)))
    assert header.shape == images.shape and header.offset == 16
    np.testing.assert_array_equal(header.read(io.BytesIO(idx_bytes(images)), 3, 7), images[3:7])
    buffer = io.BytesIO()
    np.save(buffer, images.astype(np.float32))
    npy = arrays.read_npy_header(io.BytesIO(buffer.getvalue()))
    assert npy.count == len(images) and npy.item_bytes == images[0].size * 4
    np.testing.assert_array_equal(npy.read(io.BytesIO(buffer.getvalue()), 8, 10), images[8:10])
    # A range the file ends inside gives its whole elements only (the reader dead-letters the rest).
    np.testing.assert_array_equal(npy.read(io.BytesIO(buffer.getvalue()[:-10]), 8, 10), images[8:9])


def test_layouts_that_cannot_be_read_by_ranges_are_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.asfortranarray(np.zeros((3, 4, 5), np.uint8)))
    with pytest.raises(ValueError, match="Fortran order"):
        arrays.read_npy_header(io.BytesIO(buffer.getvalue()))
    with pytest.raises(ValueError, match="not an IDX file"):
        arrays.read_idx_header(io.BytesIO(b"PK\x03\x04 zip"))


def test_tfrecord_framing_round_trips_and_detects_damage():
    buffer = io.BytesIO()
    for payload in (b"first", b"second record"):
        tfrecord.write_tfrecord(buffer, payload)
    data = buffer.getvalue()
    reader = io.BytesIO(data)
    assert tfrecord.read_tfrecord(reader) == b"first"
    assert tfrecord.read_tfrecord(reader) == b"second record"
    assert tfrecord.read_tfrecord(reader) is None
    skipper = io.BytesIO(data)
    assert tfrecord.skip_tfrecord(skipper) and tfrecord.skip_tfrecord(skipper) and not tfrecord.skip_tfrecord(skipper)
    corrupt = bytearray(data)
    corrupt[14] ^= 0xFF  # a byte of the first record's data
    with pytest.raises(tfrecord.FramingError, match="CRC"):
        tfrecord.read_tfrecord(io.BytesIO(bytes(corrupt)))
    with pytest.raises(tfrecord.FramingError, match="truncated"):
        tfrecord.read_tfrecord(io.BytesIO(data[:15]))


@pytest.mark.parametrize(
    "text, label_key, header, label_column",
    [
        ("1,2,3,7\n", None, None, 3),  # the built-in sample's layout: no header, label last
        ("label,p0,p1,p2\n7,1,2,3\n", None, ("label", "p0", "p1", "p2"), 0),
        ("p0,p1,digit,p2\n1,2,7,3\n", "digit", ("p0", "p1", "digit", "p2"), 2),
        ("7,1,2,3\n", "0", None, 0),
        ("1,2,3,4\n", "none", None, None),
    ],
)
def test_csv_layout_finds_the_header_and_the_label_column(text, label_key, header, label_column):
    layout = csv.csv_layout(io.BytesIO(text.encode()), label_key)
    assert (layout.header, layout.label_column) == (header, label_column)
    assert layout.pixels == (4 if label_column is None else 3)
    assert layout.data_offset == (len(text.split("\n")[0]) + 1 if header else 0)


def test_csv_layout_names_the_columns_when_the_label_is_missing():
    with pytest.raises(ValueError, match=r"no column 'y'; column names: a, b.*--label-key"):
        csv.csv_layout(io.BytesIO(b"a,b\n1,2\n"), "y")


def test_line_offsets_cut_rows_into_runs_with_byte_offsets():
    text = b"".join(f"{i},{i}\n".encode() for i in range(7)) + b"7,7"  # the last row has no newline
    runs = list(csv.line_offsets(io.BytesIO(text), 0, 3, chunk_bytes=5))
    assert [rows for _, rows in runs] == [3, 3, 2]
    assert [text[offset:].split(b"\n")[0] for offset, _ in runs] == [b"0,0", b"3,3", b"6,6"]
    compressed = gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(text)))
    assert list(csv.line_offsets(compressed, 0, 3)) == runs
