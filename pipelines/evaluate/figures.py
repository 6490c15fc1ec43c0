"""The report's figures: matplotlib (Agg canvas, no pyplot state) drawn from an ``Evaluation``.

Input: a ``results.Evaluation``. Output: PNG files in the report folder and, for the
page, one :class:`Figure` per file (name, title, caption), in reading order. Images are shown as
the model sees them: [0, 1] pixels, grey for one channel, nearest-neighbour so pixels stay sharp.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure

if TYPE_CHECKING:
    from pipelines.evaluate.results import Evaluation, LatentWalk, Restoration

DPI = 100
SHOWN = 8  # images per row of the example grids
_CELL = 1.0  # inches per image in the example grids
_UNLABELLED_COLOUR = "#9e9e9e"


@dataclasses.dataclass(frozen=True)
class Figure:
    """One PNG of the report: its file name (relative to the report), title and caption."""

    file: str
    title: str
    caption: str


def write_figures(evaluation: Evaluation, output: str) -> list[Figure]:
    """Draws every figure that applies to the model and writes them under ``output``."""
    drawn = []
    if evaluation.history:
        drawn.append(_save(loss_curves(evaluation.history), output, "loss.png"))
    drawn += [
        _save(reconstructions(evaluation), output, "reconstructions.png"),
        _save(latent_space(evaluation), output, "latent.png"),
    ]
    if evaluation.latent_walk is not None:
        drawn.append(_save(latent_walk(evaluation.latent_walk), output, "latent_walk.png"))
    drawn.append(_save(interpolations(evaluation), output, "interpolation.png"))
    if evaluation.prior_samples is not None:
        drawn.append(_save(prior_samples(evaluation.prior_samples), output, "prior_samples.png"))
    if evaluation.restoration is not None:
        drawn.append(_save(restoration(evaluation.restoration), output, "restoration.png"))
    drawn.append(_save(errors(evaluation), output, "errors.png"))
    if evaluation.metrics["probe"].get("sizes"):
        drawn.append(_save(probe(evaluation.metrics["probe"]), output, "probe.png"))
    if evaluation.anomaly is not None:
        drawn.append(_save(anomalous(evaluation), output, "anomalies.png"))
    if evaluation.roc is not None:
        drawn.append(_save(roc_curve(evaluation), output, "roc.png"))
    titles = {
        "loss.png": (
            "Training",
            "The loss per epoch on the train split (averaged over the epoch's steps) and on the eval split "
            "(after the epoch), from training.json. A curve still going down at the last epoch means more "
            "epochs would help; an eval loss rising while the train loss falls means overfitting.",
        ),
        "reconstructions.png": (
            "Originals and reconstructions",
            "Best, typical (around the median) and worst reconstructed images of the evaluated set: each "
            "original above its reconstruction, with its label and mean squared error.",
        ),
        "latent.png": (
            "The latent space",
            "Each image's code, coloured by label. Codes with more than two dimensions are projected to 2-D "
            "with PCA (linear, distances along the main axes) and t-SNE (neighbourhoods kept, distances not).",
        ),
        "latent_walk.png": (
            "A walk over the code space",
            "Images decoded from an even grid of 2-D codes (the prior's 5-95% quantiles for a VAE, else the "
            "range of the codes): how the decoder fills the space between and around the data.",
        ),
        "interpolation.png": (
            "Interpolations",
            "g((1 - a) f(x) + a f(x')): codes on the straight line between two images, decoded. The outer "
            "columns are the original images x and x'.",
        ),
        "prior_samples.png": (
            "Samples from the prior",
            "Codes drawn from N(0, I) and decoded: what the VAE generates from nothing.",
        ),
        "restoration.png": (
            "Restoration",
            "The input corrupted with the model's training corruption, the classical baseline's guess, the "
            "model's restored output and the target (the clean image), each with its PSNR against the target.",
        ),
        "probe.png": (
            "Learning from few labels",
            "Accuracy on the eval split of a logistic regression fitted on n labelled train images, on the "
            "codes and on the raw pixels (mean over the draws, bars: one standard deviation). Codes that "
            "capture the classes let a classifier learn from fewer labels.",
        ),
        "errors.png": (
            "Reconstruction errors",
            "Left: errors of the evaluated images and of the reference images, with the suggested anomaly "
            "threshold. Right: mean error per label.",
        ),
        "anomalies.png": (
            "Most and least anomalous images",
            "The evaluated images with the highest and the lowest anomaly score (the error's percentile rank "
            "among the calibration errors; ties broken by anomaly_error, the error it ranks), with label, "
            "score and, in red, those is_anomaly flags (anomaly_error above the stored threshold).",
        ),
        "roc.png": (
            "ROC curve",
            "True-positive rate (anomalies flagged) against false-positive rate (normal images flagged) as "
            "the error threshold moves; the dot is the model's stored threshold (is_anomaly).",
        ),
    }
    return [Figure(name, *titles[name]) for name in drawn]


def _save(fig: MplFigure, output: str, name: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    tf.io.gfile.makedirs(output)
    with tf.io.gfile.GFile(os.path.join(output, name), "wb") as f:
        f.write(buffer.getvalue())
    return name


def _new_figure(width: float, height: float) -> MplFigure:
    fig = MplFigure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _show(ax, image: np.ndarray, title: str | None = None) -> None:
    """One [0, 1] image, without axes."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(image, 0.0, 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=7)


