"""The infer job: RunInference with the real SavedModel or an injected handler, Parquet read back."""

import dataclasses
import glob
import io
import json
import os
import pickle

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from models.calibration import build_calibration
from models.model_info import ModelInfo
from pipelines.config import InferConfig
from pipelines.infer.encode import EncodeImages
from pipelines.infer.job import parquet as cols
from pipelines.infer.job import publish, run_infer
from pipelines.infer.model_handler import HourglassModelHandler, batch_result
from pipelines.infer.parquet import WriteParquet
from tests.conftest import HEIGHT, WIDTH, known_pixels, write_image_tree
from tests.helpers import read_rejected, readme_block


def _table(folder) -> pa.Table:
    return pq.read_table(glob.glob(os.path.join(folder, "predictions-*.parquet")))


@pytest.fixture(scope="module")
def inferred(trained, image_tree, tmp_path_factory):
    train_cfg, _ = trained
    root, images = image_tree
    out = tmp_path_factory.mktemp("predictions")
    result = run_infer(InferConfig(model_dir=train_cfg.model_dir, input=str(root), output=str(out)))
    return result, _table(out), images


def test_one_row_per_input_with_the_documented_schema(inferred):
    result, table, images = inferred
    assert table.num_rows == len(images) == result.counts["prediction_rows"] == result.manifest["rows"]
    assert result.counts["records_read"] == table.num_rows + result.rejected
    assert sorted(table.column("id").to_pylist()) == sorted(images)
    assert table.schema.names == list(cols.KEY_COLUMNS + cols.DEFAULT_OUTPUTS)  # denoised only when asked
    for name in (cols.LATENT, cols.RECONSTRUCTION, cols.RESTORED):
        kind = table.schema.field(name).type
        assert pa.types.is_list(kind) and kind.value_type == pa.float32()
    assert table.schema.field(cols.RECONSTRUCTION_ERROR).type == pa.float32()
    assert table.column(cols.RESTORED).null_count == table.num_rows  # the fixture model restores nothing
    meta = table.schema.metadata
    assert meta[b"hourglass.image_shape"] == b"12,10,1" and meta[b"hourglass.model_kind"] == b"dense"
    assert meta[b"hourglass.denoising"] == b"false" and meta[b"hourglass.pixels"] == b"float"
    assert meta[b"hourglass.corruption"] == b""
    assert meta[b"hourglass.model_hash"] == result.manifest["model"]["model_hash"].encode()


def test_errors_match_a_recomputation_from_the_columns(inferred):
    _, table, images = inferred
    for row in table.to_pylist():
        assert len(row["latent"]) == 4 and row["label"] == row["id"].split("/")[0]
        reconstruction = np.asarray(row["reconstruction"], np.float32).reshape(12, 10)
        assert reconstruction.min() >= 0.0 and reconstruction.max() <= 1.0
        expected = np.mean((reconstruction - images[row["id"]] / 255.0) ** 2)
        assert row["reconstruction_error"] == pytest.approx(expected, rel=1e-4)


def test_manifest_records_counts_model_input_and_timing(inferred):
    result, table, _ = inferred
    manifest = publish.read_manifest(result.output)
    assert manifest["rows"] == table.num_rows == sum(f["rows"] for f in manifest["files"])
    assert manifest["records_read"] == table.num_rows and manifest["rejected"] == {}
    assert manifest["model"]["kind"] == "dense" and manifest["model"]["denoising"] is False
    assert manifest["model"]["corruption"] is None
    assert manifest["input"] == result.manifest["input"] and manifest["columns"] == table.schema.names
    assert manifest["timing"]["seconds"] > 0 and manifest["timing"]["started"] <= manifest["timing"]["finished"]
    dists = manifest["metrics"]["distributions"]
    assert dists["inference_request_batch_size"]["sum"] == table.num_rows
    assert dists["inference_batch_latency_micro_secs"]["count"] >= 1
    assert manifest["metrics"]["counters"]["num_inferences"] == table.num_rows
    assert os.path.exists(os.path.join(result.output, "_config.json"))


