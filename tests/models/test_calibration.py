"""Anomaly calibration: the threshold methods, and the calibration a real training run stores and serves."""

import numpy as np
import pytest
from scipy import stats

from models import calibration
from models.model_info import ModelInfo
from pipelines.inputs.images import encode_png
from tests.conftest import known_pixels
from tests.helpers import serve
from transforms.errors import UserError


@pytest.mark.parametrize(("calibration_size", "method"), [(2000, "conformal"), (60, "lognormal")])
def test_threshold_flags_about_the_target_fpr_of_held_out_normal_errors(calibration_size, method):
    rng = np.random.default_rng(0)
    normal = rng.lognormal(-4.0, 0.5, size=calibration_size + 100_000).astype(np.float32)
    threshold, used = calibration.threshold_at_fpr(normal[:calibration_size], 0.01)
    held_out = normal[calibration_size:]
    assert used == method
    assert threshold > np.min(normal[:calibration_size])
    assert 0.003 <= np.mean(held_out > threshold) <= 0.03


def test_small_sample_threshold_flags_the_target_fpr_on_average_over_calibrations():
    """45 errors (one digit's eval split): the prediction bound, unlike the fitted quantile, accounts for
    the mean and std being estimates, so over many calibrations it flags 1% of new normal errors."""
    rng = np.random.default_rng(2)
    mean, std = -4.0, 0.5
    exceeded = []
    for _ in range(2000):
        threshold, method = calibration.threshold_at_fpr(rng.lognormal(mean, std, 45).astype(np.float32), 0.01)
        exceeded.append(1 - stats.norm.cdf((np.log(threshold) - mean) / std))  # P(new error > threshold)
    assert method == "lognormal"
    assert 0.009 <= np.mean(exceeded) <= 0.011


def test_conformal_threshold_is_an_order_statistic():
    errors = np.arange(1, 1001, dtype=np.float32)  # 1..1000
    threshold, method = calibration.threshold_at_fpr(errors, 0.01)
    # ceil(0.99 * 1001) = 991: the 991st smallest.
    assert (threshold, method) == (991.0, "conformal")


def test_calibration_needs_two_errors():
    with pytest.raises(UserError, match="preprocess more images"):
        calibration.threshold_at_fpr(np.array([0.1], np.float32), 0.01)


def test_build_calibration_tables():
    rng = np.random.default_rng(1)
    errors = rng.random(500).astype(np.float32)
    latents = rng.normal(size=(500, 3)).astype(np.float32)
    cal = calibration.build_calibration(errors, latents, 0.05)
    assert len(cal.error_percentiles) == 101
    assert cal.error_percentiles[0] == pytest.approx(errors.min()) and cal.error_percentiles[-1] == pytest.approx(
        errors.max()
    )
    assert cal.examples == 500 and cal.fpr == 0.05
    assert cal.flagged_fraction == pytest.approx(np.mean(errors > np.float32(cal.threshold)))
    np.testing.assert_allclose(cal.latent_mean, latents.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np.array(cal.latent_quantiles)[:, 4], np.median(latents, axis=0), rtol=1e-5)


def test_training_stores_the_calibration_and_the_export_serves_it(trained, preprocessed):
    cfg, result = trained
    info = ModelInfo.read(cfg.model_dir)
    cal = info.calibration
    assert cal is not None and cal.fpr == cfg.anomaly_fpr == 0.01
    assert cal.examples == preprocessed.counts["eval_records"]
    assert cal.method == "lognormal"  # a handful of eval images: too few for the order statistic at 1%
    assert cal.threshold > max(cal.error_percentiles)  # the 99% tail lies beyond the few errors seen
    assert cal.error == "blurred_mse"
    assert info.outputs[-3:] == ("anomaly_error", "anomaly_score", "is_anomaly")

    images = [encode_png(known_pixels(c, i)) for c in range(3) for i in range(8)]
    out = serve(result.saved_model, images)
    error, score = out["anomaly_error"], out["anomaly_score"]
    assert np.all(error < out["reconstruction_error"])  # the blur (weights summing to 1) averages differences out
    table = np.array(cal.error_percentiles, np.float32)
    np.testing.assert_allclose(score, np.interp(error, table, np.linspace(0, 1, 101)), atol=1e-5)
    order = np.argsort(error)
    assert np.all(np.diff(score[order]) >= 0)
    assert score.min() >= 0 and score.max() <= 1
    np.testing.assert_array_equal(out["is_anomaly"], error > np.float32(cal.threshold))


def _blurred_mse(reconstruction: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """The scored error recomputed with numpy: a [1, 2, 1] / 4 blur per axis, zero padding, then MSE."""
    kernel = np.array([0.25, 0.5, 0.25])
    diff = np.pad(reconstruction.astype(np.float64) - pixels, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = sum(w * diff[:, i : i + diff.shape[1] - 2] for i, w in enumerate(kernel))
    blurred = sum(w * rows[:, :, i : i + rows.shape[2] - 2] for i, w in enumerate(kernel))
    return np.mean(np.square(blurred), axis=(1, 2, 3))


def test_anomaly_error_forgives_a_shifted_stroke_more_than_a_missing_one():
    image = np.zeros((1, 12, 12, 2), np.float32)
    image[0, 2:10, 5, :] = 1.0  # a vertical stroke in both channels
    shifted = np.roll(image, 1, axis=2)
    missing = np.zeros_like(image)
    # The plain MSE calls the stroke moved by one pixel twice as wrong as the stroke missing ...
    mse_shift = calibration.per_image_error(image, shifted).numpy()
    np.testing.assert_allclose(mse_shift, 2 * calibration.per_image_error(image, missing).numpy())
    # ... the blurred one calls it less wrong.
    blurred_shift = calibration.anomaly_error(image, shifted).numpy()
    blurred_missing = calibration.anomaly_error(image, missing).numpy()
    assert blurred_shift < 0.75 * blurred_missing
    np.testing.assert_allclose(blurred_shift, _blurred_mse(image, shifted), rtol=1e-5)


def test_percentile_rank_is_linear_between_points_and_flat_outside():
    from models.export import percentile_rank

    table = np.concatenate([np.linspace(0.0, 1.0, 50), np.full(2, 1.0), np.linspace(1.0, 2.0, 49)]).astype(np.float32)
    values = np.array([-1.0, 0.0, table[10] / 2 + table[11] / 2, 1.0, 1.5, 2.0, 3.0], np.float32)
    ranks = percentile_rank(values, table).numpy()
    np.testing.assert_allclose(ranks[[0, 1, 5, 6]], [0.0, 0.0, 1.0, 1.0])
    assert ranks[2] == pytest.approx(0.105)
    assert ranks[3] == pytest.approx(0.52)  # at the top of the tie (points 49..52 all hold 1.0)
    assert ranks[4] == pytest.approx(np.interp(1.5, table, np.linspace(0, 1, 101)), abs=1e-5)