def _row_label(ax, text: str) -> None:
    ax.text(-0.12, 0.5, text, transform=ax.transAxes, ha="right", va="center", fontsize=8)


def _mosaic(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """``(rows, cols, H, W, C)`` -> one ``(rows*(H+pad), cols*(W+pad), C)`` image, grey separators."""
    rows, cols, height, width, channels = images.shape
    canvas = np.full((rows * (height + pad) - pad, cols * (width + pad) - pad, channels), 0.5, np.float32)
    for r in range(rows):
        for c in range(cols):
            canvas[r * (height + pad) : r * (height + pad) + height, c * (width + pad) : c * (width + pad) + width] = (
                images[r, c]
            )
    return canvas


def _label(examples, index: int) -> str:
    return examples.labels[index] or "?"


def reconstructions(evaluation: Evaluation) -> MplFigure:
    """Best / typical / worst by error: originals above reconstructions."""
    order = np.argsort(evaluation.errors, kind="stable")
    shown = min(SHOWN, len(order))
    middle = max(0, len(order) // 2 - shown // 2)
    groups = {"best": order[:shown], "typical": order[middle : middle + shown], "worst": order[::-1][:shown]}
    fig = _new_figure(shown * _CELL + 1.0, 6.5 * _CELL * 1.15)
    # Two rows per group, and a thin empty row between groups so each pair reads as one.
    grid = fig.add_gridspec(8, shown, height_ratios=[1, 1, 0.3, 1, 1, 0.3, 1, 1])
    examples = evaluation.examples
    for g, (name, indices) in enumerate(groups.items()):
        top_row = [fig.add_subplot(grid[3 * g, c]) for c in range(shown)]
        bottom_row = [fig.add_subplot(grid[3 * g + 1, c]) for c in range(shown)]
        for c, (top, bottom) in enumerate(zip(top_row, bottom_row, strict=True)):
            if c >= len(indices):
                top.set_axis_off()
                bottom.set_axis_off()
                continue
            i = indices[c]
            _show(top, examples.pixels[i], f"{_label(examples, i)} · {evaluation.errors[i]:.4f}")
            _show(bottom, evaluation.reconstructions[i])
        _row_label(top_row[0], f"{name}\noriginal")
        _row_label(bottom_row[0], "reconstruction")
    return fig


def _colours(labels: list[str]) -> dict[str, str]:
    names = sorted({label for label in labels if label})
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def latent_space(evaluation: Evaluation) -> MplFigure:
    """A scatter of the codes (or their projections), coloured by label."""
    views = evaluation.projections
    labels = [evaluation.examples.labels[i] for i in evaluation.projected]
    colours = _colours(labels)
    fig = _new_figure(5.5 * len(views) + 1.2, 5.0)
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    marker = 12 if len(labels) > 500 else 24
    for ax, (name, points) in zip(axes, views.items(), strict=True):
        for label in [*colours, ""]:
            mask = np.array([v == label for v in labels])
            if mask.any():
                ax.scatter(
                    points[mask, 0],
                    points[mask, 1],
                    s=marker,
                    alpha=0.75,
                    linewidths=0,
                    color=colours.get(label, _UNLABELLED_COLOUR),
                    label=label or "no label",
                )
        ax.set_title(
            {"codes": "the codes (2-D)", "PCA": "PCA of the codes", "t-SNE": "t-SNE of the codes"}[name], fontsize=10
        )
        ax.set_xlabel("code 1" if name == "codes" else f"{name} 1", fontsize=8)
        ax.set_ylabel("code 2" if name == "codes" else f"{name} 2", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1].legend(title="label", loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, markerscale=1.5)
    return fig


def latent_walk(walk: LatentWalk) -> MplFigure:
    """The decoded grid over 2-D code space, with the code values on the axes."""
    size = walk.images.shape[0]
    fig = _new_figure(7.5, 7.5)
    ax = fig.subplots()
    mosaic = _mosaic(walk.images)
    ax.imshow(
        mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic,
        cmap="gray",
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
    )
    height, width = walk.images.shape[2:4]
    ticks = [(i * (width + 1) + width / 2) for i in range(size)]
    ax.set_xticks(ticks[::2], [f"{v:.2f}" for v in walk.xs[::2]], fontsize=7)
    ax.set_yticks([(i * (height + 1) + height / 2) for i in range(size)][::2], [f"{v:.2f}" for v in walk.ys[::2]])
    ax.tick_params(labelsize=7)
    ax.set_xlabel("code 1", fontsize=8)
    ax.set_ylabel("code 2", fontsize=8)
    return fig


def interpolations(evaluation: Evaluation) -> MplFigure:
    """One row per pair: x, the decoded line, x'."""
    lines = evaluation.interpolations
    examples = evaluation.examples
    columns = len(lines[0].alphas) + 2
    fig = _new_figure(columns * _CELL * 0.9 + 1.0, len(lines) * _CELL * 1.1)
    axes = fig.subplots(len(lines), columns, squeeze=False)
    for r, line in enumerate(lines):
        _show(axes[r, 0], examples.pixels[line.start], "x" if r == 0 else None)
        for k, (alpha, image) in enumerate(zip(line.alphas, line.images, strict=True)):
            _show(axes[r, k + 1], image, f"a={alpha:.2f}" if r == 0 else None)
        _show(axes[r, -1], examples.pixels[line.end], "x'" if r == 0 else None)
        _row_label(axes[r, 0], f"{_label(examples, line.start)} → {_label(examples, line.end)}")
    return fig


def prior_samples(samples: np.ndarray) -> MplFigure:
    """A square mosaic of images decoded from prior samples."""
    side = int(np.sqrt(len(samples)))
    fig = _new_figure(6.0, 6.0)
    ax = fig.subplots()
    _show(ax, _mosaic(samples[: side * side].reshape(side, side, *samples.shape[1:])))
    return fig


def restoration(result: Restoration) -> MplFigure:
    """Input / baseline / restored / target rows of the first images, with PSNR against the target."""
    shown = min(SHOWN, len(result.target))
    rows = [("input\n" + result.corruption, result.corrupted, result.psnr_corrupted)]
    if result.guessed is not None:
        rows.append((f"baseline:\n{result.baseline}", result.guessed, result.psnr_baseline))
    rows += [("restored", result.restored, result.psnr_restored), ("target", result.target, None)]
    fig = _new_figure(shown * _CELL + 1.5, len(rows) * _CELL * 1.2)
    axes = fig.subplots(len(rows), shown, squeeze=False)
    for r, (name, images, scores) in enumerate(rows):
        for c in range(shown):
            _show(axes[r, c], images[c], None if scores is None else f"{scores[c]:.1f} dB")
        _row_label(axes[r, 0], name)
    return fig


def loss_curves(history: dict[str, list[float]]) -> MplFigure:
    """Train and eval loss per epoch (log scale when they span more than a factor of 10)."""
    fig = _new_figure(7.0, 3.6)
    ax = fig.subplots()
    for key, name, colour in (("loss", "train", "#1e88e5"), ("eval_loss", "eval", "#d81b60")):
        values = history.get(key, [])
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, color=colour, label=name)
    everything = [v for key in ("loss", "eval_loss") for v in history.get(key, []) if v > 0]
    if everything and max(everything) > 10 * min(everything):
        ax.set_yscale("log")
    _finish_plot(ax, "epoch", "loss")
    return fig


def probe(result: dict) -> MplFigure:
    """Accuracy against the number of labels, codes and pixels, with one standard deviation."""
    fig = _new_figure(6.0, 3.8)
    ax = fig.subplots()
    sizes = result["sizes"]
    for name, colour in (("codes", "#1e88e5"), ("pixels", "#37474f")):
        means = [result[name][str(n)]["mean"] for n in sizes]
        spreads = [result[name][str(n)]["std"] for n in sizes]
        ax.errorbar(sizes, means, yerr=spreads, marker="o", capsize=4, color=colour, label=f"on the {name}")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    _finish_plot(ax, "labelled train images", "accuracy on the eval split")
    return fig


def _finish_plot(ax, xlabel: str, ylabel: str) -> None:
    """Axis labels, small ticks and the legend of a line plot."""
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=8)


