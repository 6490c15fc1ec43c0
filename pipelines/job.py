"""The whole job: preprocess -> train -> infer -> evaluate, with every output under one folder.

Writes ``OUTPUT/data`` (preprocess), ``OUTPUT/model`` (train), ``OUTPUT/predictions`` (infer) and
``OUTPUT/report`` (evaluate: ``index.html``, ``metrics.json``), logs each stage's start and end, and
returns a summary of what went where.
"""

from __future__ import annotations

import dataclasses
import time

from models.training import train
from pipelines import counters
from pipelines.config import JobConfig
from pipelines.evaluate.job import run_evaluate
from pipelines.infer.job import run_infer
from pipelines.logs import stage
from pipelines.preprocess.job import run_preprocess
from transforms.layout import EVAL, RECORDS_READ, TRAIN, split_counter


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
    with stage("preprocess"):
        pre = run_preprocess(cfg.preprocess, beam_args)
    timings["preprocess"] = time.time() - started
    with stage("train"):
        trained = train(cfg.train)
    timings["train"] = time.time() - started - timings["preprocess"]
    with stage("infer"):
        inferred = run_infer(cfg.infer, beam_args)
    timings["infer"] = time.time() - started - timings["preprocess"] - timings["train"]
    with stage("evaluate"):
        evaluated = run_evaluate(cfg.evaluate, beam_args)
    timings["report"] = time.time() - started - sum(timings.values())
    c = pre.counts
    lines = [
        f"preprocess ({timings['preprocess']:.0f} s): {c.get(RECORDS_READ, 0)} records read, "
        f"{c.get(split_counter(TRAIN), 0)} train + {c.get(split_counter(EVAL), 0)} eval written, "
        f"{pre.rejected} rejected{counters.format_skipped(c)}; "
        f"{'x'.join(map(str, pre.spec.shape))} images -> {cfg.preprocess.output}",
        f"train ({timings['train']:.0f} s): {cfg.train.model.kind}, latent {cfg.train.model.latent_dim}: "
        f"{trained.summary()}",
        f"infer ({timings['infer']:.0f} s): {inferred.counts.get('prediction_rows', 0)} Parquet rows -> "
        f"{cfg.infer.output}",
        f"report ({timings['report']:.0f} s): {evaluated.summary()}",
    ]
    return JobResult(lines)
