"""Evaluation numbers: error and PSNR definitions, the PCA baseline, the classifiers, the config."""

import numpy as np
import pytest

from pipelines.config import EvaluateConfig
from pipelines.evaluate.metrics import classification, pca_baseline, per_image_mse, per_label_errors, psnr


def test_error_and_psnr_definitions():
    targets = np.zeros((2, 4, 4, 1), np.float32)
    outputs = np.stack([np.full((4, 4, 1), 0.1), np.full((4, 4, 1), 0.5)]).astype(np.float32)
    np.testing.assert_allclose(per_image_mse(targets, outputs), [0.01, 0.25], rtol=1e-6)
    np.testing.assert_allclose(psnr(np.array([0.01, 1.0])), [20.0, 0.0], atol=1e-9)
    assert np.isfinite(psnr(np.array([0.0])))[0]


def test_per_label_errors_group_and_name_the_unlabelled():
    errors = np.array([1.0, 3.0, 5.0, 7.0])
    assert per_label_errors(["a", "a", "b", ""], errors) == {
        "(no label)": {"examples": 1, "mse_mean": 7.0},
        "a": {"examples": 2, "mse_mean": 2.0},
        "b": {"examples": 1, "mse_mean": 5.0},
    }


def test_pca_baseline_is_exact_for_data_within_its_components():
    rng = np.random.default_rng(0)
    basis = rng.uniform(0, 0.5, (2, 48))
    mix = lambda n: (rng.uniform(0, 1, (n, 2)) @ basis).reshape(n, 6, 8, 1)  # noqa: E731
    errors, codes, reference_codes, components = pca_baseline(mix(30), mix(5), latent_dim=3)
    assert components == 3 and codes.shape == (5, 3) and reference_codes.shape == (30, 3)
    assert errors.max() < 1e-12
    _, _, _, few = pca_baseline(mix(2), mix(5), latent_dim=3)
    assert few == 2  # never more components than reference images


def test_classification_on_separable_and_on_uninformative_codes():
    rng = np.random.default_rng(1)
    labels = ["a"] * 20 + ["b"] * 20
    separable = np.concatenate([rng.normal(-5, 1, (20, 3)), rng.normal(5, 1, (20, 3))])
    noise = rng.normal(0, 1, (40, 3))
    split = classification(
        {"good": (separable, separable), "noise": (noise, rng.normal(0, 1, (40, 3)))}, labels, labels, False, 0
    )
    assert split["protocol"] == "fitted on the train split, scored on the eval split"
    assert split["knn"]["good"] == 1.0 and split["logistic_regression"]["good"] == 1.0
    assert split["knn"]["noise"] < 0.8
    crossed = classification({"good": (separable, separable)}, labels, labels, True, 0)
    assert crossed["protocol"] == "5-fold cross-validation on the evaluated images"
    assert crossed["knn"]["good"] == 1.0


def test_classification_is_skipped_with_a_reason():
    codes = {"c": (np.zeros((4, 2)), np.zeros((4, 2)))}
    assert classification(codes, ["a"] * 4, ["a"] * 4, False, 0) == {
        "skipped": "fewer than two labels among the images"
    }
    assert "single image" in classification(codes, ["a", "a", "a", "b"], ["a", "a", "a", "b"], True, 0)["skipped"]


def test_config_needs_exactly_one_data_source():
    with pytest.raises(ValueError, match="exactly one of --data"):
        EvaluateConfig("m", "out")
    with pytest.raises(ValueError, match="exactly one of --data"):
        EvaluateConfig("m", "out", data="d", input="builtin:mnist")
    with pytest.raises(ValueError, match="threshold_percentile"):
        EvaluateConfig("m", "out", data="d", threshold_percentile=100)


def test_an_input_with_no_usable_image_fails_with_the_records_reasons(tmp_path):
    from pipelines.evaluate.data import read_images

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"")
    (tmp_path / "in" / "notes.txt").write_text("not read")
    cfg = EvaluateConfig("unused", str(tmp_path / "out"), input=str(tmp_path / "in"))
    with pytest.raises(ValueError, match=r"holds no usable image: a\.png: the file has zero bytes$"):
        read_images(cfg, model=None)