def errors(evaluation: Evaluation) -> MplFigure:
    """Histogram of errors with the threshold, and the mean error per label."""
    per_label = evaluation.metrics["per_label"]
    fig = _new_figure(12.0, 4.2)
    hist, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    reference = evaluation.reference_errors
    everything = evaluation.errors if reference is None else np.concatenate([evaluation.errors, reference])
    bins = np.linspace(0.0, float(everything.max()) * 1.02 + 1e-12, 40)
    reference_is = evaluation.metrics["data"]["reference_is"]
    if reference is not None:
        hist.hist(
            reference, bins=bins, density=True, histtype="step", linewidth=1.6, color="#37474f", label="reference"
        )
    hist.hist(evaluation.errors, bins=bins, density=True, alpha=0.6, color="#1e88e5", label="evaluated", zorder=0)
    percentile = evaluation.metrics["anomaly"]["percentile"]
    hist.axvline(
        evaluation.threshold,
        color="#d81b60",
        linestyle="--",
        label=f"threshold {evaluation.threshold:.4f}\n({percentile:g}th percentile of {reference_is})",
    )
    hist.set_xlabel("reconstruction error (MSE)", fontsize=8)
    hist.set_ylabel("density", fontsize=8)
    hist.tick_params(labelsize=7)
    hist.legend(fontsize=7)
    names = list(per_label)
    colours = _colours(names)
    bars.bar(
        range(len(names)),
        [per_label[n]["mse_mean"] for n in names],
        color=[colours.get(n, _UNLABELLED_COLOUR) for n in names],
    )
    bars.set_xticks(range(len(names)), names, fontsize=7, rotation=0 if len(names) <= 12 else 90)
    bars.set_xlabel("label", fontsize=8)
    bars.set_ylabel("mean reconstruction error", fontsize=8)
    bars.tick_params(labelsize=7)
    return fig