def test_the_readmes_duckdb_query_finds_the_nearest_latents(inferred):
    import duckdb

    result, table, _ = inferred
    query_id = "cat/000.png"
    sql = readme_block("sql").replace("hourglass-output/predictions", result.output).replace("mnist/0", query_id)
    found = duckdb.sql(sql).fetchall()
    codes = np.stack(table.column("latent").to_numpy(zero_copy_only=False))
    ids = table.column("id").to_pylist()
    distances = np.linalg.norm(codes - codes[ids.index(query_id)], axis=1)
    nearest = [ids[i] for i in np.argsort(distances)[1:6]]
    assert [row[0] for row in found] == nearest
    assert [row[2] for row in found] == pytest.approx(np.sort(distances)[1:6], rel=1e-5)


def test_the_readmes_pandas_and_pyarrow_snippet_runs_on_real_output(inferred):
    result, table, _ = inferred
    code = readme_block("python").replace("hourglass-output/predictions", result.output)
    scope: dict = {}
    exec(code.replace("mnist/0", "cat/000.png"), scope)
    assert len(scope["frame"]) == table.num_rows and len(scope["nearest"]) == 5
    assert "cat/000.png" not in scope["table"].take(scope["nearest"]).column("id").to_pylist()


def test_png_pixels_decode_to_the_float_values(inferred, trained, image_tree, tmp_path):
    _, floats, _ = inferred
    root, _ = image_tree
    run_infer(
        InferConfig(
            model_dir=trained[0].model_dir, input=str(root), output=str(tmp_path), pixels="png", compression="zstd"
        )
    )
    pngs = _table(tmp_path)
    assert pngs.schema.field(cols.RECONSTRUCTION).type == pa.binary()
    assert pngs.schema.metadata[b"hourglass.pixels"] == b"png"
    assert (
        pq.ParquetFile(glob.glob(str(tmp_path / "predictions-*.parquet"))[0])
        .metadata.row_group(0)
        .column(0)
        .compression
        == "ZSTD"
    )
    expected = {row["id"]: np.asarray(row["reconstruction"]) for row in floats.to_pylist()}
    for row in pngs.to_pylist():
        decoded = np.asarray(Image.open(io.BytesIO(row["reconstruction"])), np.float32) / 255.0
        assert decoded.shape == (HEIGHT, WIDTH)
        np.testing.assert_allclose(decoded.reshape(-1), expected[row["id"]], atol=0.5 / 255 + 1e-6)


def test_outputs_selects_columns_and_latents_only_match(inferred, trained, image_tree, tmp_path):
    _, floats, _ = inferred
    root, _ = image_tree
    cfg = InferConfig(model_dir=trained[0].model_dir, input=str(root), output=str(tmp_path), outputs=("latent",))
    run_infer(cfg)
    latents = _table(tmp_path)
    assert latents.schema.names == ["id", "source", "label", "latent"]
    expected = dict(zip(floats.column("id").to_pylist(), floats.column("latent").to_pylist(), strict=True))
    for row in latents.to_pylist():
        np.testing.assert_allclose(row["latent"], expected[row["id"]], rtol=1e-5, atol=1e-6)


def test_bad_files_are_dead_lettered_and_good_ones_all_written(trained, tmp_path):
    train_cfg, _ = trained
    images = write_image_tree(tmp_path / "in")
    (tmp_path / "in" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    # A sound header over cut-off data: validation passes it, the model's decoder refuses it in its
    # batch, and the record alone gets the dead letter validation's decoder would have given.
    good = (tmp_path / "in" / "cat" / "000.png").read_bytes()
    (tmp_path / "in" / "dog" / "truncated.png").write_bytes(good[:-12])
    result = run_infer(
        InferConfig(model_dir=train_cfg.model_dir, input=str(tmp_path / "in"), output=str(tmp_path / "o"))
    )
    assert result.counts["records_read"] == len(images) + 2 == result.counts["prediction_rows"] + result.rejected
    assert sorted(_table(tmp_path / "o").column("id").to_pylist()) == sorted(images)
    assert result.counts["infer_rejected_corrupt_image"] == 2
    assert result.manifest["rejected"] == {"corrupt_image": 2}
    letters = {letter["id"]: letter for letter in read_rejected(tmp_path / "o" / "_rejected")}
    assert sorted(letters) == ["cat/broken.png", "dog/truncated.png"]
    assert {(letter["stage"], letter["reason"]) for letter in letters.values()} == {("infer", "corrupt_image")}
    assert letters["dog/truncated.png"]["error"] == f"TensorFlow's decoder: Invalid PNG data, size {len(good) - 12}"


def test_infer_reads_containers_too(trained, tmp_path):
    train_cfg, _ = trained
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "x.npy", np.stack([known_pixels(c, 0) for c in range(3)]))
    np.save(tmp_path / "in" / "y.npy", np.array(["cat", "dog", "emu"]))
    result = run_infer(
        InferConfig(model_dir=train_cfg.model_dir, input=str(tmp_path / "in"), output=str(tmp_path / "o"))
    )
    table = _table(tmp_path / "o")
    assert result.counts["prediction_rows"] == 3
    assert sorted(zip(table.column("id").to_pylist(), table.column("label").to_pylist(), strict=True)) == [
        ("x.npy/0", "cat"),
        ("x.npy/1", "dog"),
        ("x.npy/2", "emu"),
    ]


