"""The evaluate job: read the images, evaluate the export, write the report.

``run_evaluate`` reads the eval split of a preprocess output (or any input, ``data.read_images``),
reads the model card (``card``), evaluates (``metrics.evaluate``), and writes ``OUTPUT/metrics.json``,
the PNG figures (``figures``), ``OUTPUT/index.html`` (``report``) and ``OUTPUT/config.json``, all into
a staging folder that replaces ``OUTPUT`` only when the report is complete (``transforms.publishing``):
a failed or killed run leaves the earlier report as it was.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import tensorflow as tf

from pipelines.config import EvaluateConfig, write_config
from pipelines.evaluate import figures, report
from pipelines.evaluate.card import read_card
from pipelines.evaluate.data import read_images, read_split
from pipelines.evaluate.exported import ExportedModel
from pipelines.evaluate.metrics import evaluate
from pipelines.evaluate.results import EvaluateResult
from transforms import publishing
from transforms.errors import UserError
from transforms.layout import EVAL, TRAIN

log = logging.getLogger(__name__)

METRICS_JSON = "metrics.json"


def run_evaluate(cfg: EvaluateConfig, beam_args: list[str] | None = None) -> EvaluateResult:
    """Evaluates ``cfg.model_dir`` on ``cfg.data`` or ``cfg.input`` and writes the report to ``cfg.output``.

    Raises:
      UserError: no exported model or one that fails its checks (``models.model_check``), ``data``
        is not a preprocess output, a bad input spec, no readable image, a model with an invalid
        corruption in model_info.json, or an output that overlaps an input.
      publishing.TargetBusy: another run is writing the same output.
    """
    model = ExportedModel(cfg.model_dir, trust_model=cfg.trust_model)
    inputs = {"--data": cfg.data, "--input": cfg.input, "--model-dir": cfg.model_dir}
    publishing.check_apart(cfg.output, "--output", inputs)
    with publishing.Publication(cfg.output, marker=METRICS_JSON, stage="evaluate") as publication:
        staged = dataclasses.replace(cfg, output=publication.staging)
        write_config(cfg, staged.output)
        if cfg.data is not None:
            examples = read_split(cfg.data, EVAL, cfg.max_examples)
            reference = read_split(cfg.data, TRAIN, cfg.max_examples)
            source = f"{cfg.data} (eval split)"
        else:
            try:
                examples = read_images(staged, model, beam_args)
            except UserError as error:
                kept = publication.keep_failed()
                raise UserError(f"{error} (the failed run's dead letters are kept in {kept}/)") from None
            reference, source = None, cfg.input
        log.info("evaluating %s on %d images of %s", cfg.model_dir, len(examples), source)
        card = read_card(cfg.model_dir, model.info, model.variational)
        evaluation = evaluate(
            model, card, examples, reference, cfg.threshold_percentile, cfg.seed, source, cfg.normal_labels
        )
        drawn = figures.write_figures(evaluation, staged.output)
        with tf.io.gfile.GFile(os.path.join(staged.output, METRICS_JSON), "w") as f:
            json.dump(evaluation.metrics, f, indent=2, sort_keys=True)
        index = report.write_report(staged.output, evaluation.metrics, drawn)
        publication.publish()
    return EvaluateResult(cfg.output, os.path.join(cfg.output, os.path.basename(index)), evaluation.metrics)
