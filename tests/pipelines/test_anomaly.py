"""Anomalies end to end on real digits: a one-class model (``--keep-labels 1``), its Parquet columns,
drift in the manifests, ``--fail-on-drift``, and ``evaluate --normal-labels`` against scikit-learn.

The model is trained on the ones among the first ``READ`` positions of the built-in sample; the
images the tests score come from the positions after them, which no job read before.
"""

import glob
import json
import pathlib

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from models.config import ModelConfig, TrainConfig
from models.model_info import ModelInfo
from models.training import train
from pipelines.cli import cli
from pipelines.config import BUILTIN_MNIST, EvaluateConfig, InferConfig, PreprocessConfig, ReaderOptions
from pipelines.evaluate.job import run_evaluate
from pipelines.infer.job import run_infer
from pipelines.inputs import formats
from pipelines.inputs.formats.base import RecordRange
from pipelines.inputs.images import encode_png, open_image
from pipelines.preprocess.job import run_preprocess
from tests.helpers import serve

pytestmark = pytest.mark.slow

READ = 3000
SCORED = 100  # images per scored folder


@pytest.fixture(scope="module")
def one_class(tmp_path_factory):
    """(model_dir, {folder name: path}) of a dense model trained on ones, and folders of unseen images."""
    root = tmp_path_factory.mktemp("one_class")
    reader = ReaderOptions(keep_labels=("1",))
    result = run_preprocess(PreprocessConfig(input=BUILTIN_MNIST, output=str(root / "data"), limit=READ, reader=reader))
    assert set(result.stats["splits"]["train"]["labels"]) == {"1"}
    assert result.counts["records_skipped_label"] == READ - result.counts["records_read"]
    train(TrainConfig(data_dir=str(root / "data"), model_dir=str(root / "model"), model=ModelConfig(), epochs=15))

    builtin = formats.READERS[BUILTIN_MNIST](BUILTIN_MNIST, ReaderOptions())
    builtin.setup()
    unseen = list(builtin.read(RecordRange(BUILTIN_MNIST, READ, 5000 - READ)))
    ones = [r for r in unseen if r["label"] == "1"][:SCORED]
    sevens = [r for r in unseen if r["label"] == "7"][:SCORED]
    rng = np.random.default_rng(0)
    folders = {}
    for name, records, noise in (("same", ones, 0.0), ("noisy", ones, 0.3), ("other", sevens, 0.0)):
        for r in records:
            pixels = np.asarray(open_image(r["image"]), np.float64) / 255.0
            pixels = np.clip(pixels + rng.normal(0, noise, pixels.shape), 0, 1) if noise else pixels
            path = root / name / r["label"] / f"{r['id'].replace('/', '-')}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_png(np.round(pixels * 255).astype(np.uint8)))
        folders[name] = str(root / name)
    return str(root / "model"), folders, root


def _infer(model_dir, folder, output, run_id, **options):
    return run_infer(InferConfig(model_dir=model_dir, input=folder, output=output, run_id=run_id, **options))


def test_the_parquet_holds_the_anomaly_columns_and_the_threshold(one_class):
    model_dir, folders, root = one_class
    cal = ModelInfo.read(model_dir).calibration
    result = _infer(model_dir, folders["same"], str(root / "columns"), "same")
    table = pq.read_table(glob.glob(f"{result.output}/*.parquet"), partitioning=None)
    assert table.num_rows == SCORED
    meta = table.schema.metadata
    assert float(meta[b"hourglass.anomaly_threshold"]) == cal.threshold
    assert float(meta[b"hourglass.anomaly_fpr"]) == cal.fpr == 0.01
    assert cal.error == "blurred_mse"
    error = table.column("anomaly_error").to_numpy()
    assert np.all(error < table.column("reconstruction_error").to_numpy())
    np.testing.assert_array_equal(table.column("is_anomaly").to_numpy(zero_copy_only=False), error > cal.threshold)
    ranks = np.interp(error, np.array(cal.error_percentiles, np.float32), np.linspace(0, 1, 101))
    np.testing.assert_allclose(table.column("anomaly_score").to_numpy(), ranks, atol=1e-5)
    # Held-out images of the trained digit: about the target FPR flagged (at most a few of 100).
    assert table.column("is_anomaly").to_numpy(zero_copy_only=False).mean() <= 0.05

    only = _infer(model_dir, folders["same"], str(root / "columns"), "scores", outputs=("anomaly_score",))
    selected = pq.read_table(glob.glob(f"{only.output}/*.parquet"), partitioning=None)
    assert selected.schema.names == ["id", "source", "label", "anomaly_score"]
    np.testing.assert_allclose(np.sort(selected.column("anomaly_score").to_numpy()), np.sort(ranks), atol=1e-5)