# --- An injected handler (no TensorFlow): the denoised contract, retries, publishing, streaming.


class FakeModel:
    """Stands for a loaded model (RunInference keeps models by weak reference)."""


class FakeHandler(ModelHandler):
    """latent = [image byte length]; reconstruction all 0.25; restored (and denoised, for a noise)
    all 0.75 for a ``corruption``; with ``anomalous``, the anomaly outputs of an error above every
    calibration error (score 1, flagged); raises on any batch holding an id in ``fail``;
    ``load_model`` raises when ``broken``."""

    def __init__(
        self,
        corruption: str | None = None,
        fail: tuple[str, ...] = (),
        broken: bool = False,
        anomalous: bool = False,
    ):
        super().__init__()
        self._corruption, self._fail, self._broken, self._anomalous = corruption, fail, broken, anomalous

    def load_model(self):
        if self._broken:
            raise RuntimeError("the model cannot be loaded")
        return FakeModel()

    def run_inference(self, batch, model, inference_args=None):
        bad = [r["id"] for r in batch if r["id"] in self._fail]
        if bad:
            raise ValueError(f"cannot encode {bad}")
        return [batch_result(batch, self._outputs(batch))]

    def _outputs(self, batch):
        n = len(batch)
        outputs = {
            "latent": np.array([[len(record["image"])] for record in batch], np.float32),
            "reconstruction": np.full((n, HEIGHT, WIDTH, 1), 0.25, np.float32),
            "reconstruction_error": np.full(n, 0.5, np.float32),
        }
        if self._corruption:
            outputs["restored"] = np.full((n, HEIGHT, WIDTH, 1), 0.75, np.float32)
        if self._corruption == NOISE:
            outputs["denoised"] = outputs["restored"]
        if self._anomalous:
            outputs.update(
                anomaly_error=np.full(n, 0.5, np.float32),
                anomaly_score=np.ones(n, np.float32),
                is_anomaly=np.ones(n, np.bool_),
            )
        return outputs

    def batch_elements_kwargs(self):
        return {"min_batch_size": 8, "max_batch_size": 8}


NOISE = "gaussian:0.5"


def _fake_model_dir(path, corruption: str | None = None, calibrated: bool = False):
    """A model folder holding only ``model_info.json`` (for :class:`FakeHandler`); ``calibrated``: with a
    calibration of errors around 0.01 and latents around 0."""
    info = {"kind": "fake", "latent_dim": 1, "loss": "mse", "image_shape": [HEIGHT, WIDTH, 1], "model_hash": "f00d"}
    info["params"] = {}
    if corruption:
        info["corruption"] = corruption
    if corruption == NOISE:
        info.update(noise=NOISE, denoising=True)
    if calibrated:
        rng = np.random.default_rng(0)
        errors, latents = rng.lognormal(np.log(0.01), 0.3, 500), rng.normal(size=(500, 1))
        info["calibration"] = dataclasses.asdict(build_calibration(errors, latents, 0.01))
    (path / "saved_model").mkdir(parents=True)
    (path / "saved_model" / "model_info.json").write_text(json.dumps(info))
    return str(path)