def anomalous(evaluation: Evaluation) -> MplFigure:
    """The most and the least anomalous images by ``anomaly_score`` (then the scored error), those
    ``is_anomaly`` flags titled in red."""
    scored = evaluation.anomaly
    order = np.lexsort((scored.errors, scored.scores))
    shown = min(SHOWN, len(order))
    groups = {"most\nanomalous": order[::-1][:shown], "least\nanomalous": order[:shown]}
    fig = _new_figure(shown * _CELL + 1.0, 2.6 * _CELL)
    axes = np.asarray(fig.subplots(2, shown, squeeze=False))
    for row, (name, indices) in enumerate(groups.items()):
        for c, i in enumerate(indices):
            _show(axes[row, c], evaluation.examples.pixels[i])
            title = f"{_label(evaluation.examples, i)} · {scored.scores[i]:.3f}"
            axes[row, c].set_title(title, fontsize=7, color="#c62828" if scored.flagged[i] else "black")
        _row_label(axes[row, 0], name)
    return fig


def roc_curve(evaluation: Evaluation) -> MplFigure:
    """The ROC curve of the error with ``--normal-labels``, and the stored threshold's point."""
    labelled = evaluation.metrics["anomaly"]["labelled"]
    fig = _new_figure(4.6, 4.2)
    ax = fig.subplots()
    ax.plot(evaluation.roc["fpr"], evaluation.roc["tpr"], color="#1e88e5", label=f"AUROC {labelled['auroc']:.3f}")
    ax.plot([0, 1], [0, 1], color="#9e9e9e", linestyle=":", linewidth=1)
    ax.scatter(
        [labelled["fpr"]], [labelled["recall"]], color="#d81b60", zorder=3, label="stored threshold (is_anomaly)"
    )
    ax.set_xlabel("false-positive rate (normal images flagged)", fontsize=8)
    ax.set_ylabel("true-positive rate (anomalies flagged)", fontsize=8)
    ax.set_title(f"normal labels: {', '.join(labelled['normal_labels'])}", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="lower right")
    return fig