@pytest.mark.parametrize(("folder", "detected"), [("same", False), ("noisy", True), ("other", True)])
def test_drift_is_detected_on_noisy_copies_and_another_digit_only(one_class, folder, detected):
    model_dir, folders, root = one_class
    result = _infer(model_dir, folders[folder], str(root / "drift"), folder)
    drift = result.manifest["drift"]
    assert drift["detected"] is detected, drift
    assert drift["examples"] == SCORED and drift["reference_examples"] == ModelInfo.read(model_dir).calibration.examples
    assert len(drift["latent"]["psi"]) == 32
    if detected:
        assert drift["errors"]["ks_pvalue"] < 0.01 and "errors" in drift["reasons"]
    else:
        assert drift["errors"]["ks_pvalue"] > 0.01 and drift["reasons"] == []


def test_fail_on_drift_publishes_then_exits_with_its_code(one_class):
    model_dir, folders, root = one_class
    out = root / "failing"
    args = ["infer", "--model-dir", model_dir, "--input", folders["other"], "--output", str(out)]
    result = CliRunner().invoke(cli, [*args, "--run-id", "night-1", "--fail-on-drift"])
    assert result.exit_code == 3, result.output
    assert "drift detected in" in result.output and "run_id=night-1" in result.output
    manifest = json.loads((out / "run_id=night-1" / "_manifest.json").read_text())
    assert manifest["rows"] == SCORED and manifest["drift"]["detected"] is True
    assert not list(out.glob(".*staging*"))
    calm = CliRunner().invoke(cli, [*args[:4], folders["same"], *args[5:], "--run-id", "night-2", "--fail-on-drift"])
    assert calm.exit_code == 0, calm.output


def test_evaluate_normal_labels_match_scikit_learn(one_class):
    model_dir, folders, root = one_class
    mixed = root / "mixed"
    for name in ("same", "other"):
        for path in glob.glob(f"{folders[name]}/*/*.png"):
            target = mixed / path.split("/")[-2] / path.split("/")[-1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(pathlib.Path(path).read_bytes())
    cfg = EvaluateConfig(model_dir, str(root / "report"), input=str(mixed), normal_labels=("1",), max_examples=500)
    metrics = run_evaluate(cfg).metrics["anomaly"]["labelled"]

    paths = sorted(glob.glob(f"{mixed}/*/*.png"))
    out = serve(f"{model_dir}/saved_model", [pathlib.Path(p).read_bytes() for p in paths])
    truth = np.array([p.split("/")[-2] != "1" for p in paths])
    assert (metrics["normal"], metrics["anomalous"]) == (SCORED, SCORED)
    assert metrics["auroc"] == pytest.approx(roc_auc_score(truth, out["anomaly_error"]), abs=1e-6)
    assert metrics["aupr"] == pytest.approx(average_precision_score(truth, out["anomaly_error"]), abs=1e-6)
    assert metrics["f1"] == pytest.approx(f1_score(truth, out["is_anomaly"]), abs=1e-6)
    assert metrics["fpr"] == pytest.approx(out["is_anomaly"][~truth].mean(), abs=1e-6)
    assert metrics["auroc"] > 0.9
    page = (root / "report" / "index.html").read_text()
    assert 'src="roc.png"' in page and 'src="anomalies.png"' in page
    assert (root / "report" / "roc.png").stat().st_size > 1000


def test_normal_labels_that_no_image_has_fail_naming_the_labels(one_class):
    model_dir, folders, root = one_class
    cfg = EvaluateConfig(model_dir, str(root / "bad"), input=folders["same"], normal_labels=("9",))
    with pytest.raises(ValueError, match=r"--normal-labels 9: no evaluated image .* \(labels there: 1\)"):
        run_evaluate(cfg)