@pytest.mark.parametrize("corruption", [NOISE, "blocks:0.3"])
def test_restored_is_filled_for_a_restoring_model_and_denoised_for_a_denoising_one(image_tree, tmp_path, corruption):
    root, images = image_tree
    model_dir = _fake_model_dir(tmp_path / "m", corruption)
    cfg = InferConfig(model_dir=model_dir, input=str(root), output=str(tmp_path / "o"), pixels="png")
    outputs = ("latent", "restored", "denoised") if corruption == NOISE else None
    run_infer(dataclasses.replace(cfg, outputs=outputs), model_handler=FakeHandler(corruption))
    table = _table(tmp_path / "o")
    assert table.num_rows == len(images) and table.column(cols.RESTORED).null_count == 0
    meta = table.schema.metadata
    assert meta[b"hourglass.corruption"] == corruption.encode()
    assert meta[b"hourglass.denoising"] == str(corruption == NOISE).lower().encode()
    assert (cols.DENOISED in table.schema.names) == (corruption == NOISE)
    restored = np.asarray(Image.open(io.BytesIO(table.column(cols.RESTORED)[0].as_py())))
    assert restored.shape == (HEIGHT, WIDTH) and set(np.unique(restored)) == {191}  # round(0.75 * 255)
    if corruption == NOISE:
        assert table.column(cols.DENOISED).to_pylist() == table.column(cols.RESTORED).to_pylist()


@pytest.mark.parametrize(
    ("corruption", "asked", "message"),
    [
        (None, "denoised", "not trained to denoise"),
        (None, "restored", "trained with no corruption .*train with --corrupt"),
        ("grey", "denoised", "not trained to denoise .*train with --noise"),
    ],
)
def test_a_restoring_output_asked_of_a_model_without_it_fails(tmp_path, corruption, asked, message):
    model_dir = _fake_model_dir(tmp_path / "m", corruption)
    cfg = InferConfig(model_dir=model_dir, input=str(tmp_path / "in"), output=str(tmp_path / "o"))
    with pytest.raises(ValueError, match=message):
        run_infer(dataclasses.replace(cfg, outputs=("latent", asked)), model_handler=FakeHandler())


def test_a_failing_batch_is_retried_one_by_one_and_only_the_bad_record_dead_lettered(image_tree, tmp_path):
    root, images = image_tree
    cfg = InferConfig(model_dir=_fake_model_dir(tmp_path / "m"), input=str(root), output=str(tmp_path / "o"))
    result = run_infer(cfg, model_handler=FakeHandler(fail=("dog/003.png",)))
    table = _table(tmp_path / "o")
    assert sorted(table.column("id").to_pylist()) == sorted(set(images) - {"dog/003.png"})
    assert result.counts["failed_batches_counter"] == 2  # its batch of 8, then the record alone
    assert result.counts["records_read"] == len(images) == table.num_rows + result.rejected
    (letter,) = read_rejected(tmp_path / "o" / "_rejected")
    assert letter["id"] == "dog/003.png" and letter["reason"] == "inference_failed"
    assert "cannot encode ['dog/003.png']" in letter["error"]
    assert result.manifest["rejected"] == {"inference_failed": 1}


def test_run_id_publishes_a_partition_that_a_rerun_replaces(tmp_path):
    write_image_tree(tmp_path / "in")
    model_dir = _fake_model_dir(tmp_path / "m")
    cfg = InferConfig(model_dir=model_dir, input=str(tmp_path / "in"), output=str(tmp_path / "o"), run_id="2026-01-02")
    first = run_infer(cfg, model_handler=FakeHandler())
    assert first.output == str(tmp_path / "o" / "run_id=2026-01-02")
    run_infer(dataclasses.replace(cfg, run_id="2026-01-03"), model_handler=FakeHandler())
    for f in (tmp_path / "in" / "emu").iterdir():
        f.unlink()
    run_infer(cfg, model_handler=FakeHandler())
    assert sorted(os.listdir(tmp_path / "o")) == ["run_id=2026-01-02", "run_id=2026-01-03"]
    dataset = ds.dataset(tmp_path / "o", format="parquet", partitioning="hive").to_table()
    per_run = dataset.group_by("run_id").aggregate([("id", "count_distinct"), ("id", "count")]).to_pylist()
    assert {r["run_id"]: (r["id_count_distinct"], r["id_count"]) for r in per_run} == {
        "2026-01-02": (16, 16),
        "2026-01-03": (24, 24),
    }
    assert publish.read_manifest(tmp_path / "o" / "run_id=2026-01-02")["rows"] == 16


