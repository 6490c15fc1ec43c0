"""Drift of an infer run against the model's calibration: counted in Beam, judged when the run ends.

In (Beam): batch results (``model_handler.batch_result``) whose inference holds ``anomaly_score``,
``is_anomaly`` and/or ``latent``, one row per record (``serving_default`` of a calibrated model;
``encode`` gives ``latent`` only). :class:`CountDriftFn` outputs nothing: it bins each batch's rows
at once against the calibration (see
``models.model_info.Calibration``) and adds the bin counts to Beam counters (``drift_*``), so a run,
a watch window made of several batches, or a restarted window sums them like every other counter.
:func:`drift_counts` bins the same columns read back from Parquet (the streaming watch's windows,
whose counters a streaming runner does not split by window).

Out (driver): :func:`drift_report`, the manifest's ``drift`` section, from those counters:

- ``errors``: the two-sample Kolmogorov-Smirnov statistic ``ks_statistic`` between the run's errors
  and the calibration errors (its percentile table: the statistic is the largest gap between the
  run's share of ``anomaly_score`` below ``k/100`` and ``k/100``, at the table's 1% resolution), and its
  asymptotic ``ks_pvalue`` for ``examples`` and ``reference_examples`` images;
- ``latent``: the population stability index ``psi`` of each latent dimension over the
  calibration's deciles (10 bins, against the calibration's own share in each), ``psi_max`` and its
  ``psi_max_dim``;
- ``flagged``: the share ``fraction`` of images with ``is_anomaly``, the ``expected_fpr`` and the
  binomial ``pvalue`` of flagging that many or more at that rate;
- ``detected``: true when any rule in ``reasons`` fires (the limits are in ``rules``):
  ``errors``: ``ks_pvalue < 0.01`` and ``ks_statistic > 0.1``; ``latent``: ``psi_max`` above 0.25 and
  above the sampling noise of PSI for these sample sizes (``(1/n + 1/m)`` times the chi-square(9)
  quantile at 0.01 / latent_dim); ``flagged``: ``pvalue < 0.01`` and ``fraction > 2 x expected_fpr``.
"""

from __future__ import annotations

import math

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from models.calibration import latent_bins
from models.model_info import ANOMALY_SCORE, IS_ANOMALY, LATENT, Calibration
from pipelines.counters import NAMESPACE
from transforms.errors import DriftDetected

PREFIX = "drift_"
SCORED, FLAGGED, LATENTS = PREFIX + "scored", PREFIX + "flagged", PREFIX + "latents"
SCORE_BINS = 101  # [k/100, (k+1)/100) for k < 100, and exactly 1 (above the table)
LATENT_BINS = 10
KS_PVALUE, KS_STATISTIC = 0.01, 0.1
PSI_LIMIT, PSI_ALPHA = 0.25, 0.01
FLAGGED_PVALUE, FLAGGED_RATIO = 0.01, 2.0
_EPSILON = 1e-4  # the share PSI gives an empty bin


def score_counter(k: int) -> str:
    return f"{PREFIX}score_bin_{k:03d}"


def latent_counter(dim: int, b: int) -> str:
    return f"{PREFIX}latent_{dim:03d}_bin_{b}"


def drift_counts(calibration: Calibration, scores=(), flagged=(), latents=None) -> dict[str, int]:
    """The ``drift_*`` counts of some results: their ``anomaly_score`` ``(n,)`` and ``is_anomaly``
    ``(n,)`` (empty without them), and their ``latent`` ``(m, latent_dim)`` (None without them).
    Counts of several sets of results add up (``manifest.add_counts``)."""
    scores = np.asarray(scores, np.float64)
    bins = np.bincount(np.minimum((scores * 100).astype(np.int64), SCORE_BINS - 1), minlength=SCORE_BINS)
    counts = {SCORED: len(scores), FLAGGED: int(np.sum(np.asarray(flagged, bool)))}
    counts.update({score_counter(k): int(n) for k, n in enumerate(bins)})
    if latents is not None and len(latents):
        edges = np.array(calibration.latent_quantiles, np.float64)  # (latent_dim, 9)
        binned = latent_bins(np.asarray(latents), edges)
        counts[LATENTS] = len(binned)
        for dim in range(len(edges)):
            row = np.bincount(binned[:, dim], minlength=LATENT_BINS)
            counts.update({latent_counter(dim, b): int(n) for b, n in enumerate(row)})
    return {name: n for name, n in counts.items() if n}


class CountDriftFn(beam.DoFn):
    """Batch result -> nothing; adds its rows' drift bins (:func:`drift_counts`) to the ``drift_*``
    counters (per bundle)."""

    def __init__(self, calibration: Calibration):
        self._calibration = calibration

    def start_bundle(self):
        self._scores, self._flagged, self._latents = [], [], []

    def process(self, result):
        inference = result.inference
        if ANOMALY_SCORE in inference:
            self._scores.append(np.asarray(inference[ANOMALY_SCORE], np.float64).reshape(-1))
            self._flagged.append(np.asarray(inference[IS_ANOMALY], bool).reshape(-1))
        if LATENT in inference:
            latents = np.asarray(inference[LATENT])
            self._latents.append(latents.reshape(len(latents), -1))
        return ()

    def finish_bundle(self):
        scores = np.concatenate(self._scores) if self._scores else ()
        flagged = np.concatenate(self._flagged) if self._flagged else ()
        latents = np.concatenate(self._latents) if self._latents else None
        for name, n in drift_counts(self._calibration, scores, flagged, latents).items():
            Metrics.counter(NAMESPACE, name).inc(n)


