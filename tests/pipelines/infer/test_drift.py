"""Drift: results binned by ``CountDriftFn`` in a real Beam pipeline, then judged by ``drift_report``."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from models.calibration import build_calibration
from pipelines.counters import counters
from pipelines.infer import drift
from pipelines.infer.model_handler import batch_result
from transforms.errors import DriftDetected

DIMS = 4


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(0)
    errors = rng.lognormal(-4.0, 0.4, 2000).astype(np.float32)
    latents = rng.normal(size=(2000, DIMS)).astype(np.float32)
    latents[:, 3] = 0.0  # a dead unit: every decile ties
    return build_calibration(errors, latents, 0.01)


def _counted(cal, errors: np.ndarray, latents: np.ndarray) -> dict[str, int]:
    """The drift counters of results with these errors and latents (scored as the export scores them)."""
    scores = np.interp(errors, cal.error_percentiles, np.linspace(0, 1, 101)).astype(np.float32)
    # Batches of up to 256 rows, as RunInference gives them (the last one shorter).
    results = [
        batch_result(
            list(range(start, min(start + 256, len(errors)))),
            {
                "anomaly_score": scores[start : start + 256],
                "is_anomaly": errors[start : start + 256] > cal.threshold,
                "latent": latents[start : start + 256],
            },
        )
        for start in range(0, len(errors), 256)
    ]
    p = TestPipeline()
    _ = p | beam.Create(results) | beam.ParDo(drift.CountDriftFn(cal))
    result = p.run()
    result.wait_until_finish()
    return counters(result)


def _sample(n: int, seed: int, error_scale: float = 1.0, shift_dim: int | None = None):
    rng = np.random.default_rng(seed)
    errors = rng.lognormal(-4.0, 0.4, n).astype(np.float32) * error_scale
    latents = rng.normal(size=(n, DIMS)).astype(np.float32)
    latents[:, 3] = 0.0
    if shift_dim is not None:
        latents[:, shift_dim] += 2.0
    return errors, latents


def test_a_second_sample_of_the_same_data_shows_no_drift(reference):
    counts = _counted(reference, *_sample(1500, seed=1))
    report = drift.drift_report(counts, reference)
    assert report["detected"] is False and report["reasons"] == []
    assert report["examples"] == 1500 and report["reference_examples"] == 2000
    assert report["errors"]["ks_statistic"] < 0.06 and report["errors"]["ks_pvalue"] > 0.01
    assert report["latent"]["psi_max"] < 0.05 and report["latent"]["psi"][3] == pytest.approx(0.0, abs=1e-6)
    assert report["flagged"]["fraction"] < 0.02
    assert all(not name.startswith("drift_") for name in drift.without_drift_counters(counts))
    drift.check(report, "out")  # no drift: no error


def test_larger_errors_are_drift_of_the_errors_and_of_the_flagged_share(reference):
    report = drift.drift_report(_counted(reference, *_sample(500, seed=2, error_scale=2.0)), reference)
    assert report["detected"] is True and report["reasons"] == ["errors", "flagged"]
    assert report["errors"]["ks_statistic"] > 0.5 and report["errors"]["ks_pvalue"] < 1e-6
    assert report["flagged"]["fraction"] > 0.2
    with pytest.raises(DriftDetected, match=r"drift detected in out/run_id=x \(published.*errors: KS") as caught:
        drift.check(report, "out/run_id=x")
    assert caught.value.exit_code == 3


def test_a_shifted_latent_dimension_is_drift_of_that_dimension(reference):
    report = drift.drift_report(_counted(reference, *_sample(500, seed=3, shift_dim=1)), reference)
    assert report["reasons"] == ["latent"]
    assert report["latent"]["psi_max_dim"] == 1 and report["latent"]["psi_max"] > 1.0
    assert report["latent"]["psi_limit"] >= 0.25


def test_the_reference_shares_follow_tied_deciles(reference):
    np.testing.assert_allclose(reference.latent_bin_shares[0], [0.1] * 10, atol=1e-3)
    np.testing.assert_allclose(reference.latent_bin_shares[3], [0.0] * 9 + [1.0])  # every value at the ties


def test_a_model_without_calibration_reports_why():
    report = drift.drift_report({}, None)
    assert report["detected"] is False and "no calibration" in report["skipped"]


def test_counts_of_columns_read_back_equal_the_beam_counters(reference):
    """The streaming watch bins the Parquet columns; batch runs count in Beam: both give the same counts."""
    errors, latents = _sample(300, seed=4, error_scale=1.5)
    scores = np.interp(errors, reference.error_percentiles, np.linspace(0, 1, 101)).astype(np.float32)
    counted = drift.drift_counts(reference, scores, errors > reference.threshold, latents)
    assert counted == {name: n for name, n in _counted(reference, errors, latents).items() if name.startswith("drift_")}
    assert counted[drift.SCORED] == counted[drift.LATENTS] == 300
    assert drift.drift_report(counted, reference)["reasons"] == ["errors", "flagged"]
