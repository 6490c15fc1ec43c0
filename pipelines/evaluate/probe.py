"""The few-label probe (Géron's exercise): how well a classifier learns from few labels on the codes and on raw pixels.

Input: the reference (train split) codes, pixels and labels, and the evaluated (eval split) ones.
For each number of labels ``n`` in ``sizes`` and each of ``draws`` draws, ``n`` labelled reference
images are picked at random (:func:`probe_draws`, fixed by the seed); a logistic regression on
standardized features is fitted on their codes and another on their raw pixels, and both are
scored on every labelled evaluated image. Output (the ``probe`` section of ``metrics.json``):
``{"protocol", "draws", "sizes": [n...], "left_out": {n: reason}, "codes": {n: {"mean", "std"}},
"pixels": {n: {"mean", "std"}}}`` (keys of ``n`` as strings), or ``{"skipped": reason}``.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

SIZES = (10, 100, 1000)
DRAWS = 5
_MAX_TRIES = 100  # redraws of a small sample that holds a single label


def probe_draws(labels: list[str], sizes: tuple[int, ...], draws: int, seed: int) -> dict[int, list[np.ndarray]]:
    """The labelled images each fit uses: ``{n: [indices into labels] * draws}``.

    Sizes larger than the number of labelled images are left out; a draw holding a single label is
    drawn again (a classifier needs two), and a size whose draws keep holding one label is left out.
    """
    labelled = np.flatnonzero(np.array(labels) != "")
    chosen = {}
    for n in sizes:
        if n > len(labelled):
            continue
        rng = np.random.default_rng([seed, n])
        picks = []
        for _ in range(draws):
            for _ in range(_MAX_TRIES):
                pick = np.sort(rng.choice(labelled, n, replace=False))
                if len({labels[i] for i in pick}) >= 2:
                    picks.append(pick)
                    break
        if len(picks) == draws:
            chosen[n] = picks
    return chosen


def logistic_regression() -> Pipeline:
    """The report's linear classifier (here and in ``metrics.classification``): logistic regression on
    standardized features."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def fit_and_score(fit_x: np.ndarray, fit_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Accuracy on ``test`` of :func:`logistic_regression` fitted on ``fit``."""
    return float(logistic_regression().fit(fit_x, fit_y).score(test_x, test_y))


def few_label_probe(
    reference: dict[str, np.ndarray],
    reference_labels: list[str],
    evaluated: dict[str, np.ndarray],
    labels: list[str],
    seed: int,
    sizes: tuple[int, ...] = SIZES,
    draws: int = DRAWS,
) -> dict:
    """Runs the probe (see the module docstring).

    Args:
      reference, evaluated: feature name (``codes``, ``pixels``) -> ``(N, ...)`` features, flattened here.
      reference_labels, labels: their labels (``""`` unknown: never drawn, never scored).
    """
    test_known = np.array(labels) != ""
    test_y = np.array(labels)[test_known]
    if len(set(test_y.tolist())) < 2:
        return {"skipped": "fewer than two labels among the evaluated images"}
    chosen = probe_draws(reference_labels, sizes, draws, seed)
    if not chosen:
        return {"skipped": f"fewer than {min(sizes)} labelled reference images with two labels or more"}
    fit_y = np.array(reference_labels)
    result = {
        "protocol": "logistic regression on standardized features, fitted on n labelled train images drawn at "
        "random, scored on the eval split",
        "draws": draws,
        "sizes": sorted(chosen),
        "left_out": {
            str(n): f"only {int(np.sum(fit_y != ''))} labelled train images" for n in sizes if n not in chosen
        },
    }
    for name in evaluated:
        fit_x = reference[name].reshape(len(reference[name]), -1)
        test_x = evaluated[name].reshape(len(evaluated[name]), -1)[test_known]
        result[name] = {}
        for n, picks in sorted(chosen.items()):
            scores = [fit_and_score(fit_x[pick], fit_y[pick], test_x, test_y) for pick in picks]
            result[name][str(n)] = {"mean": float(np.mean(scores)), "std": float(np.std(scores))}
    return result
