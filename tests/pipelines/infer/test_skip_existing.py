"""``--skip-existing``: nightly partitions hold only the new and changed records; a new model re-encodes."""

import dataclasses

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines.config import InferConfig
from pipelines.infer import publish
from pipelines.infer.job import run_infer
from pipelines.infer.keys import KEYS_DIR, KeysIndex, hash64
from pipelines.inputs.images import encode_png
from tests.conftest import known_pixels, write_image_tree
from tests.pipelines.infer.test_infer import FakeHandler, _fake_model_dir


def _ids(partition) -> list[str]:
    return sorted(pq.read_table(list(partition.glob("predictions-*.parquet")), columns=["id"])["id"].to_pylist())


@pytest.mark.slow
def test_nightly_runs_encode_only_new_and_changed_records(tmp_path):
    images = write_image_tree(tmp_path / "in")
    (tmp_path / "in" / "cat" / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "o"
    cfg = InferConfig(
        model_dir=_fake_model_dir(tmp_path / "m"),
        input=str(tmp_path / "in"),
        output=str(out),
        run_id="2026-12-01",
        skip_existing=True,
    )
    first = run_infer(dataclasses.replace(cfg, run_id="2026-12-01"), model_handler=FakeHandler())
    assert first.counts["prediction_rows"] == len(images)
    assert {k: first.manifest[k] for k in ("new", "changed", "skipped_existing")} == {
        "new": len(images) + 1,
        "changed": 0,
        "skipped_existing": 0,
    }
    keys = pq.read_table(out / "run_id=2026-12-01" / KEYS_DIR)
    assert sorted(keys["id"].to_pylist()) == sorted(images)  # the bad file is not a key: tried again
    assert keys.schema.metadata[b"hourglass.model_hash"] == b"f00d"

    (tmp_path / "in" / "dog" / "new.png").write_bytes(encode_png(known_pixels(1, 99)))
    (tmp_path / "in" / "emu" / "003.png").write_bytes(encode_png(known_pixels(2, 42)))  # changed in place
    second = run_infer(dataclasses.replace(cfg, run_id="2026-12-02"), model_handler=FakeHandler())
    assert _ids(out / "run_id=2026-12-02") == ["dog/new.png", "emu/003.png"]
    manifest = publish.read_manifest(out / "run_id=2026-12-02")
    assert {k: manifest[k] for k in ("new", "changed", "skipped_existing")} == {
        "new": 2,  # dog/new.png and the bad file
        "changed": 1,
        "skipped_existing": len(images) - 1,
    }
    assert manifest["compared_with"] == ["run_id=2026-12-01"] and second.rejected == 1

    (tmp_path / "in" / "emu" / "003.png").write_bytes(encode_png(known_pixels(2, 3)))  # back to night 1's bytes
    third = run_infer(dataclasses.replace(cfg, run_id="2026-12-03"), model_handler=FakeHandler())
    assert _ids(out / "run_id=2026-12-03") == ["emu/003.png"]  # night 2 holds the latest encoding of it
    assert third.manifest["skipped_existing"] == len(images)

    rerun = run_infer(dataclasses.replace(cfg, run_id="2026-12-02"), model_handler=FakeHandler())
    assert _ids(out / "run_id=2026-12-02") == ["dog/new.png"] and rerun.manifest["changed"] == 0

    table = ds.dataset(out, format="parquet", partitioning="hive").to_table(columns=["id", "run_id"])
    assert sorted(set(table["id"].to_pylist())) == sorted([*images, "dog/new.png"])
    assert table.num_rows == len(set(table["id"].to_pylist())) + 1  # emu/003.png: night 1 and night 3

    new_model = _fake_model_dir(tmp_path / "m2")
    (tmp_path / "m2" / "saved_model" / "model_info.json").write_text(
        (tmp_path / "m2" / "saved_model" / "model_info.json").read_text().replace("f00d", "beef")
    )
    fourth = run_infer(dataclasses.replace(cfg, model_dir=new_model, run_id="2026-12-04"), model_handler=FakeHandler())
    assert _ids(out / "run_id=2026-12-04") == sorted([*images, "dog/new.png"])
    assert fourth.manifest["new"] == len(images) + 2 and fourth.manifest["compared_with"] == []


def test_the_index_reads_only_the_hash_columns_keeping_the_newest_entry_of_an_id(tmp_path):
    import pyarrow as pa

    from pipelines.infer.keys import keys_schema

    paths = []
    for night, contents in enumerate(([1, 2, 3], [20, 30])):
        ids = ["a", "b", "c"] if night == 0 else ["b", "c"]
        table = pa.table(
            {
                "id": ids,
                "id_hash": pa.array([hash64(i.encode()) for i in ids], pa.uint64()),
                "content_hash": pa.array(contents, pa.uint64()),
            },
            schema=keys_schema("f"),
        )
        paths.append(str(tmp_path / f"{night}.parquet"))
        # ids left out of the file: the lookup needs only the two hash columns
        pq.write_table(table.set_column(0, "id", pa.nulls(len(ids), pa.string())), paths[-1])
    ids, contents = KeysIndex(("n0", "n1"), tuple(paths)).load()
    by_id = dict(zip(ids.tolist(), contents.tolist(), strict=True))
    assert by_id == {hash64(b"a"): 1, hash64(b"b"): 20, hash64(b"c"): 30}
    assert np.all(np.diff(ids.astype(np.float64)) > 0)
