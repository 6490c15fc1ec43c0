"""Listing inputs: sidecar files skipped and counted, links, special and oversize files, odd names."""

import os

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.config import ReaderOptions
from pipelines.inputs.formats.base import Unreadable
from pipelines.inputs.images import encode_png
from pipelines.inputs.listing import Skipped
from pipelines.inputs.sources import ReadImages, resolve_source
from tests.conftest import known_pixels

JUNK = {".DS_Store": b"\x00\x00\x00\x01Bud1", "README.txt": b"cats and dogs, 2024\n", "notes.json": b'{"a": 1}'}
# Resource fork and thumbnail cache: hidden; the README and notes: skipped by extension.
HIDDEN_JUNK = {"._000.png": b"\x00\x05\x16\x07 fork", "Thumbs.db": b"\xd0\xcf\x11\xe0 thumbs"}


def _png(index: int) -> bytes:
    return encode_png(known_pixels(0, index))


def junk_folder(root) -> set[str]:
    """Two labelled PNGs per folder beside sidecar junk; returns the good ids."""
    good = set()
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            (root / label / f"{i:03d}.png").write_bytes(_png(i))
            good.add(f"{label}/{i:03d}.png")
        for name, data in {**JUNK, **HIDDEN_JUNK}.items():
            (root / label / name).write_bytes(data)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_bytes(b"ref: refs/heads/main\n")
    return good


def _listed(source) -> tuple[list[str], dict[str, str], list[Unreadable]]:
    """(paths under the root to read, {path under the root: skip reason}, unreadable items)."""
    paths, skipped, unreadable = [], {}, []
    for entry in source.files():
        if isinstance(entry, Skipped):
            skipped[os.path.relpath(entry.path, source.root)] = entry.reason
        elif isinstance(entry, Unreadable):
            unreadable.append(entry)
        else:
            paths.append(os.path.relpath(entry, source.root))
    return paths, skipped, unreadable


@pytest.mark.parametrize("fmt", ["auto", "images"])
def test_sidecar_files_are_skipped_by_reason_and_do_not_change_the_format(tmp_path, fmt):
    good = junk_folder(tmp_path)
    source = resolve_source(str(tmp_path), ReaderOptions(format=fmt))
    assert source.format == "images"
    paths, skipped, unreadable = _listed(source)
    assert sorted(paths) == sorted(good) and unreadable == []
    hidden = {".git"} | {f"{label}/{name}" for label in ("cat", "dog") for name in (".DS_Store", *HIDDEN_JUNK)}
    by_extension = {f"{label}/{name}" for label in ("cat", "dog") for name in ("README.txt", "notes.json")}
    assert skipped == {**dict.fromkeys(hidden, "hidden"), **dict.fromkeys(by_extension, "by_extension")}


def test_containers_skip_documentation_and_other_formats_but_keep_their_labels(tmp_path, containers):
    (tmp_path / "x.npy").write_bytes(containers["npy"].joinpath("x.npy").read_bytes())
    (tmp_path / "y.npy").write_bytes(containers["npy"].joinpath("y.npy").read_bytes())
    (tmp_path / "README.md").write_text("# digits\n")
    (tmp_path / "preview.png").write_bytes(_png(0))
    source = resolve_source(str(tmp_path), ReaderOptions(format="npy"))
    paths, skipped, _ = _listed(source)
    assert sorted(paths) == ["x.npy", "y.npy"]
    assert skipped == {"README.md": "by_extension", "preview.png": "by_extension"}


def test_symlinked_folders_are_followed_once_and_loops_end(tmp_path):
    outside = tmp_path / "elsewhere" / "bird"
    outside.mkdir(parents=True)
    (outside / "000.png").write_bytes(_png(0))
    root = tmp_path / "in"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "000.png").write_bytes(_png(1))
    (root / "bird").symlink_to(outside, target_is_directory=True)
    (root / "cat" / "again").symlink_to(root, target_is_directory=True)  # a loop back to the root
    (root / "birds-too").symlink_to(outside, target_is_directory=True)  # a second way to one folder
    paths, skipped, unreadable = _listed(resolve_source(str(root)))
    assert sorted(paths) == ["bird/000.png", "cat/000.png"] and unreadable == []
    assert skipped == {"cat/again": "repeated_folder", "birds-too": "repeated_folder"}


