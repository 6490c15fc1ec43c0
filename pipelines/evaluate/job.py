"""The evaluate job: read the images, evaluate the export, write the report.

``run_evaluate`` reads the eval split of a preprocess output (or any input, ``data.read_images``),
evaluates (``metrics.evaluate``), and writes ``OUTPUT/metrics.json``, the PNG figures
(``figures``), ``OUTPUT/index.html`` (``report``) and ``OUTPUT/config.json``.
"""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

from pipelines.config import EvaluateConfig, write_config
from pipelines.evaluate import figures, report
from pipelines.evaluate.data import read_images, read_split
from pipelines.evaluate.exported import ExportedModel
from pipelines.evaluate.metrics import evaluate
from pipelines.evaluate.results import EvaluateResult
from transforms.layout import EVAL, TRAIN

log = logging.getLogger(__name__)

METRICS_JSON = "metrics.json"


def run_evaluate(cfg: EvaluateConfig, beam_args: list[str] | None = None) -> EvaluateResult:
    """Evaluates ``cfg.model_dir`` on ``cfg.data`` or ``cfg.input`` and writes the report to ``cfg.output``.

    Raises:
      UserError: no exported model, ``data`` is not a preprocess output, a bad input spec, no
        readable image, or a denoising model without its noise spec.
    """
    model = ExportedModel(cfg.model_dir)
    write_config(cfg, cfg.output)
    if cfg.data is not None:
        examples = read_split(cfg.data, EVAL, cfg.max_examples)
        reference = read_split(cfg.data, TRAIN, cfg.max_examples)
        source = f"{cfg.data} (eval split)"
    else:
        examples = read_images(cfg, model, beam_args)
        reference, source = None, cfg.input
    log.info("evaluating %s on %d images of %s", cfg.model_dir, len(examples), source)
    evaluation = evaluate(model, examples, reference, cfg.threshold_percentile, cfg.seed, source, cfg.normal_labels)
    drawn = figures.write_figures(evaluation, cfg.output)
    with tf.io.gfile.GFile(os.path.join(cfg.output, METRICS_JSON), "w") as f:
        json.dump(evaluation.metrics, f, indent=2, sort_keys=True)
    index = report.write_report(cfg.output, evaluation.metrics, drawn)
    return EvaluateResult(cfg.output, index, evaluation.metrics)
