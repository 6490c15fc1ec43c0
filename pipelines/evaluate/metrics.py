"""Evaluation of an exported autoencoder: the numbers and the arrays behind the report's figures.

Input: an :class:`~pipelines.evaluate.exported.ExportedModel` with its model card, the evaluated
:class:`~pipelines.evaluate.data.Examples` and an optional reference set (the train split: it sets
the anomaly threshold and fits the baselines). Output: an :class:`~pipelines.evaluate.results.Evaluation`,
whose metrics also hold the few-label probe (``probe``), the restoration scores of a model trained
with a corruption (``restoration``) and the verdicts (``verdicts``).
The stored anomaly threshold and the figures with anomaly labels are ``anomaly``'s.

One definition of error throughout (``scores``): the per-image mean squared error between the
model's output and the [0, 1] target pixels; PSNR is ``10 log10(1 / MSE)``. The PCA baseline
keeps as many components as the code has dimensions and is fitted on the same reference images.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
from scipy.stats import norm
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from models.model_info import ANOMALY_ERROR, ANOMALY_SCORE, IS_ANOMALY
from pipelines.evaluate import anomaly
from pipelines.evaluate.card import ModelCard
from pipelines.evaluate.data import Examples
from pipelines.evaluate.exported import ExportedModel
from pipelines.evaluate.probe import few_label_probe, logistic_regression
from pipelines.evaluate.restoration import restore
from pipelines.evaluate.results import AnomalyOutputs, Evaluation, Interpolation, LatentWalk
from pipelines.evaluate.scores import per_image_mse, psnr
from pipelines.evaluate.verdicts import judge
from transforms.errors import UserError

log = logging.getLogger(__name__)

UNLABELLED = "(no label)"
INTERPOLATION_PAIRS = 4
INTERPOLATION_STEPS = 9
WALK_SIZE = 12  # the 2-D latent walk decodes WALK_SIZE x WALK_SIZE codes
PRIOR_SAMPLES = 64
MAX_PROJECTED = 2000  # t-SNE is quadratic-ish: project at most this many codes
MAX_CV_FOLDS = 5


# The scikit-learn problems here are small; OpenMP/BLAS thread pools next to TensorFlow's on a busy
# machine spin against each other (t-SNE of 500 codes: 57 s with 2 threads, 8 s with 1, on 2 shared cores).
@threadpool_limits.wrap(limits=1)
def evaluate(
    model: ExportedModel,
    card: ModelCard,
    examples: Examples,
    reference: Examples | None,
    percentile: float,
    seed: int,
    source: str,
    normal_labels: tuple[str, ...] | None = None,
) -> Evaluation:
    """Runs the model over ``examples`` (and ``reference``) and computes every metric and figure input.

    Args:
      model: the exported model.
      card: its model card (``card.read_card``): the ``model`` section, and the history the verdicts read.
      examples: the images evaluated.
      reference: images that set the threshold and fit the baselines (the train split), or None to
        use ``examples`` themselves (classifiers are then cross-validated).
      percentile: the anomaly threshold is this percentile of the reference errors.
      seed: for pairs, prior samples, noise and t-SNE.
      source: where ``examples`` came from (shown in the report).
      normal_labels: images with these labels are normal, with others anomalies (see ``anomaly``).

    Raises:
      UserError: ``normal_labels`` given to a model without calibration, or naming no evaluated label.
    """
    rng = np.random.default_rng(seed)
    outputs = model.serve(examples.images)
    latent, reconstructions = outputs["latent"], outputs["reconstruction"]
    errors = per_image_mse(examples.pixels, reconstructions)
    if reference is None:
        ref, ref_name, ref_latent, ref_errors = examples, "the evaluated images", latent, errors
    else:
        ref_outputs = model.serve(reference.images)
        ref, ref_name, ref_latent = reference, "the train split", ref_outputs["latent"]
        ref_errors = per_image_mse(reference.pixels, ref_outputs["reconstruction"])
    threshold = float(np.percentile(ref_errors, percentile))
    pca_mse, pca_codes, ref_pca_codes, components = pca_baseline(ref.pixels, examples.pixels, model.latent_dim)
    calibration, roc = model.info.calibration, None
    # The error the calibration scores; exports calibrated on the plain MSE do not return it apart.
    scored_errors = outputs.get(ANOMALY_ERROR, errors)
    anomaly_metrics = {
        "percentile": percentile,
        "threshold": threshold,
        "flagged": int(np.sum(errors > threshold)),
        "flagged_fraction": float(np.mean(errors > threshold)),
    }
    if calibration is not None:
        anomaly_metrics["stored"] = anomaly.stored_threshold(calibration, outputs[IS_ANOMALY])
    if normal_labels:
        if calibration is None:
            raise UserError(
                "--normal-labels needs the model's anomaly calibration, which its model_info.json lacks "
                "(exported before calibration existed); train the model again"
            )
        labelled, roc = anomaly.labelled_metrics(
            examples.labels, scored_errors, outputs[IS_ANOMALY], normal_labels, source
        )
        anomaly_metrics["labelled"] = labelled

    metrics = {
        "model": card.fields,
        "data": {
            "source": source,
            "evaluated": len(examples),
            "reference": len(ref),
            "reference_is": ref_name,
            "labels": len({label for label in examples.labels if label}),
        },
        "reconstruction": _error_summary(errors),
        "anomaly": anomaly_metrics,
        "per_label": per_label_errors(examples.labels, errors),
        "pca": {"components": components} | _error_summary(pca_mse),
        "classification": classification(
            {"autoencoder": (ref_latent, latent), "pca": (ref_pca_codes, pca_codes)},
            ref.labels,
            examples.labels,
            cross_validate=reference is None,
            seed=seed,
        ),
    }
    metrics["probe"] = (
        few_label_probe(
            {"codes": ref_latent, "pixels": ref.pixels},
            ref.labels,
            {"codes": latent, "pixels": examples.pixels},
            examples.labels,
            seed,
        )
        if reference is not None
        else {"skipped": "the probe needs a train split: evaluate a preprocess output with --data"}
    )
    restoration = restore(model, examples, seed) if model.corruption is not None else None
    if restoration is not None:
        metrics["restoration"] = {
            "corruption": restoration.corruption,
            "baseline": restoration.baseline,
            "psnr_corrupted": float(np.mean(restoration.psnr_corrupted)),
            "psnr_restored": float(np.mean(restoration.psnr_restored)),
        }
        if restoration.psnr_baseline is not None:
            metrics["restoration"]["psnr_baseline"] = float(np.mean(restoration.psnr_baseline))
    metrics["verdicts"] = judge(metrics, examples.pixels, reconstructions, card.history)
    projected = np.sort(rng.choice(len(examples), min(len(examples), MAX_PROJECTED), replace=False))
    return Evaluation(
        metrics=metrics,
        examples=examples,
        reconstructions=reconstructions,
        errors=errors,
        reference_errors=None if reference is None else ref_errors,
        threshold=threshold,
        projected=projected,
        projections=project_codes(latent[projected], seed),
        interpolations=interpolate(model, examples, errors, rng),
        latent_walk=latent_walk(model, latent) if model.latent_dim == 2 else None,
        prior_samples=(
            model.decode(rng.standard_normal((PRIOR_SAMPLES, model.latent_dim)).astype(np.float32))
            if model.variational
            else None
        ),
        restoration=restoration,
        history=card.history,
        anomaly=(
            None
            if calibration is None
            else AnomalyOutputs(outputs[ANOMALY_SCORE], scored_errors, np.asarray(outputs[IS_ANOMALY], bool))
        ),
        roc=roc,
    )


def _error_summary(errors: np.ndarray) -> dict[str, float]:
    return {
        "mse_mean": float(np.mean(errors)),
        "mse_median": float(np.median(errors)),
        "psnr_mean": float(np.mean(psnr(errors))),
    }


def per_label_errors(labels: list[str], errors: np.ndarray) -> dict[str, dict]:
    """``{label: {"examples": n, "mse_mean": m}}``, sorted by label; unlabelled images under ``UNLABELLED``."""
    names = np.array([label or UNLABELLED for label in labels])
    return {
        name: {"examples": int(np.sum(names == name)), "mse_mean": float(np.mean(errors[names == name]))}
        for name in sorted(set(names.tolist()))
    }


def pca_baseline(
    reference_pixels: np.ndarray, pixels: np.ndarray, latent_dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """PCA with ``latent_dim`` components (fewer if the reference is smaller) fitted on the reference.

    Returns:
      (per-image MSE of the PCA reconstructions of ``pixels`` clipped to [0, 1], their PCA codes,
      the reference's PCA codes, the number of components).
    """
    flat_reference = reference_pixels.reshape(len(reference_pixels), -1)
    components = min(latent_dim, *flat_reference.shape)
    pca = PCA(n_components=components).fit(flat_reference)
    codes = pca.transform(pixels.reshape(len(pixels), -1))
    reconstructed = np.clip(pca.inverse_transform(codes), 0.0, 1.0).reshape(pixels.shape)
    return per_image_mse(pixels, reconstructed), codes, pca.transform(flat_reference), components


def classification(
    codes: dict[str, tuple[np.ndarray, np.ndarray]],
    reference_labels: list[str],
    labels: list[str],
    cross_validate: bool,
    seed: int,
) -> dict:
    """k-NN and logistic-regression accuracy of predicting labels from each set of codes.

    Args:
      codes: name -> (reference codes, evaluated codes).
      reference_labels, labels: the labels of both sets (``""`` unknown: left out).
      cross_validate: score by stratified k-fold on the evaluated codes (no separate reference);
        otherwise fit on the reference and score on the evaluated codes.

    Returns:
      ``{"protocol": ..., "knn": {name: accuracy}, "logistic_regression": {name: accuracy}}``, or
      ``{"skipped": reason}`` when the labels do not allow it.
    """
    fit_labels = np.array(labels if cross_validate else reference_labels)
    test_labels = np.array(labels)
    fit_known, test_known = fit_labels != "", test_labels != ""
    classes, counts = np.unique(fit_labels[fit_known], return_counts=True)
    if len(classes) < 2:
        return {"skipped": "fewer than two labels among the images"}
    if cross_validate and counts.min() < 2:
        return {"skipped": f"label {classes[counts.argmin()]!r} has a single image; cross-validation needs two"}
    folds = min(MAX_CV_FOLDS, int(counts.min()))
    # k-NN needs at least k training examples; a cross-validation fold trains on (folds - 1) / folds.
    fit_size = int(fit_known.sum() * (folds - 1) / folds) if cross_validate else int(fit_known.sum())
    neighbours = min(5, fit_size)
    models = {
        "knn": lambda: KNeighborsClassifier(n_neighbors=neighbours),
        "logistic_regression": logistic_regression,
    }
    result = {
        "protocol": f"{folds}-fold cross-validation on the evaluated images"
        if cross_validate
        else "fitted on the train split, scored on the eval split",
        "neighbours": neighbours,
    }
    for model_name, make in models.items():
        result[model_name] = {}
        for name, (fit_codes, test_codes) in codes.items():
            if cross_validate:
                cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
                score = cross_val_score(make(), test_codes[test_known], test_labels[test_known], cv=cv).mean()
            else:
                fitted = make().fit(fit_codes[fit_known], fit_labels[fit_known])
                score = fitted.score(test_codes[test_known], test_labels[test_known])
            result[model_name][name] = float(score)
    return result


def project_codes(latent: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """2-D views of the codes: the codes themselves when ``latent_dim <= 2``, else PCA and (given at least
    five distinct codes) t-SNE."""
    if latent.shape[1] <= 2:
        return {"codes": np.pad(latent, ((0, 0), (0, 2 - latent.shape[1])))}
    views = {"PCA": PCA(n_components=2).fit_transform(latent)}
    # t-SNE needs a few distinct codes: on identical ones (a collapsed model) sklearn's Barnes-Hut crashes.
    if len(np.unique(latent, axis=0)) >= 5:
        log.info("t-SNE of %d codes", len(latent))
        perplexity = min(30.0, (len(latent) - 1) / 3)
        views["t-SNE"] = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            latent
        )
    return views


def interpolate(
    model: ExportedModel, examples: Examples, errors: np.ndarray, rng: np.random.Generator
) -> list[Interpolation]:
    """Decoded straight lines between codes of pairs of images.

    Pairs join consecutive labels, each end a typical image of its label (the median error among
    them: the best reconstructed are often atypically simple shapes); without two labels, random pairs.
    """
    labels = sorted({label for label in examples.labels if label})
    if len(labels) >= 2:
        typical = {}
        for label in labels:
            members = sorted((i for i, v in enumerate(examples.labels) if v == label), key=lambda i: errors[i])
            typical[label] = members[len(members) // 2]
        pairs = [(typical[a], typical[b]) for a, b in itertools.pairwise(labels)][:INTERPOLATION_PAIRS]
    else:
        count = min(INTERPOLATION_PAIRS, len(examples) // 2)
        chosen = rng.choice(len(examples), 2 * count, replace=False) if count else np.array([0, 0])
        pairs = list(zip(chosen[0::2].tolist(), chosen[1::2].tolist(), strict=True))
    alphas = np.linspace(0.0, 1.0, INTERPOLATION_STEPS, dtype=np.float32)
    ends = model.encode([examples.images[i] for pair in pairs for i in pair])
    lines = [(1 - alphas[:, None]) * ends[2 * k] + alphas[:, None] * ends[2 * k + 1] for k in range(len(pairs))]
    decoded = model.decode(np.concatenate(lines)).reshape(len(pairs), INTERPOLATION_STEPS, *examples.pixels.shape[1:])
    return [Interpolation(a, b, alphas, images) for (a, b), images in zip(pairs, decoded, strict=True)]


def latent_walk(model: ExportedModel, latent: np.ndarray) -> LatentWalk:
    """Decodes a grid over 2-D code space: the prior's 5-95% quantiles for VAEs, else the codes' 2-98% range."""
    if model.variational:
        xs = ys = norm.ppf(np.linspace(0.05, 0.95, WALK_SIZE))
    else:
        low, high = np.percentile(latent, [2, 98], axis=0)
        xs, ys = np.linspace(low[0], high[0], WALK_SIZE), np.linspace(low[1], high[1], WALK_SIZE)
    ys = ys[::-1]  # top row = largest second coordinate, as on a plot's y axis
    grid = np.array([(x, y) for y in ys for x in xs], dtype=np.float32)
    images = model.decode(grid)
    return LatentWalk(xs, ys, images.reshape(WALK_SIZE, WALK_SIZE, *images.shape[1:]))
