"""The whole job: preprocess -> train -> infer, with every output under one folder.

Writes ``OUTPUT/data`` (preprocess), ``OUTPUT/model`` (train) and ``OUTPUT/predictions`` (infer),
and returns a summary of what went where.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

from models.config import ModelConfig, TrainConfig
from models.training import train
from pipelines.config import InferConfig, JobConfig, PreprocessConfig, write_config
from pipelines.infer import run_infer
from pipelines.preprocess import run_preprocess
from pipelines.sources import BUILTIN_MNIST, ReaderOptions

log = logging.getLogger(__name__)


def make_job_config(
    output: str = "hourglass-output",
    input: str = BUILTIN_MNIST,
    model: ModelConfig | None = None,
    epochs: int = 10,
    limit: int | None = None,
    reader: ReaderOptions | None = None,
) -> JobConfig:
    """The stage configs of a run whose outputs all live under ``output`` (``reader``: how to read
    ``input``, for both preprocess and infer)."""
    data, model_dir, predictions = (os.path.join(output, name) for name in ("data", "model", "predictions"))
    reader = reader or ReaderOptions()
    return JobConfig(
        preprocess=PreprocessConfig(input=input, output=data, limit=limit, reader=reader),
        train=TrainConfig(data_dir=data, model_dir=model_dir, model=model or ModelConfig(), epochs=epochs),
        infer=InferConfig(model_dir=model_dir, input=input, output=predictions, limit=limit, reader=reader),
    )


@dataclasses.dataclass(frozen=True)
class JobResult:
    """Paths and counts of a whole run, and its wall time per stage."""

    lines: list[str]

    def summary(self) -> str:
        return "\n".join(self.lines)


def run_job(cfg: JobConfig, beam_args: list[str] | None = None) -> JobResult:
    """Runs the three stages in order; any stage's error stops the run."""
    timings = {}
    started = time.time()
    pre = run_preprocess(cfg.preprocess, beam_args)
    timings["preprocess"] = time.time() - started
    write_config(cfg.train, cfg.train.model_dir)
    trained = train(cfg.train)
    timings["train"] = time.time() - started - timings["preprocess"]
    inferred = run_infer(cfg.infer, beam_args)
    timings["infer"] = time.time() - started - timings["preprocess"] - timings["train"]
    c = pre.counts
    lines = [
        f"preprocess ({timings['preprocess']:.0f} s): {c.get('records_read', 0)} records read, "
        f"{c.get('train_records', 0)} train + {c.get('eval_records', 0)} eval written, {pre.rejected} rejected; "
        f"{'x'.join(map(str, pre.spec.shape))} images -> {cfg.preprocess.output}",
        f"train ({timings['train']:.0f} s): {cfg.train.model.kind}, latent {cfg.train.model.latent_dim}, "
        f"{trained.epochs} epochs, eval loss {trained.history['eval_loss'][-1]:.5f} -> {trained.saved_model}",
        f"infer ({timings['infer']:.0f} s): {inferred.counts.get('prediction_rows', 0)} Parquet rows -> "
        f"{cfg.infer.output}",
    ]
    return JobResult(lines)
