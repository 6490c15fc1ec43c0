"""What an evaluation produced: the metrics and the arrays behind the report's figures (dataclasses).

:class:`Evaluation` is made by ``metrics.evaluate``; its ``metrics`` dict is written as
``metrics.json`` and its arrays are drawn by ``figures``. :class:`EvaluateResult` is what
``job.run_evaluate`` returns.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipelines.evaluate.data import Examples


@dataclasses.dataclass(frozen=True)
class Interpolation:
    """``images[i] = decode((1 - alphas[i]) * encode(start) + alphas[i] * encode(end))``."""

    start: int
    end: int
    alphas: np.ndarray
    images: np.ndarray


@dataclasses.dataclass(frozen=True)
class LatentWalk:
    """Decoded images over a 2-D grid of codes: ``images[row, col]`` decodes ``(xs[col], ys[row])``."""

    xs: np.ndarray
    ys: np.ndarray
    images: np.ndarray


@dataclasses.dataclass(frozen=True)
class Restoration:
    """Per image: the corrupted input (as the model saw it), the classical baseline's guess, the model's
    restored output and the clean target, each ``(N, H, W, C)``, with the PSNR ``(N,)`` of each against the
    target. ``baseline`` names the baseline; it and its arrays are None for a corruption without one."""

    corruption: str
    baseline: str | None
    target: np.ndarray
    corrupted: np.ndarray
    guessed: np.ndarray | None
    restored: np.ndarray
    psnr_corrupted: np.ndarray
    psnr_baseline: np.ndarray | None
    psnr_restored: np.ndarray


@dataclasses.dataclass(frozen=True)
class AnomalyOutputs:
    """What a calibrated export returned for each evaluated image: ``anomaly_score``, the error it ranks
    (``anomaly_error``, or the plain MSE for exports calibrated on it) and ``is_anomaly``."""

    scores: np.ndarray
    errors: np.ndarray
    flagged: np.ndarray


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The metrics (``metrics.json``) and everything the figures draw."""

    metrics: dict
    examples: Examples
    reconstructions: np.ndarray
    errors: np.ndarray
    reference_errors: np.ndarray | None  # None when the evaluated images are their own reference
    threshold: float
    projected: np.ndarray  # indices into ``examples`` of the projected codes
    projections: dict[str, np.ndarray]  # name -> (len(projected), 2)
    interpolations: list[Interpolation]
    latent_walk: LatentWalk | None
    prior_samples: np.ndarray | None
    restoration: Restoration | None  # models trained with a corruption
    history: dict[str, list[float]] | None  # training.json's per-epoch losses, None when not recorded
    anomaly: AnomalyOutputs | None = None  # a calibrated model's anomaly outputs
    roc: dict[str, np.ndarray] | None = None  # "fpr", "tpr" with --normal-labels


@dataclasses.dataclass(frozen=True)
class EvaluateResult:
    """Where the report went, and its metrics."""

    output: str
    index_html: str
    metrics: dict

    def summary(self) -> str:
        """One line of headline numbers, then one line per bad verdict."""
        m = self.metrics
        knn = m["classification"].get("knn", {}).get("autoencoder")
        auroc = m["anomaly"].get("labelled", {}).get("auroc")
        return (
            f"reconstruction MSE {m['reconstruction']['mse_mean']:.5f} (PCA {m['pca']['mse_mean']:.5f}), "
            f"anomaly threshold {m['anomaly']['threshold']:.5f}"
            + (f", k-NN accuracy on codes {knn:.3f}" if knn is not None else "")
            + (f", anomaly AUROC {auroc:.3f}" if auroc is not None else "")
            + f" -> {self.index_html}"
            + "".join(f"\n  {name}: {v['says']}" for name, v in m["verdicts"].items() if not v["ok"])
        )
