"""The infer job: RunInference with the real SavedModel, Parquet written and read back."""

import glob
import os

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import parquet_schema as cols
from pipelines.config import InferConfig
from pipelines.infer import EncodeImages, run_infer
from tests.conftest import known_pixels, write_image_tree


@pytest.fixture(scope="module")
def inferred(trained, image_tree, tmp_path_factory):
    train_cfg, _ = trained
    root, images = image_tree
    out = tmp_path_factory.mktemp("predictions")
    result = run_infer(InferConfig(model_dir=train_cfg.model_dir, input=str(root), output=str(out)))
    table = pq.read_table(glob.glob(os.path.join(out, "predictions-*.parquet")))
    return result, table, images


def test_one_row_per_input_with_the_documented_schema(inferred):
    result, table, images = inferred
    assert table.num_rows == len(images) == result.counts["prediction_rows"]
    assert sorted(table.column("id").to_pylist()) == sorted(images)
    assert table.schema.names == ["id", "source", "label", "latent", "reconstruction", "reconstruction_error"]
    assert str(table.schema.field("latent").type) == "list<item: float>"
    assert str(table.schema.field("reconstruction_error").type) == "float"
    meta = table.schema.metadata
    assert meta[b"hourglass.image_shape"] == b"12,10,1" and meta[b"hourglass.model_kind"] == b"dense"


def test_errors_match_a_recomputation_from_the_columns(inferred):
    _, table, images = inferred
    for row in table.to_pylist():
        assert len(row["latent"]) == 4 and row["label"] == row["id"].split("/")[0]
        reconstruction = np.asarray(row["reconstruction"], np.float32).reshape(12, 10)
        assert reconstruction.min() >= 0.0 and reconstruction.max() <= 1.0
        expected = np.mean((reconstruction - images[row["id"]] / 255.0) ** 2)
        assert row["reconstruction_error"] == pytest.approx(expected, rel=1e-4)


def test_bad_files_are_dead_lettered_and_good_ones_all_written(trained, tmp_path):
    train_cfg, _ = trained
    images = write_image_tree(tmp_path / "in")
    (tmp_path / "in" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = run_infer(
        InferConfig(model_dir=train_cfg.model_dir, input=str(tmp_path / "in"), output=str(tmp_path / "o"))
    )
    assert result.counts["records_read"] == len(images) + 1
    assert result.counts["prediction_rows"] == len(images)
    assert result.counts["infer_rejected_corrupt_image"] == 1
    lines = [line for f in (tmp_path / "o" / "rejected").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(lines) == 1 and '"cat/broken.png"' in lines[0]


def test_infer_reads_containers_too(trained, tmp_path):
    train_cfg, _ = trained
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "x.npy", np.stack([known_pixels(c, 0) for c in range(3)]))
    np.save(tmp_path / "in" / "y.npy", np.array(["cat", "dog", "emu"]))
    result = run_infer(
        InferConfig(model_dir=train_cfg.model_dir, input=str(tmp_path / "in"), output=str(tmp_path / "o"))
    )
    table = pq.read_table(glob.glob(str(tmp_path / "o" / "predictions-*.parquet")))
    assert result.counts["prediction_rows"] == 3
    assert sorted(zip(table.column("id").to_pylist(), table.column("label").to_pylist(), strict=True)) == [
        ("x.npy/0", "cat"),
        ("x.npy/1", "dog"),
        ("x.npy/2", "emu"),
    ]


class _FakeHandler(ModelHandler):
    """Latent = mean pixel byte; no TensorFlow needed."""

    def load_model(self):
        return None

    def run_inference(self, batch, model, inference_args=None):
        for record in batch:
            value = float(len(record["image"]))
            yield PredictionResult(
                record,
                {
                    "latent": np.array([value], np.float32),
                    "reconstruction": np.zeros(2, np.float32),
                    "reconstruction_error": np.float32(0.5),
                },
            )


def test_encode_images_takes_an_injected_handler():
    records = [{"id": f"r{i}", "label": "", "image": b"x" * i, "source": "mem"} for i in range(1, 4)]
    with TestPipeline() as p:
        rows = p | beam.Create(records) | EncodeImages(_FakeHandler())
        assert_that(
            rows | beam.Map(lambda r: (r[cols.ID], r[cols.LABEL], r[cols.LATENT], r[cols.RECONSTRUCTION_ERROR])),
            equal_to([(f"r{i}", None, [float(i)], 0.5) for i in range(1, 4)]),
        )
