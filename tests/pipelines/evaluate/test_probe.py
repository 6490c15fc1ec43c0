"""The few-label probe against a recomputation with scikit-learn, on the same draws."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipelines.evaluate.probe import few_label_probe, probe_draws


def _data(n: int, seed: int):
    """Three classes: codes that separate them (3-D), pixels where the class is a faint shift in noise (6x6)."""
    rng = np.random.default_rng(seed)
    labels = [("a", "b", "c")[i % 3] for i in range(n)]
    index = np.array([i % 3 for i in range(n)])
    codes = np.eye(3)[index] * 4 + rng.normal(0, 1, (n, 3))
    pixels = rng.uniform(0, 1, (n, 6, 6, 1)) + 0.1 * index[:, None, None, None]
    return {"codes": codes, "pixels": pixels}, labels


def test_probe_figures_match_a_recomputation_with_scikit_learn():
    reference, reference_labels = _data(60, 0)
    evaluated, labels = _data(30, 1)
    labels[4] = ""  # unknown labels are never scored
    reference_labels[0] = ""  # ... nor drawn
    result = few_label_probe(reference, reference_labels, evaluated, labels, seed=3, sizes=(6, 20, 100), draws=3)
    assert result["sizes"] == [6, 20] and result["draws"] == 3
    assert result["left_out"] == {"100": "only 59 labelled train images"}
    draws = probe_draws(reference_labels, (6, 20, 100), 3, 3)
    assert sorted(draws) == [6, 20] and all(len(picks) == 3 for picks in draws.values())
    assert all(0 not in pick and len(set(pick.tolist())) == len(pick) for picks in draws.values() for pick in picks)
    known = np.array(labels) != ""
    for name in ("codes", "pixels"):
        fit_x = reference[name].reshape(60, -1)
        test_x, test_y = evaluated[name].reshape(30, -1)[known], np.array(labels)[known]
        for n, picks in draws.items():
            scores = []
            for pick in picks:
                scaler = StandardScaler().fit(fit_x[pick])
                classifier = LogisticRegression(max_iter=2000).fit(
                    scaler.transform(fit_x[pick]), np.array(reference_labels)[pick]
                )
                scores.append(np.mean(classifier.predict(scaler.transform(test_x)) == test_y))
            assert result[name][str(n)]["mean"] == pytest.approx(np.mean(scores), abs=1e-12)
            assert result[name][str(n)]["std"] == pytest.approx(np.std(scores), abs=1e-12)
    # The codes carry the class; the pixels barely do.
    assert result["codes"]["20"]["mean"] > 0.9 > result["pixels"]["20"]["mean"]


def test_draws_are_fixed_by_the_seed_and_hold_two_labels():
    labels = ["a"] * 50 + ["b"] * 2
    first, again = probe_draws(labels, (3,), 4, 7), probe_draws(labels, (3,), 4, 7)
    assert all(np.array_equal(a, b) for a, b in zip(first[3], again[3], strict=True))
    assert all({labels[i] for i in pick} == {"a", "b"} for pick in first[3])
    assert probe_draws(["a"] * 20, (5,), 2, 0) == {}  # a single label: no classifier can be fitted


def test_probe_is_skipped_with_a_reason():
    reference, reference_labels = _data(12, 0)
    evaluated, labels = _data(6, 1)
    assert few_label_probe(reference, reference_labels, evaluated, ["a"] * 6, 0, sizes=(5,)) == {
        "skipped": "fewer than two labels among the evaluated images"
    }
    assert few_label_probe(reference, reference_labels, evaluated, labels, 0, sizes=(50,)) == {
        "skipped": "fewer than 50 labelled reference images with two labels or more"
    }
