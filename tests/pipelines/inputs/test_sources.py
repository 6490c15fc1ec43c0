"""Resolving inputs (auto format, globs, errors) and reading them through Beam."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.config import ReaderOptions
from pipelines.inputs.images import encode_png
from pipelines.inputs.sources import ReadImages, resolve_source, source_shapes
from tests.conftest import CLASSES, CONTAINER_COUNT, PER_CLASS, container_pixels


@pytest.mark.parametrize("fmt", ["idx", "npy", "npz", "csv", "tfrecord"])
def test_auto_detects_each_container_format(containers, fmt):
    source = resolve_source(str(containers[fmt]))
    assert source.format == fmt
    assert resolve_source(str(containers[fmt]), ReaderOptions(format=fmt)).format == fmt


def test_image_trees_globs_and_single_files(image_tree):
    root, _ = image_tree
    assert resolve_source(str(root)).format == "images"
    globbed = resolve_source(f"{root}/*/00[0-3].png")
    assert (globbed.format, globbed.root, globbed.pattern) == ("images", str(root), f"{root}/*/00[0-3].png")
    single = resolve_source(str(root / "cat" / "001.png"))
    assert (single.root, single.pattern) == (str(root / "cat"), str(root / "cat" / "001.png"))


def test_inputs_that_cannot_be_read_fail_naming_the_fix(tmp_path, containers):
    with pytest.raises(ValueError, match="does not exist"):
        resolve_source(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        resolve_source(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="the built-in one is 'builtin:mnist'"):
        resolve_source("builtin:cifar")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.npz").write_bytes(containers["npz"].read_bytes())
    (mixed / "b.png").write_bytes(encode_png(np.zeros((2, 2), np.uint8)))
    with pytest.raises(ValueError, match=r"mixes formats: images \(1 files\), npz \(1 files\); pass --format"):
        resolve_source(str(mixed))
    assert resolve_source(str(mixed), ReaderOptions(format="images")).format == "images"


def test_shapes_come_from_headers_for_arrays_and_need_a_pass_for_image_files(containers, image_tree):
    assert source_shapes(resolve_source(str(containers["npz"]))) == {(6, 6, False): CONTAINER_COUNT}
    assert source_shapes(resolve_source("builtin:mnist")) == {(28, 28, False): 5000}
    assert source_shapes(resolve_source(str(image_tree[0]))) is None


def _ids_and_labels(read):
    return read["records"] | "IdsAndLabels" >> beam.Map(lambda r: (r["id"], r["label"]))


def test_read_images_spreads_container_ranges_over_workers(containers):
    _, labels = container_pixels()
    source = resolve_source(str(containers["npz"]))
    with TestPipeline() as p:
        read = p | ReadImages(source)
        expected = [(f"digits.npz/{i}", str(labels[i])) for i in range(CONTAINER_COUNT)]
        assert_that(_ids_and_labels(read), equal_to(expected))
        assert_that(read["rejected"], equal_to([]), label="NoRejects")


def test_limit_reads_the_first_records_in_file_order(image_tree):
    root, images = image_tree
    source = resolve_source(str(root), limit=PER_CLASS + 2)
    with TestPipeline() as p:
        read = p | ReadImages(source)
        expected = sorted(images)[: PER_CLASS + 2]
        assert_that(_ids_and_labels(read), equal_to([(i, i.split("/")[0]) for i in expected]))
    assert expected[-1].startswith(CLASSES[1])


def test_keep_labels_skips_and_counts_the_other_records(image_tree):
    from pipelines.counters import counters

    root, images = image_tree
    source = resolve_source(str(root), ReaderOptions(keep_labels=("cat", "emu")))
    p = TestPipeline()
    read = p | ReadImages(source)
    expected = [(i, i.split("/")[0]) for i in images if not i.startswith("dog/")]
    assert_that(_ids_and_labels(read), equal_to(expected))
    assert_that(read["rejected"], equal_to([]), label="NoRejects")
    result = p.run()
    result.wait_until_finish()
    assert counters(result)["records_skipped_label"] == PER_CLASS


def test_keep_labels_needs_a_label():
    with pytest.raises(ValueError, match="--keep-labels 1,5,6"):
        ReaderOptions(keep_labels=(" ",))


def test_a_batched_read_gives_the_same_records_in_lists_cut_at_the_batch_weight(tmp_path, monkeypatch):
    import pipelines.inputs.sources as sources
    from pipelines.inputs.formats.image_files import FileUnit

    for i in range(7):
        (tmp_path / f"{i}.png").write_bytes(encode_png(np.full((2, 2), i, np.uint8)))
    source = resolve_source(str(tmp_path))
    unit = FileUnit(tuple(sorted(str(p) for p in tmp_path.glob("*.png"))))
    monkeypatch.setattr(sources, "BATCH_WEIGHT", 3)
    one_by_one, batched = sources.ReadUnitFn(source), sources.ReadUnitFn(source, batched=True)
    one_by_one.setup()
    batched.setup()
    records = list(one_by_one.process(unit))
    lists = list(batched.process(unit))
    assert [len(batch) for batch in lists] == [3, 3, 1]
    assert [r for batch in lists for r in batch] == records
    assert [r["id"] for r in records] == [f"{i}.png" for i in range(7)]
