"""One-class MNIST: how well the exported anomaly outputs separate one digit from the others.

For each digit d, the real jobs run as a user would run them: ``hourglass preprocess
--input builtin:mnist --keep-labels d --limit 4500`` (the first 4,500 positions of the sample's
fixed shuffled order; the last 500 are never read), then ``hourglass train`` with the default
model options (``TrainConfig`` defaults; ``BENCH_ANOMALY_KINDS=dense,conv`` compares kinds,
``BENCH_ANOMALY_DIGITS=1,7`` runs some digits), which
calibrates the threshold on digit d's eval split. Then, through ``serving_default`` on PNG bytes:

* AUROC on the sample's eval split (the same hash split preprocess makes; positives: the other
  digits, negatives: digit d's eval images, held out from the weights), for the served
  ``anomaly_error`` (the MSE of the blurred images, which ``anomaly_score`` ranks in the same order
  without its ties beyond the calibration table) and for other
  per-image errors from the same outputs: the plain MSE (``reconstruction_error``), BCE, and a
  diagonal Mahalanobis distance of the latent under the calibration's latent mean and std;
* the FPR of ``is_anomaly`` on the held-out normal images: digit d at the 500 positions no job read
  (neither in the weights nor in the calibration).

Anchors (Ruff et al., Deep SVDD, ICML 2018, full MNIST): convolutional AE ~0.90 mean AUROC, Deep
SVDD ~0.95. Target: mean AUROC >= 0.95 with at most 5% of held-out normal digits flagged.
Writes ``OUT/anomaly.json`` and ``OUT/anomaly.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import shutil
import time

import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from benchmarks.bench_model_quality import load_split, prepare_data, serve
from models import input_pipeline
from models.config import ModelConfig, TrainConfig
from models.model_info import ModelInfo
from models.training import train
from pipelines.config import BUILTIN_MNIST, PreprocessConfig, ReaderOptions
from pipelines.inputs import formats
from pipelines.inputs.formats.base import RecordRange
from pipelines.inputs.formats.builtin import MNIST_SIZE
from pipelines.preprocess.job import run_preprocess
from transforms import features

log = logging.getLogger(__name__)

NAME = "anomaly"
READ = 4500  # positions read by preprocess; the rest hold the held-out normal images
DIGITS = tuple(int(d) for d in os.environ.get("BENCH_ANOMALY_DIGITS", "0,1,2,3,4,5,6,7,8,9").split(","))
TARGET_AUROC, TARGET_FPR = 0.95, 0.05
KINDS = tuple(k for k in os.environ.get("BENCH_ANOMALY_KINDS", "").split(",") if k) or (ModelConfig().kind,)


def main(out_dir: pathlib.Path) -> dict:
    work = pathlib.Path(out_dir) / NAME
    data = prepare_data(work / "data")
    eval_split = load_split(data, "eval")
    vocabulary = input_pipeline.load_transform_output(data).vocabulary_by_name(features.LABEL_VOCABULARY)
    eval_split = dataclasses.replace(eval_split, labels=np.array([int(vocabulary[i]) for i in eval_split.labels]))
    held_out = _held_out()
    rows = [digit_row(d, kind, work, eval_split, held_out) for kind in KINDS for d in DIGITS]
    epochs = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "epochs")
    figures = {
        "read_positions": READ,
        "eval_examples": len(eval_split.labels),
        "kinds": KINDS,
        "epochs": epochs,
        "latent_dim": ModelConfig().latent_dim,
        "rows": rows,
    }
    figures["summary"] = [summary(kind, [r for r in rows if r["kind"] == kind]) for kind in KINDS]
    pathlib.Path(out_dir, f"{NAME}.json").write_text(json.dumps(figures, indent=2))
    pathlib.Path(out_dir, f"{NAME}.md").write_text(markdown(figures))
    return figures["summary"]


def _held_out() -> dict[str, np.ndarray]:
    """The images at the positions preprocess did not read (``--limit READ``): PNG bytes and labels."""
    reader = formats.READERS[BUILTIN_MNIST](BUILTIN_MNIST, ReaderOptions())
    reader.setup()
    records = list(reader.read(RecordRange(BUILTIN_MNIST, READ, MNIST_SIZE - READ)))
    return {
        "images": np.array([r[features.IMAGE] for r in records], dtype=object),
        "labels": np.array([int(r[features.LABEL]) for r in records]),
    }


def digit_row(digit: int, kind: str, work: pathlib.Path, eval_split, held_out: dict) -> dict:
    """Preprocesses digit ``digit`` only, trains ``kind`` with its defaults, scores the eval split."""
    folder = work / f"{kind}-digit{digit}"
    started = time.time()
    data = str(folder / "data")
    if not (folder / "data" / "stats.json").exists():
        reader = ReaderOptions(keep_labels=(str(digit),))
        run_preprocess(PreprocessConfig(input=BUILTIN_MNIST, output=data, limit=READ, reader=reader))
    shutil.rmtree(folder / "model", ignore_errors=True)  # train afresh (a model folder would resume)
    cfg = TrainConfig(data_dir=data, model_dir=str(folder / "model"), model=ModelConfig(kind))
    result = train(cfg)
    seconds = time.time() - started
    cal = ModelInfo.read(cfg.model_dir).calibration
    served = tf.saved_model.load(result.saved_model)
    out = serve(served, eval_split.images)
    normal = eval_split.labels == digit
    anomalous = ~normal
    scores = candidate_scores(out, eval_split.pixels, cal)
    held = serve(served, held_out["images"][held_out["labels"] == digit])
    row = {
        "digit": digit,
        "kind": kind,
        "train_examples": int(json.loads((folder / "data" / "stats.json").read_text())["splits"]["train"]["records"]),
        "calibration_examples": cal.examples,
        "threshold_method": cal.method,
        "seconds": seconds,
        "auroc": {name: float(roc_auc_score(anomalous, score)) for name, score in scores.items()},
        "eval_normal_flagged": float(np.mean(out["is_anomaly"][normal])),
        "eval_anomalies_flagged": float(np.mean(out["is_anomaly"][anomalous])),
        "held_out_normals": len(held["is_anomaly"]),
        "held_out_fpr": float(np.mean(held["is_anomaly"])),
    }
    log.info("%s", row)
    return row


def candidate_scores(out: dict, pixels: np.ndarray, cal) -> dict[str, np.ndarray]:
    """Per-image anomaly scores to compare: the served one and others from the same outputs."""
    recon = np.clip(out["reconstruction"], 1e-6, 1 - 1e-6)
    bce = -np.mean(pixels * np.log(recon) + (1 - pixels) * np.log(1 - recon), axis=(1, 2, 3))
    std = np.maximum(np.array(cal.latent_std), 1e-6)
    latent = np.sum(np.square((out["latent"] - np.array(cal.latent_mean)) / std), axis=1)
    return {
        # anomaly_score ranks images as anomaly_error does, but ties those beyond the calibration table (at 1).
        f"anomaly_error ({cal.error})": out["anomaly_error"],
        "mse": out["reconstruction_error"],
        "bce": bce,
        "latent": latent,
    }


def summary(kind: str, rows: list[dict]) -> dict:
    names = rows[0]["auroc"].keys()
    held = sum(r["held_out_normals"] for r in rows)
    flagged = sum(r["held_out_fpr"] * r["held_out_normals"] for r in rows)
    return {
        "kind": kind,
        "mean_auroc": {name: float(np.mean([r["auroc"][name] for r in rows])) for name in names},
        "held_out_fpr": flagged / held,
        "held_out_normals": held,
        "eval_normal_flagged": float(np.mean([r["eval_normal_flagged"] for r in rows])),
        "mean_seconds": float(np.mean([r["seconds"] for r in rows])),
    }


def markdown(figures: dict) -> str:
    lines = []
    for s in figures["summary"]:
        rows = [r for r in figures["rows"] if r["kind"] == s["kind"]]
        names = list(s["mean_auroc"])
        lines += [
            f"One-class MNIST, kind `{s['kind']}` with the default options ({figures['latent_dim']}-D codes, "
            f"{figures['epochs']} epochs): train on one digit of the built-in "
            f"sample (first {figures['read_positions']} positions), AUROC on the {figures['eval_examples']}-image "
            "eval split (positives: the other digits); FPR of `is_anomaly` on the digit's held-out images.",
            "",
            "| digit | " + " | ".join(f"AUROC {n}" for n in names) + " | held-out FPR | threshold | s |",
            "|---:|" + "---:|" * len(names) + "---:|---|---:|",
        ]
        for r in rows:
            cells = [str(r["digit"]), *(f"{r['auroc'][n]:.3f}" for n in names)]
            cells += [
                f"{r['held_out_fpr']:.3f} ({r['held_out_normals']})",
                r["threshold_method"],
                f"{r['seconds']:.0f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        mean = [f"**{s['mean_auroc'][n]:.3f}**" for n in names]
        lines.append(f"| mean | {' | '.join(mean)} | **{s['held_out_fpr']:.3f}** ({s['held_out_normals']}) | | |")
        best = max(s["mean_auroc"].values())
        met = best >= TARGET_AUROC and s["held_out_fpr"] <= TARGET_FPR
        lines += [
            "",
            f"Target: mean AUROC >= {TARGET_AUROC} and held-out FPR <= {TARGET_FPR}: "
            f"{'met' if met else 'NOT met'} (best mean AUROC {best:.3f}, FPR {s['held_out_fpr']:.3f}).",
            "",
        ]
    return "\n".join(lines)