def without_drift_counters(counts: dict[str, int]) -> dict[str, int]:
    """``counts`` without the ``drift_*`` bins (for logs)."""
    return {name: n for name, n in counts.items() if not name.startswith(PREFIX)}


def drift_report(counts: dict[str, int], calibration: Calibration | None) -> dict:
    """The manifest's ``drift`` section (see the module docstring) from a run's counters."""
    if calibration is None:
        return {"detected": False, "reasons": [], "skipped": "the model has no calibration; train it again"}
    m = calibration.examples
    report: dict = {"reference_examples": m, "detected": False, "reasons": []}
    scored = counts.get(SCORED, 0)
    if scored:
        report["errors"] = _errors(counts, scored, m)
        report["flagged"] = _flagged(counts.get(FLAGGED, 0), scored, calibration)
    rows = counts.get(LATENTS, 0)
    if rows:
        report["latent"] = _latent(counts, rows, calibration)
    report["examples"] = max(scored, rows)
    report["rules"] = {
        "errors": f"ks_pvalue < {KS_PVALUE} and ks_statistic > {KS_STATISTIC}",
        "latent": f"psi_max > psi_limit = max({PSI_LIMIT}, sampling noise at {PSI_ALPHA} / latent_dim)",
        "flagged": f"pvalue < {FLAGGED_PVALUE} and fraction > {FLAGGED_RATIO} x expected_fpr",
    }
    report["reasons"] = [name for name in ("errors", "latent", "flagged") if report.get(name, {}).get("drift")]
    report["detected"] = bool(report["reasons"])
    return report


def check(report: dict, target: str) -> None:
    """Raises :class:`DriftDetected` when ``report`` (a published output's ``drift``) detected drift.

    Raises:
      DriftDetected: naming the output, the rules that fired and their figures.
    """
    if not report.get("detected"):
        return
    figures = {
        "errors": lambda r: f"KS {r['ks_statistic']:.3f}, p {r['ks_pvalue']:.2g}",
        "latent": lambda r: f"PSI max {r['psi_max']:.3f} (dimension {r['psi_max_dim']}, limit {r['psi_limit']:.3f})",
        "flagged": lambda r: f"{r['fraction']:.1%} flagged against an expected {r['expected_fpr']:.1%}",
    }
    found = "; ".join(f"{name}: {figures[name](report[name])}" for name in report["reasons"])
    raise DriftDetected(
        f"drift detected in {target} (published; see the drift section of its _manifest.json): {found}. "
        "Check the input, or retrain the model on the new data"
    )


def _errors(counts: dict[str, int], n: int, m: int) -> dict:
    # scipy is needed only when the run ends, so it is imported here, not at start-up.
    from scipy import special

    bins = np.array([counts.get(score_counter(k), 0) for k in range(SCORE_BINS)], np.float64)
    below = np.concatenate([[0.0], np.cumsum(bins)[:-1]]) / n  # share of scores < k/100, k = 0..100
    statistic = float(np.max(np.abs(below - np.arange(SCORE_BINS) / 100)))
    pvalue = float(special.kolmogorov(math.sqrt(n * m / (n + m)) * statistic))
    return {
        "ks_statistic": statistic,
        "ks_pvalue": pvalue,
        "examples": n,
        "drift": pvalue < KS_PVALUE and statistic > KS_STATISTIC,
    }


def _flagged(flagged: int, n: int, calibration: Calibration) -> dict:
    from scipy import stats  # see _errors

    fraction = flagged / n
    pvalue = float(stats.binom.sf(flagged - 1, n, calibration.fpr))
    return {
        "count": flagged,
        "fraction": fraction,
        "expected_fpr": calibration.fpr,
        "calibration_fraction": calibration.flagged_fraction,
        "pvalue": pvalue,
        "drift": pvalue < FLAGGED_PVALUE and fraction > FLAGGED_RATIO * calibration.fpr,
    }


def _latent(counts: dict[str, int], n: int, calibration: Calibration) -> dict:
    from scipy import stats  # see _errors

    m = calibration.examples
    psi = []
    for dim, shares in enumerate(calibration.latent_bin_shares):
        expected = np.asarray(shares)
        actual = np.array([counts.get(latent_counter(dim, b), 0) for b in range(LATENT_BINS)], np.float64) / n
        a, e = np.maximum(actual, _EPSILON), np.maximum(expected, _EPSILON)
        psi.append(float(np.sum((a - e) * np.log(a / e))))
    dims = len(psi)
    noise = (1 / n + 1 / m) * float(stats.chi2.ppf(1 - PSI_ALPHA / dims, LATENT_BINS - 1))
    limit = max(PSI_LIMIT, noise)
    worst = int(np.argmax(psi))
    return {
        "psi": [round(v, 6) for v in psi],
        "psi_max": psi[worst],
        "psi_max_dim": worst,
        "psi_limit": limit,
        "drift": psi[worst] > limit,
    }