def test_a_failed_run_publishes_nothing_and_keeps_the_last_good_output(tmp_path):
    write_image_tree(tmp_path / "in")
    cfg = InferConfig(
        model_dir=_fake_model_dir(tmp_path / "m"), input=str(tmp_path / "in"), output=str(tmp_path / "o"), run_id="r1"
    )
    run_infer(cfg, model_handler=FakeHandler())
    before = sorted(os.listdir(tmp_path / "o" / "run_id=r1"))
    with pytest.raises(Exception, match="cannot be loaded"):
        run_infer(cfg, model_handler=FakeHandler(broken=True))
    with pytest.raises(Exception, match="cannot be loaded"):
        run_infer(dataclasses.replace(cfg, run_id="r2"), model_handler=FakeHandler(broken=True))
    assert os.listdir(tmp_path / "o") == ["run_id=r1"]  # no r2, no staging folder left
    assert sorted(os.listdir(tmp_path / "o" / "run_id=r1")) == before
    assert _table(tmp_path / "o" / "run_id=r1").num_rows == 24


def test_an_output_folder_that_is_not_an_infer_output_is_not_replaced(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.txt").write_text("mine")
    model_dir = _fake_model_dir(tmp_path / "m")
    cfg = InferConfig(model_dir=model_dir, input=model_dir, output=str(tmp_path / "o"))  # any files as input
    with pytest.raises(ValueError, match="not an infer output"):
        run_infer(cfg, model_handler=FakeHandler())
    assert os.listdir(tmp_path / "o") == ["notes.txt"]


def test_encode_images_returns_arrow_tables_of_the_schema():
    info = ModelInfo("fake", latent_dim=1, image_shape=(HEIGHT, WIDTH, 1), loss="mse", params={}, model_hash="f")
    schema = cols.prediction_schema(info, ("latent",))
    records = [{"id": f"r{i}", "label": "", "image": b"x" * i, "source": "mem"} for i in range(1, 4)]
    with TestPipeline() as p:
        encoded = p | beam.Create(records) | EncodeImages(FakeHandler(), schema)
        rows = encoded["tables"] | beam.FlatMap(lambda t: t.to_pylist())
        assert_that(
            rows,
            equal_to([{"id": f"r{i}", "source": "mem", "label": None, "latent": [float(i)]} for i in range(1, 4)]),
        )


def test_files_roll_over_at_the_byte_budget_in_whole_row_groups(tmp_path):
    schema = pa.schema([pa.field("x", pa.list_(pa.float32()))])
    rng = np.random.default_rng(0)
    tables = [pa.table({"x": list(rng.random((50, 1000), np.float32))}, schema=schema) for _ in range(6)]
    with TestPipeline() as p:
        _ = p | beam.Create(tables) | WriteParquet(str(tmp_path / "p"), schema, "snappy", max_file_bytes=300_000)
    files = sorted(glob.glob(str(tmp_path / "p-*.parquet")))
    metas = [pq.read_metadata(f) for f in files]
    assert len(files) == 3 and [m.num_row_groups for m in metas] == [2, 2, 2]
    assert sum(m.num_rows for m in metas) == 300


def test_the_real_handler_shares_one_model_between_its_copies(trained):
    handler = HourglassModelHandler(trained[0].model_dir)
    copy = pickle.loads(pickle.dumps(handler))
    assert handler.load_model() is copy.load_model()


def test_sidecar_files_are_counted_in_the_manifest_and_odd_names_reach_parquet(trained, tmp_path):
    from tests.pipelines.inputs.test_listing import junk_folder

    train_cfg, _ = trained
    good = junk_folder(tmp_path / "in")
    with open(os.path.join(os.fsencode(tmp_path / "in" / "cat"), b"n\xe4me.png"), "wb") as f:
        f.write((tmp_path / "in" / "cat" / "000.png").read_bytes())
    cfg = InferConfig(model_dir=train_cfg.model_dir, input=str(tmp_path / "in"), output=str(tmp_path / "out"))
    result = run_infer(cfg)
    table = _table(tmp_path / "out")
    assert sorted(table.column("id").to_pylist()) == sorted(good | {"cat/n\\xe4me.png"})
    assert result.manifest["skipped"] == {"by_extension": 4, "hidden": 7} and result.manifest["rejected"] == {}
    assert result.manifest["records_read"] == len(good) + 1
    assert "11 files skipped (by_extension 4, hidden 7)" in result.summary()