def test_dangling_links_and_special_files_are_dead_letters_never_opened(tmp_path):
    (tmp_path / "ok.png").write_bytes(_png(0))
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block forever
    paths, skipped, unreadable = _listed(resolve_source(str(tmp_path)))
    assert paths == ["ok.png"] and skipped == {}
    found = {u.id: (u.reason, u.error) for u in unreadable}
    assert found["gone.png"][0] == "unreadable_file" and "deleted.png, which does not exist" in found["gone.png"][1]
    assert found["zero.png"] == (
        "not_a_regular_file",
        f"{tmp_path}/zero.png is a character device, not a regular file; only regular files are read",
    )
    assert found["pipe.png"][0] == "not_a_regular_file" and "a FIFO" in found["pipe.png"][1]


def test_a_file_over_max_file_bytes_is_one_dead_letter_naming_the_option(tmp_path):
    (tmp_path / "small.png").write_bytes(_png(0))
    big = _png(1) + bytes(4096)
    (tmp_path / "big.png").write_bytes(big)
    options = ReaderOptions(max_file_bytes=1024)
    paths, _, unreadable = _listed(resolve_source(str(tmp_path), options))
    assert paths == ["small.png"]
    assert [(u.id, u.reason) for u in unreadable] == [("big.png", "file_too_large")]
    assert f"holds {len(big)} bytes, over --max-file-bytes 1024; raise --max-file-bytes" in unreadable[0].error
    with pytest.raises(ValueError, match="max_file_bytes must be positive"):
        ReaderOptions(max_file_bytes=0)


def test_an_existing_path_with_glob_characters_is_taken_literally(tmp_path):
    folder = tmp_path / "photos [2024]"
    (folder / "cat").mkdir(parents=True)
    (folder / "cat" / "000.png").write_bytes(_png(0))
    (tmp_path / "photos 2").mkdir()  # what the bracket would match as a glob
    (tmp_path / "photos 2" / "x.png").write_bytes(_png(1))
    source = resolve_source(str(folder))
    assert (source.kind, source.root) == ("folder", str(folder))
    assert _listed(source)[0] == ["cat/000.png"]
    globbed = resolve_source(f"{tmp_path}/photos [0-9]/*.png")
    assert globbed.kind == "glob" and _listed(globbed)[0] == ["photos 2/x.png"]


def test_a_non_utf8_name_is_read_with_an_escaped_id(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    os.makedirs(raw)
    with open(os.path.join(raw, b"n\xf6.png"), "wb") as f:
        f.write(_png(3))
    (tmp_path / "plain.png").write_bytes(_png(4))
    source = resolve_source(str(tmp_path))
    with TestPipeline() as p:
        read = p | ReadImages(source)
        ids = read["records"] | beam.Map(lambda r: (r["id"], r["label"], r["source"].endswith(r["id"]), r["image"]))
        assert_that(
            ids,
            equal_to([("caf\\xe9/n\\xf6.png", "caf\\xe9", True, _png(3)), ("plain.png", "", True, _png(4))]),
        )
        assert_that(read["rejected"], equal_to([]), label="NoRejects")


def test_read_images_counts_skipped_files_and_dead_letters_the_unreadable(tmp_path):
    good = junk_folder(tmp_path)
    (tmp_path / "cat" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with TestPipeline() as p:
        read = p | ReadImages(resolve_source(str(tmp_path)))
        assert_that(read["records"] | beam.Map(lambda r: r["id"]), equal_to(sorted(good)))
        reasons = read["rejected"] | "Reasons" >> beam.Map(lambda u: (u.id, u.reason))
        assert_that(reasons, equal_to([("cat/gone.png", "unreadable_file")]), label="Dangling")
        counted = read["skipped"] | beam.combiners.Count.PerElement()
        assert_that(counted, equal_to([("hidden", 7), ("by_extension", 4)]), label="Skipped")


def test_a_first_csv_row_with_a_typo_is_a_dead_letter_not_a_header(tmp_path):
    pixels = np.arange(16).reshape(4, 4) * 10
    rows = [",".join(map(str, pixels.ravel())) + f",{i}" for i in range(3)]
    rows[0] = rows[0].replace("10", "1O", 1)  # the letter O for a zero
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "b.csv").write_text("p" + ",p".join(map(str, range(16))) + ",label\n" + "\n".join(rows[1:]) + "\n")
    for name, expected_ids in (("a.csv", ["a.csv/1", "a.csv/2"]), ("b.csv", ["b.csv/0", "b.csv/1"])):
        with TestPipeline() as p:
            read = p | ReadImages(resolve_source(str(tmp_path / name)))
            assert_that(read["records"] | beam.Map(lambda r: r["id"]), equal_to(expected_ids))
            rejected = read["rejected"] | "Reasons" >> beam.Map(lambda u: (u.id, u.reason))
            assert_that(rejected, equal_to([("a.csv/0", "bad_csv_row")] if name == "a.csv" else []), label="Rej")
