"""The whole job: preprocess -> train -> infer -> evaluate, with every output under one folder.

Writes ``OUTPUT/data`` (preprocess), ``OUTPUT/model`` (train), ``OUTPUT/predictions`` (infer) and
``OUTPUT/report`` (evaluate: ``index.html``, ``metrics.json``), and returns a summary of what went where.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from models.training import train
from pipelines.config import JobConfig, write_config
from pipelines.evaluate import run_evaluate
from pipelines.infer import run_infer
from pipelines.preprocess import run_preprocess

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class JobResult:
    """Paths and counts of a whole run, and its wall time per stage."""

    lines: list[str]

    def summary(self) -> str:
        return "\n".join(self.lines)


def run_job(cfg: JobConfig, beam_args: list[str] | None = None) -> JobResult:
    """Runs the four stages in order; any stage's error stops the run."""
    timings = {}
    started = time.time()
    pre = run_preprocess(cfg.preprocess, beam_args)
    timings["preprocess"] = time.time() - started
    trained = train(cfg.train)
    write_config(cfg.train, cfg.train.model_dir)
    timings["train"] = time.time() - started - timings["preprocess"]
    inferred = run_infer(cfg.infer, beam_args)
    timings["infer"] = time.time() - started - timings["preprocess"] - timings["train"]
    evaluated = run_evaluate(cfg.evaluate, beam_args)
    timings["report"] = time.time() - started - sum(timings.values())
    c = pre.counts
    lines = [
        f"preprocess ({timings['preprocess']:.0f} s): {c.get('records_read', 0)} records read, "
        f"{c.get('train_records', 0)} train + {c.get('eval_records', 0)} eval written, {pre.rejected} rejected; "
        f"{'x'.join(map(str, pre.spec.shape))} images -> {cfg.preprocess.output}",
        f"train ({timings['train']:.0f} s): {cfg.train.model.kind}, latent {cfg.train.model.latent_dim}, "
        f"{trained.epochs} epochs, eval loss {trained.history['eval_loss'][-1]:.5f} -> {trained.saved_model}",
        f"infer ({timings['infer']:.0f} s): {inferred.counts.get('prediction_rows', 0)} Parquet rows -> "
        f"{cfg.infer.output}",
        f"report ({timings['report']:.0f} s): {evaluated.summary()}",
    ]
    return JobResult(lines)
