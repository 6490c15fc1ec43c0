"""The report page: one self-contained ``index.html`` beside its PNG figures and ``metrics.json``.

Input: the metrics dict (as written to ``metrics.json``) and the ``figures.Figure`` list. Output:
HTML with no script, no external stylesheet, font or image: it opens from disk, offline. Every
number shown comes from the metrics dict and carries ``data-metric``, the JSON list of keys that
leads to it in ``metrics.json``, so a reader (or a test) can trace each number to its source.
"""

from __future__ import annotations

import html
import json
import os

import tensorflow as tf

from pipelines.evaluate.figures import Figure

INDEX_HTML = "index.html"

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0;
       background: #f6f8fa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.sub { color: #57606a; margin: 0 0 18px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; }
.card { border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 14px; background: #fbfcfd; }
.card .v { font-size: 24px; font-weight: 600; }
.card .k { color: #57606a; font-size: 13px; }
figure { margin: 8px 0 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #57606a; font-size: 13.5px; margin-top: 6px; max-width: 900px; }
table { border-collapse: collapse; margin-top: 8px; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f6f8fa; }
.note { color: #57606a; font-size: 13.5px; }
.card.bad { border-color: #cf222e; background: #fff5f5; }
.card .verdict { font-size: 12.5px; margin-top: 4px; }
.good { color: #1a7f37; }
.bad { color: #cf222e; }
ul.verdicts { padding-left: 0; list-style: none; margin: 14px 0 0; }
ul.verdicts li { margin: 3px 0; }
footer { margin-top: 36px; color: #57606a; font-size: 13px; }
"""


def format_number(value: float | int) -> str:
    """How the page shows a metric: integers as they are, other numbers to 4 significant digits."""
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def _metric(metrics: dict, *path: str) -> str:
    """The number at ``path`` in ``metrics``, tagged with its path."""
    value = metrics
    for key in path:
        value = value[key]
    return f"<span data-metric='{html.escape(json.dumps(list(path)), quote=True)}'>{format_number(value)}</span>"


def _card(value_html: str, label: str, verdict: dict | None = None) -> str:
    """A headline number; with a verdict, marked good or bad against its baseline."""
    if verdict is None:
        return f'<div class="card"><div class="v">{value_html}</div><div class="k">{html.escape(label)}</div></div>'
    mark = "good" if verdict["ok"] else "bad"
    return (
        f'<div class="card {mark}"><div class="v">{value_html}</div><div class="k">{html.escape(label)}</div>'
        f'<div class="verdict {mark}">{"✓" if verdict["ok"] else "✗"} {html.escape(verdict["says"].split(":")[0])}'
        "</div></div>"
    )


def _verdict_list(m: dict) -> str:
    """Every verdict with its number: the bad ones first."""
    items = sorted(m["verdicts"].items(), key=lambda item: item[1]["ok"])
    rows = "".join(
        f'<li class="{"good" if v["ok"] else "bad"}">{"✓" if v["ok"] else "✗"} <b>{html.escape(name)}</b>: '
        f"{html.escape(v['says'])} ({html.escape(v['measure'])}: {_metric(m, 'verdicts', name, 'value')})</li>"
        for name, v in items
    )
    return f'<ul class="verdicts">{rows}</ul>'


def render_report(metrics: dict, figures: list[Figure]) -> str:
    """The page's HTML."""
    model, data, m = metrics["model"], metrics["data"], metrics
    kind = "variational " if model["variational"] else ""
    kind += "restoring " if model["corruption"] else ""
    shape = "x".join(str(d) for d in model.get("image_shape") or [])
    title = f"{model['kind']} autoencoder, {model['latent_dim']}-D codes"
    about = f"{kind}{model['kind']} model (hash {model['model_hash'][:16]}), {model['loss']} loss, {shape} images"
    classification, verdicts = m["classification"], m["verdicts"]
    cards = [
        _card(_metric(m, "reconstruction", "mse_mean"), "reconstruction MSE (mean)", verdicts["reconstruction"]),
        _card(_metric(m, "reconstruction", "psnr_mean"), "reconstruction PSNR, dB", verdicts["variance"]),
        _card(_metric(m, "pca", "mse_mean"), "PCA MSE (as many dimensions)"),
        _card(_metric(m, "anomaly", "threshold"), "suggested anomaly threshold"),
    ]
    if "knn" in classification:
        cards.append(
            _card(
                _metric(m, "classification", "knn", "autoencoder"),
                "k-NN accuracy on the codes",
                verdicts["classification"],
            )
        )
        cards.append(
            _card(_metric(m, "classification", "logistic_regression", "autoencoder"), "logistic regression on codes")
        )
    if "probe" in verdicts:
        fewest = str(m["probe"]["sizes"][0])
        label = f"accuracy from {fewest} labels, on the codes"
        cards.append(_card(_metric(m, "probe", "codes", fewest, "mean"), label, verdicts["probe"]))
    if "restoration" in m:
        cards.append(
            _card(_metric(m, "restoration", "psnr_restored"), "restored PSNR, dB", verdicts.get("restoration"))
        )
    if "auroc" in m["anomaly"].get("labelled", {}):
        cards.append(_card(_metric(m, "anomaly", "labelled", "auroc"), "anomaly AUROC"))
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Hourglass report: {html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><main>",
        f"<h1>Hourglass report: {html.escape(title)}</h1>",
        f'<p class="sub">{html.escape(about)}. '
        f"Evaluated {_metric(m, 'data', 'evaluated')} images of {html.escape(data['source'])}, "
        f"{_metric(m, 'data', 'labels')} labels; reference: {_metric(m, 'data', 'reference')} images of "
        f"{html.escape(data['reference_is'])}.</p>",
        '<h2>At a glance</h2><div class="cards">',
        *cards,
        "</div>",
        _verdict_list(m),
        "<h2>The model</h2>",
        _model_card(m),
        "<h2>Compared with PCA</h2>",
        _comparison_table(m),
    ]
    for figure in figures:
        parts += [
            f"<h2>{html.escape(figure.title)}</h2>",
            f'<figure><img src="{html.escape(figure.file)}" alt="{html.escape(figure.title)}">',
            f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>",
        ]
        if figure.file == "errors.png":
            parts += [_anomaly_paragraph(m), _per_label_table(m)]
        if figure.file == "restoration.png":
            parts.append(_restoration_table(m))
        if figure.file == "probe.png":
            parts.append(_probe_table(m))
        if figure.file == "anomalies.png":
            parts.append(_stored_threshold_paragraph(m))
            if "labelled" in m["anomaly"]:
                parts.append(_labelled_table(m))
    if "skipped" in m["probe"]:
        parts.append(f'<h2>Learning from few labels</h2><p class="note">{html.escape(m["probe"]["skipped"])}.</p>')
    parts += [
        '<footer>All numbers: <a href="metrics.json">metrics.json</a>; how this report was made: '
        '<a href="config.json">config.json</a>. Errors are per-image mean squared errors of [0, 1] pixels; '
        "PSNR = 10 log10(1 / MSE).</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _anomaly_paragraph(m: dict) -> str:
    return (
        f'<p class="note">Suggested anomaly threshold: {_metric(m, "anomaly", "threshold")}, the '
        f"{_metric(m, 'anomaly', 'percentile')}th percentile of the errors of {html.escape(m['data']['reference_is'])}"
        f". Above it: {_metric(m, 'anomaly', 'flagged')} of the evaluated images "
        f"(fraction {_metric(m, 'anomaly', 'flagged_fraction')}).</p>"
    )


def _stored_threshold_paragraph(m: dict) -> str:
    method = html.escape(m["anomaly"]["stored"]["method"])
    return (
        f'<p class="note">The model\'s stored threshold: {_metric(m, "anomaly", "stored", "threshold")}, set '
        f"on {_metric(m, 'anomaly', 'stored', 'calibration_examples')} eval-split images for a target "
        f"false-positive rate of {_metric(m, 'anomaly', 'stored', 'fpr')} ({method}). "
        f"is_anomaly flags {_metric(m, 'anomaly', 'stored', 'flagged')} of the evaluated images "
        f"(fraction {_metric(m, 'anomaly', 'stored', 'flagged_fraction')}).</p>"
    )


def _labelled_table(m: dict) -> str:
    rows = [
        ("AUROC (reconstruction error)", "auroc"),
        ("AUPR (average precision)", "aupr"),
        ("F1 at the stored threshold", "f1"),
        ("precision at the stored threshold", "precision"),
        ("recall at the stored threshold", "recall"),
        ("FPR on normal images", "fpr"),
        ("normal images", "normal"),
        ("anomalies", "anomalous"),
        ("unlabelled images (left out)", "unlabelled"),
    ]
    labelled = m["anomaly"]["labelled"]
    body = "".join(
        f"<tr><td>{name}</td><td>{_metric(m, 'anomaly', 'labelled', key)}</td></tr>"
        for name, key in rows
        if key in labelled
    )
    if "skipped" in labelled:
        body += f'<tr><td colspan="2">{html.escape(labelled["skipped"])}</td></tr>'
    return f"<table><tr><th>with --normal-labels</th><th>value</th></tr>{body}</table>"


def _per_label_table(m: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{_metric(m, 'per_label', label, 'examples')}</td>"
        f"<td>{_metric(m, 'per_label', label, 'mse_mean')}</td></tr>"
        for label in m["per_label"]
    )
    return f"<table><tr><th>label</th><th>images</th><th>mean MSE</th></tr>{rows}</table>"


def _restoration_table(m: dict) -> str:
    r = m["restoration"]
    rows = [(f"input ({html.escape(r['corruption'])})", "psnr_corrupted")]
    if "psnr_baseline" in r:
        rows.append((f"baseline: {html.escape(r['baseline'])}", "psnr_baseline"))
    rows.append(("restored", "psnr_restored"))
    body = "".join(f"<tr><td>{name}</td><td>{_metric(m, 'restoration', key)}</td></tr>" for name, key in rows)
    note = (
        "" if "psnr_baseline" in r else f'<p class="note">No classical baseline for {html.escape(r["corruption"])}.</p>'
    )
    return f"<table><tr><th>images</th><th>mean PSNR, dB</th></tr>{body}</table>{note}"


def _probe_table(m: dict) -> str:
    probe = m["probe"]
    cell = lambda name, n: (  # noqa: E731
        f"{_metric(m, 'probe', name, str(n), 'mean')} ± {_metric(m, 'probe', name, str(n), 'std')}"
    )
    rows = "".join(
        f"<tr><td>{n}</td><td>{cell('codes', n)}</td><td>{cell('pixels', n)}</td></tr>" for n in probe["sizes"]
    )
    left_out = "".join(
        f" {html.escape(n)} labels: left out, {html.escape(why)}." for n, why in probe["left_out"].items()
    )
    return (
        "<table><tr><th>labels</th><th>accuracy on the codes</th><th>accuracy on the pixels</th></tr>"
        f'{rows}</table><p class="note">{html.escape(probe["protocol"].capitalize())}; mean ± standard deviation over '
        f"{_metric(m, 'probe', 'draws')} draws.{left_out}</p>"
    )


def _model_card(m: dict) -> str:
    """Kind, parameters, training, data, shape, hash and size of the evaluated model."""
    model = m["model"]
    params = ", ".join(
        f"{html.escape(key)}={_metric(m, 'model', 'params', key) if _is_number(value) else html.escape(str(value))}"
        for key, value in sorted(model["params"].items())
    )
    epochs = _metric(m, "model", "epochs") if model["epochs"] is not None else "not recorded (no training.json)"
    trained_on = html.escape(model["trained_on"]) if model["trained_on"] is not None else "not recorded"
    rows = [
        ("kind", html.escape(model["kind"]) + (" (variational)" if model["variational"] else "")),
        ("parameters", params or "none"),
        ("code size", _metric(m, "model", "latent_dim")),
        ("loss", html.escape(model["loss"])),
        ("trained to undo", html.escape(model["corruption"] or "no corruption")),
        ("weights", _metric(m, "model", "weights")),
        ("epochs", epochs),
        ("data", trained_on),
        ("image shape (H x W x C)", "x".join(str(d) for d in model["image_shape"])),
        ("weights hash", html.escape(model["model_hash"])),
        ("export size, bytes", _metric(m, "model", "size_bytes")),
    ]
    body = "".join(f"<tr><td>{name}</td><td>{value}</td></tr>" for name, value in rows)
    return f"<table>{body}</table>"


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparison_table(m: dict) -> str:
    classification = m["classification"]
    scored = "knn" in classification
    head = "<tr><th>codes</th><th>dimensions</th><th>mean MSE</th><th>median MSE</th><th>mean PSNR, dB</th>"
    head += "<th>k-NN accuracy</th><th>logistic regression accuracy</th></tr>" if scored else "</tr>"
    rows = []
    for name, label, dims, section in (
        ("autoencoder", f"{m['model']['kind']} autoencoder", _metric(m, "model", "latent_dim"), "reconstruction"),
        ("pca", "PCA", _metric(m, "pca", "components"), "pca"),
    ):
        row = f"<tr><td>{html.escape(label)}</td><td>{dims}</td><td>{_metric(m, section, 'mse_mean')}</td>"
        row += f"<td>{_metric(m, section, 'mse_median')}</td>"
        row += f"<td>{_metric(m, section, 'psnr_mean')}</td>"
        if scored:
            row += f"<td>{_metric(m, 'classification', 'knn', name)}</td>"
            row += f"<td>{_metric(m, 'classification', 'logistic_regression', name)}</td>"
        rows.append(row + "</tr>")
    better = "the autoencoder" if m["reconstruction"]["mse_mean"] < m["pca"]["mse_mean"] else "PCA"
    verdict = f"With as many dimensions, {better} reconstructs better on average. "
    if scored:
        note = verdict + (
            f"Accuracy of predicting the label from the codes: {html.escape(classification['protocol'])}; k-NN with "
            f"k = {_metric(m, 'classification', 'neighbours')}, logistic regression on standardized codes."
        )
    else:
        note = verdict + f"No classification scores: {html.escape(classification['skipped'])}."
    return f'<table>{head}{"".join(rows)}</table><p class="note">{note}</p>'


def write_report(output: str, metrics: dict, figures: list[Figure]) -> str:
    """Writes ``output/index.html``; returns its path."""
    path = os.path.join(output, INDEX_HTML)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(render_report(metrics, figures))
    return path
