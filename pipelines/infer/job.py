"""The infer job: images -> validated -> ``EncodeImages`` -> Parquet, in batch or as files land (``watch``).

``build_infer_pipeline`` adds the source (``ReadImages``: every input spec the preprocess job
reads, then validation) and the sinks (``parquet.write_predictions``) to ``EncodeImages``.
``run_infer`` writes that into its own staging folder with ``_config.json`` and ``_manifest.json``
and publishes it (``transforms.publishing``: locked, swapped in, restored on failure) only when the
run succeeded, as ``output/`` or, with a run id, the Hive
partition ``output/run_id=RUN_ID/``, which also gets its keys index (``keys``); with
``skip_existing`` only the records not already in another partition are encoded. The manifest's
``drift`` section compares the run with the model's calibration (``drift``); with ``fail_on_drift``
a run whose drift is detected is published, then fails with ``transforms.errors.DriftDetected``. With ``watch``
it runs ``watch.run_watch`` (micro-batches, the default) or ``streaming.run_streaming`` instead.
The model handler is a parameter of each, so tests inject their own.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import apache_beam as beam
import pyarrow as pa
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.options.pipeline_options import PipelineOptions

from models.model_info import ANOMALY_OUTPUTS, DEFAULT_OUTPUTS, DENOISED, LATENT, RESTORED, Calibration, ModelInfo
from pipelines import counters
from pipelines.config import ImageLimits, InferConfig, write_config
from pipelines.infer import drift, encode, keys, manifest, parquet, publish
from pipelines.infer.encode import STAGE, EncodeImages
from pipelines.infer.model_handler import HourglassModelHandler
from pipelines.infer.streaming import run_streaming
from pipelines.infer.watch import run_watch
from pipelines.inputs.sources import ReadImages, Source, resolve_source
from pipelines.inputs.validation import validate_read
from pipelines.runner import local_runner
from transforms import publishing
from transforms.errors import UserError
from transforms.layout import RECORDS_READ, rejected_by_reason

log = logging.getLogger(__name__)


def build_infer_pipeline(
    p: beam.Pipeline,
    cfg: InferConfig,
    source: Source,
    model_handler: ModelHandler,
    schema: pa.Schema,
    output: str,
    index: keys.KeysIndex | None = None,
    calibration: Calibration | None = None,
) -> dict:
    """Adds read ``source`` -> validate -> encode -> write (under ``output``) to ``p``; returns the
    PCollections by name (``tables``, ``retried``, ``rejected``). With ``calibration`` (the model's)
    the drift bins are counted.

    With a run id the keys of the records written go to ``output/_keys/``; with ``index`` only the
    records not in it are validated and encoded (``--skip-existing``).
    """
    read = p | "ReadImages" >> ReadImages(source)
    records = read["records"]
    if cfg.run_id is not None:
        records = records | "HashContent" >> beam.Map(keys.add_content_hash)
    if index is not None:
        records = records | "SkipExisting" >> beam.ParDo(keys.SkipExistingFn(index))
    checked = validate_read(
        {"records": records, "rejected": read["rejected"]}, STAGE, ImageLimits.of(cfg), decode=False
    )
    valid = checked["valid"] | "Progress" >> beam.ParDo(counters.LogProgressFn(STAGE, "validated"))
    encoded = valid | "EncodeImages" >> EncodeImages(model_handler, schema, calibration)
    written = parquet.write_predictions(encoded, checked["rejected"], output, schema, cfg.compression)
    if cfg.run_id is not None:
        model_hash = schema.metadata[(parquet.META_PREFIX + "model_hash").encode()].decode()
        _ = (checked["valid"], written["rejected"]) | "WriteKeys" >> keys.WriteKeys(output, model_hash)
    return written


@dataclasses.dataclass(frozen=True)
class InferResult:
    """What an infer run wrote and counted (``manifest`` is None in watch mode, where ``windows``
    holds the manifests of the windows published)."""

    output: str
    counts: dict[str, int]
    manifest: dict | None = None
    windows: tuple[dict, ...] = ()

    @property
    def rejected(self) -> int:
        return sum(rejected_by_reason(self.counts, STAGE).values())

    def summary(self) -> str:
        """Rows, rejects and RunInference's metrics (inferences, batch sizes, latency), for people."""
        lines = [
            f"wrote {self.counts.get('prediction_rows', 0)} Parquet rows, {self.rejected} rejected "
            f"(of {self.counts.get(RECORDS_READ, 0)} read){counters.format_skipped(self.counts)} -> {self.output}"
        ]
        if self.windows:
            lines.append(
                f"published {len(self.windows)} window(s): {', '.join(w['window_start'] for w in self.windows)}"
            )
        if self.manifest and keys.SKIPPED in self.manifest:
            m = self.manifest
            lines.append(f"skip existing: {m['new']} new, {m['changed']} changed, {m[keys.SKIPPED]} already encoded")
        dists = (self.manifest or {}).get("metrics", {}).get("distributions", {})
        sizes, latency = dists.get("inference_request_batch_size"), dists.get("inference_batch_latency_micro_secs")
        if sizes and latency:
            lines.append(
                f"RunInference: {self.counts.get('num_inferences', 0)} inferences in {sizes['count']} batches "
                f"(size mean {sizes['mean']:.0f}, max {sizes['max']}), {latency['mean'] / 1000:.1f} ms per batch, "
                f"{self.counts.get('failed_batches_counter', 0)} failed batch(es) retried one by one"
            )
        return "\n".join(lines)


def make_model_handler(cfg: InferConfig) -> HourglassModelHandler:
    """The handler for ``cfg``: the cheaper ``encode`` signature when only latents are written."""
    signature = "encode" if cfg.outputs == (LATENT,) else "serving_default"
    return HourglassModelHandler(cfg.model_dir, cfg.batch_size_min, cfg.batch_size_max, signature, cfg.trust_model)


def run_infer(
    cfg: InferConfig, beam_args: list[str] | None = None, model_handler: ModelHandler | None = None
) -> InferResult:
    """Runs the infer job (batch, or streaming with ``cfg.watch``).

    Args:
      cfg: the job's config.
      beam_args: Beam pipeline options.
      model_handler: defaults to :func:`make_model_handler` (tests pass their own).

    Raises:
      UserError: the model folder holds no export or fails its checks (``models.model_check``); a bad
        input spec; ``restored`` asked of a model trained with no corruption, ``denoised`` of one not
        trained to denoise, or an anomaly output of a
        model without calibration; an output folder that exists and is not an infer output, or that
        overlaps the input or the model folder.
      publishing.TargetBusy: another run is writing the same output (or partition).
      transforms.errors.DriftDetected: ``fail_on_drift`` and the published run's drift is detected.
    """
    target = publish.target_dir(cfg.output, cfg.run_id)
    if cfg.watch is None:
        publishing.check_apart(target, "--output", {"--input": cfg.input, "--model-dir": cfg.model_dir})
    handler = model_handler or make_model_handler(cfg)  # checks the model folder before anything of it runs
    info = ModelInfo.read(cfg.model_dir)
    lacking = {
        RESTORED: ("was trained with no corruption (model_info.json has no corruption)", "--corrupt"),
        DENOISED: ('was not trained to denoise (model_info.json has no "denoising": true)', "--noise"),
    }
    for name, (why, option) in lacking.items():
        if cfg.outputs is not None and name in cfg.outputs and name not in info.outputs:
            raise UserError(
                f"--outputs asks for {name!r} but the model in {cfg.model_dir} {why}; "
                f"drop it from --outputs or train with {option}"
            )
    asked = sorted(set(cfg.outputs or ()) & set(ANOMALY_OUTPUTS))
    if asked and info.calibration is None:
        raise UserError(
            f"--outputs asks for {', '.join(asked)} but the model in {cfg.model_dir} has no anomaly calibration "
            "(it was exported before calibration existed); train it again, or drop them from --outputs"
        )
    schema = parquet.prediction_schema(info, cfg.outputs or DEFAULT_OUTPUTS, cfg.pixels)
    options = PipelineOptions(beam_args or [])
    if cfg.watch is not None:
        if cfg.watch_mode == "streaming":
            counts, windows = run_streaming(cfg, options, handler, schema, info), ()
        else:
            counts, windows = run_watch(cfg, options, handler, schema, info)
        log.info("infer counters:\n%s", counters.format_counters(drift.without_drift_counters(counts)))
        return InferResult(cfg.output, counts, windows=tuple(windows))

    source = resolve_source(cfg.input, cfg.reader, cfg.limit)  # fails early on a bad input, before staging
    index = keys.KeysIndex.of_output(cfg.output, cfg.run_id, info.model_hash) if cfg.skip_existing else None
    started = time.time()
    with publishing.Publication(target, marker=publish.MANIFEST, stage=STAGE) as publication:
        staging = publication.staging
        write_config(cfg, staging, parquet.CONFIG_NAME)
        with beam.Pipeline(runner=local_runner(options), options=options) as p:
            build_infer_pipeline(p, cfg, source, handler, schema, staging, index, info.calibration)
        counts = counters.counters(p.result)
        counters.check_accounting(counts, STAGE, counts.get(encode.PREDICTION_ROWS, 0))
        fields = {"run_id": cfg.run_id, "input": cfg.input, **manifest.output_fields(cfg, info, schema)}
        fields.update(manifest.count_fields(counts, info.calibration))
        fields["metrics"]["distributions"] = counters.distributions(p.result)
        if index is not None:
            fields.update({"compared_with": list(index.partitions), **_incremental(counts)})
        fields["timing"] = manifest.timing(started, time.time())
        written = publish.write_manifest(staging, fields)
        publication.publish()
    log.info("infer counters:\n%s", counters.format_counters(drift.without_drift_counters(counts)))
    if cfg.fail_on_drift:
        drift.check(written["drift"], target)
    return InferResult(target, counts, written)


def _incremental(counts: dict[str, int]) -> dict[str, int]:
    return {
        keys.SKIPPED: counts.get(keys.SKIPPED, 0),
        "new": counts.get(keys.NEW, 0),
        "changed": counts.get(keys.CHANGED, 0),
    }
