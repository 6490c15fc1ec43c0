"""Anomaly detection figures of an evaluation: the stored threshold at work, and, with labels, how well it separates.

In: the evaluated images' labels, their scored errors (the export's ``anomaly_error``) and its
``is_anomaly`` (``serving_default`` of a calibrated model), the model's calibration, and
``normal_labels`` (``--normal-labels``: images with these labels are normal, images with other
labels anomalies, unlabelled images left out). Out: the ``anomaly`` metrics (``stored``: the
calibration's threshold, FPR and method, and the share flagged; ``labelled``: AUROC and AUPR of the
error, which ``anomaly_score`` ranks in the same order without its ties beyond the calibration
table, precision, recall and F1 of ``is_anomaly``, and its FPR on the normal images) and the ROC
curve the report draws. Computed with scikit-learn.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score, roc_curve

from models.model_info import Calibration
from transforms.errors import UserError


def stored_threshold(calibration: Calibration, flagged: np.ndarray) -> dict:
    """The calibration's threshold and how many evaluated images ``is_anomaly`` flags."""
    return {
        "threshold": calibration.threshold,
        "fpr": calibration.fpr,
        "method": calibration.method,
        "calibration_examples": calibration.examples,
        "flagged": int(np.sum(flagged)),
        "flagged_fraction": float(np.mean(flagged)),
    }


def labelled_metrics(
    labels: list[str], errors: np.ndarray, flagged: np.ndarray, normal_labels: tuple[str, ...], source: str
) -> tuple[dict, dict[str, np.ndarray] | None]:
    """AUROC, AUPR, F1 at the stored threshold and FPR on normal images; and the ROC curve.

    Returns:
      (metrics, ``{"fpr", "tpr"}`` arrays or None when one class is missing: then the metrics say why).

    Raises:
      UserError: no evaluated image has one of ``normal_labels`` (names the labels there are).
    """
    names = np.array(labels)
    known = names != ""
    normal_set = {label.strip() for label in normal_labels}
    normal = np.isin(names, list(normal_set)) & known
    if not normal.any():
        seen = ", ".join(sorted(set(names[known].tolist()))) or "none"
        raise UserError(
            f"--normal-labels {','.join(normal_labels)}: no evaluated image of {source} has one of these labels "
            f"(labels there: {seen}); pass labels the images have"
        )
    anomalous = known & ~normal
    metrics = {
        "normal_labels": sorted(normal_set),
        "normal": int(normal.sum()),
        "anomalous": int(anomalous.sum()),
        "unlabelled": int((~known).sum()),
        "fpr": float(np.mean(flagged[normal])),
    }
    if not anomalous.any():
        return {**metrics, "skipped": "every labelled image is normal: AUROC, AUPR and F1 need anomalies too"}, None
    truth, scores, predicted = anomalous[known], errors[known], flagged[known]
    fpr, tpr, _ = roc_curve(truth, scores)
    metrics.update(
        {
            "auroc": float(roc_auc_score(truth, scores)),
            "aupr": float(average_precision_score(truth, scores)),
            "f1": float(f1_score(truth, predicted, zero_division=0.0)),
            "precision": float(precision_score(truth, predicted, zero_division=0.0)),
            "recall": float(recall_score(truth, predicted, zero_division=0.0)),
        }
    )
    return metrics, {"fpr": fpr, "tpr": tpr}
