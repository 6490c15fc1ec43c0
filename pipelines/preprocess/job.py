"""The preprocess job: images -> validated -> ``PreprocessImages`` -> gzipped TFRecords + stats.json.

``build_preprocess_pipeline`` adds the source (``ReadValidImages``, read twice: see
``transform.PreprocessImages``; the second read trusts the first one's decode, see
``inputs.validation.RereadValidImages``) and the sinks; it writes, under ``output`` (the layout of
``transforms.layout``): ``train-*.tfrecord.gz``, ``eval-*.tfrecord.gz`` (``train-00000-of-00040.tfrecord.gz``
...: shards of at most ``SHARD_BYTES`` of records, so more for more data), ``transform_output/``
(``transform_fn/`` and ``transformed_metadata/``), ``rejected/rejected-*.jsonl``, ``stats.json``
and ``config.json``. ``run_preprocess`` settles the image shape first (``probe``), runs the
pipeline into a staging folder, checks the reject counts and only then publishes the folder in
place of ``output`` (``transforms.publishing``: a failed or killed run leaves the earlier output as
it was, a rerun replaces it whole); a run that fails on its rejects keeps its files as
``.OUTPUT.failed`` for the user to read its dead letters.
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import logging
import os
import tempfile

import apache_beam as beam
import tensorflow_transform.beam as tft_beam
from apache_beam import coders
from apache_beam.io import filebasedsink, tfrecordio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import counters
from pipelines.config import ImageLimits, PreprocessConfig, write_config
from pipelines.inputs.dead_letters import WriteRejected, first_errors
from pipelines.inputs.sources import Source, resolve_source
from pipelines.inputs.validation import ReadValidImages, RereadValidImages
from pipelines.preprocess.probe import resolve_image_spec
from pipelines.preprocess.transform import EncodeExamplesFn, PreprocessImages
from pipelines.runner import check_running_mode, local_runner
from transforms import publishing
from transforms.errors import UserError
from transforms.image_spec import ImageSpec
from transforms.layout import (
    EVAL,
    RECORDS_READ,
    REJECTED_DIR,
    SKIPPED_LABEL,
    SPLITS,
    STATS_JSON,
    TFRECORD_SUFFIX,
    TRAIN,
    TRANSFORM_DIR,
    rejected_by_reason,
    split_counter,
    split_prefix,
)

log = logging.getLogger(__name__)

STAGE = "preprocess"
# Serialized tf.Examples per TFRecord shard, before compression (28x28 grey digits: about 5,000 records).
SHARD_BYTES = 32 * 2**20
# zlib level of the shards: 1 compresses a 28x28 digit's record (6.4 KB of floats) in 15 us to 231
# bytes, zlib's default (6) in 37 us to 160 bytes; the writer's CPU matters more than the disk here.
GZIP_LEVEL = 1
# stats.json lists at most this many vocabulary entries (the file in transform_output has all).
_VOCABULARY_SHOWN = 1000


def make_stats(
    info: dict,
    analyzers: dict,
    label_counts: list[tuple[tuple[str, str], int]],
    rejected: list[tuple[str, int]],
    read: int,
    skipped: list[tuple[str, int]] = (),
) -> dict:
    """The ``stats.json`` document: records read (counted at the reader, apart from the splits and
    the rejects), counts per split and label, rejects by reason, input files skipped by reason, the
    image policy (``info``) and the analyzer values."""
    splits = {split: {"records": 0, "labels": {}} for split in SPLITS}
    for (split, label), n in sorted(label_counts):
        splits[split]["records"] += n
        splits[split]["labels"][label or "(unlabelled)"] = n
    by_reason = dict(sorted(rejected, key=lambda item: (-item[1], item[0])))
    written = sum(s["records"] for s in splits.values())
    # tf.Transform writes a placeholder entry into an empty vocabulary: keep the labels seen in train.
    vocabulary = [v for v in analyzers["label_vocabulary"] if v in splits[TRAIN]["labels"]]
    analyzers = {
        **analyzers,
        "label_vocabulary": vocabulary[:_VOCABULARY_SHOWN],
        "label_vocabulary_size": len(vocabulary),
    }
    return {
        **info,
        "records": {"read": read, "written": written, "rejected": sum(by_reason.values())},
        "splits": splits,
        "rejected_by_reason": by_reason,
        "skipped": dict(sorted(skipped)),
        "analyzers": analyzers,
    }


def channel_policy(spec: ImageSpec) -> str:
    """A sentence describing how images reach ``spec.channels``."""
    target = "grey (RGB by ITU-R BT.601 luma)" if spec.channels == 1 else "RGB (grey repeated)"
    return (
        f"{spec.channels} channel{'s' if spec.channels > 1 else ''}: {target}; alpha composited on "
        f"background {list(spec.background)}; palettes expanded; 16-bit scaled to [0, 1]"
    )


class ShardedTFRecordSink(tfrecordio._TFRecordSink):
    """Gzipped TFRecord shards of at most ``SHARD_BYTES`` of records each, so the shard count follows
    the input's size (``<prefix>-00000-of-000NN.tfrecord.gz``) and training reads them in parallel.

    Each writer starts a new file when full, with no shuffle to a fixed shard count: records stream
    from the transform to the files and memory stays flat in the input's size. (Beam's
    ``WriteToTFRecord`` takes no size limit: its sink is made here with one.)
    """

    def __init__(self, prefix: str):
        super().__init__(prefix, coders.BytesCoder(), TFRECORD_SUFFIX, 0, None, CompressionTypes.GZIP)
        self.max_bytes_per_shard = SHARD_BYTES

    def open(self, temp_path):
        """A gzip writer at ``GZIP_LEVEL`` (Beam's own writes zlib's default level), counting the bytes
        written into it for ``max_bytes_per_shard``."""
        raw = FileSystems.create(temp_path, self.mime_type, CompressionTypes.UNCOMPRESSED)
        self.byte_counter = filebasedsink._ByteCountingWriter(
            _GzipWriter(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL)
        )
        return self.byte_counter


class _GzipWriter(gzip.GzipFile):
    """A ``GzipFile`` that also closes the file it writes into (the sink closes only what it opened)."""

    def close(self):
        raw = self.fileobj
        super().close()
        if raw is not None:
            raw.close()


def build_preprocess_pipeline(
    p: beam.Pipeline, cfg: PreprocessConfig, source: Source, spec: ImageSpec, temp_dir: str
) -> dict:
    """Adds read -> validate -> preprocess -> write to ``p``; returns the PCollections by name."""
    limits = ImageLimits.of(cfg)
    # The first pass (validated, counted, dead-lettered) feeds the analyzers; the second (``again``,
    # after them) the transform, trusting the first pass's verdicts: one Pillow check and one decode proof per image.
    # Both passes move lists of records (a reader's batches), not records, from step to step.
    checked = p | "ReadValidImages" >> ReadValidImages(source, STAGE, limits, batched=True)
    again = checked | "RereadValidImages" >> RereadValidImages(source, STAGE, limits, batched=True)
    valid = checked["valid"] | "Progress" >> beam.ParDo(counters.LogProgressFn(STAGE, "validated", batched=True))
    out = {"records": again["valid"], "analyze": valid} | "PreprocessImages" >> PreprocessImages(
        spec, cfg.normalize, cfg.eval_percent, temp_dir
    )
    schema = out["metadata"].schema
    for split in SPLITS:
        _ = (
            out[split]
            | f"Encode{split.title()}" >> beam.ParDo(EncodeExamplesFn(schema))
            | f"Write{split.title()}" >> beam.io.Write(ShardedTFRecordSink(split_prefix(cfg.output, split)))
        )
    _ = (out["transform_fn"][0], out["metadata"]) | "WriteTransformFn" >> tft_beam.WriteTransformFn(
        os.path.join(cfg.output, TRANSFORM_DIR)
    )
    rejected = checked["rejected"]
    _ = rejected | "WriteRejected" >> WriteRejected(os.path.join(cfg.output, REJECTED_DIR, "rejected"))
    info = {
        "input": cfg.input,
        "format": source.format,
        "image": {
            "height": spec.height,
            "width": spec.width,
            "channels": spec.channels,
            "resize": spec.resize,
            "background": list(spec.background),
            "channel_policy": channel_policy(spec),
        },
        "normalize": cfg.normalize,
        "eval_percent": cfg.eval_percent,
    }
    reasons = (
        rejected | "Reasons" >> beam.Map(lambda r: r["reason"]) | "CountReasons" >> beam.combiners.Count.PerElement()
    )
    skipped = checked["skipped"] | "CountSkipped" >> beam.combiners.Count.PerElement()
    stats = (
        p
        | "StatsInfo" >> beam.Create([info])
        | "MakeStats"
        >> beam.Map(
            make_stats,
            beam.pvalue.AsSingleton(out["analyzers"]),
            beam.pvalue.AsList(out["label_counts"]),
            beam.pvalue.AsList(reasons),
            beam.pvalue.AsSingleton(checked["read"]),
            beam.pvalue.AsList(skipped),
        )
    )
    _ = (
        stats
        | "StatsToJson" >> beam.Map(lambda s: json.dumps(s, indent=2, sort_keys=True))
        | "WriteStats"
        >> beam.io.WriteToText(os.path.join(cfg.output, STATS_JSON), shard_name_template="", num_shards=1)
    )
    return {**out, "rejected": rejected, "stats": stats}


@dataclasses.dataclass(frozen=True)
class PreprocessResult:
    """What a preprocess run wrote and counted."""

    output: str
    spec: ImageSpec
    counts: dict[str, int]

    @property
    def rejected(self) -> int:
        return sum(rejected_by_reason(self.counts, STAGE).values())

    def summary(self) -> str:
        train, eval_ = (self.counts.get(split_counter(split), 0) for split in (TRAIN, EVAL))
        skipped = self.counts.get(SKIPPED_LABEL, 0)
        kept = f" ({skipped} skipped by --keep-labels)" if skipped else ""
        return (
            f"wrote {train} train + {eval_} eval records, {self.rejected} rejected{kept}"
            f"{counters.format_skipped(self.counts)} -> {self.output}"
        )

    @property
    def stats(self) -> dict:
        with FileSystems.open(os.path.join(self.output, STATS_JSON)) as f:
            return json.loads(f.read())


def run_preprocess(cfg: PreprocessConfig, beam_args: list[str] | None = None) -> PreprocessResult:
    """Runs the preprocess job and checks its counts.

    Raises:
      UserError: the DirectRunner's worker threads (``runner.check_running_mode``), bad input spec,
        images of several shapes without ``image_size``, an empty input, or more rejects than
        ``max_reject_fraction`` (the message names the worst reasons).
    """
    options = PipelineOptions(beam_args or [])
    check_running_mode(options)
    source = resolve_source(cfg.input, cfg.reader, cfg.limit)  # fails early on a bad input
    publishing.check_apart(cfg.output, "--output", {"--input": cfg.input})
    with publishing.Publication(cfg.output, marker=STATS_JSON, stage=STAGE) as publication:
        spec = resolve_image_spec(cfg, source, options)
        staged = dataclasses.replace(cfg, output=publication.staging)
        write_config(cfg, staged.output)
        log.info("preprocessing %s as %dx%dx%d images into %s", cfg.input, *spec.shape, cfg.output)
        with tempfile.TemporaryDirectory(prefix="hourglass-tft-") as local_temp:
            temp_dir = options.get_all_options().get("temp_location") or local_temp
            with beam.Pipeline(runner=local_runner(options), options=options) as p:
                build_preprocess_pipeline(p, staged, source, spec, temp_dir)
            counts = counters.counters(p.result)
        log.info("preprocess counters:\n%s", counters.format_counters(counts))
        rejected = os.path.join(publication.staging, REJECTED_DIR)
        examples = first_errors(rejected) if sum(rejected_by_reason(counts, STAGE).values()) else []
        try:
            check_rejects(counts, cfg.max_reject_fraction, cfg.input, examples)
        except UserError as error:
            kept = publication.keep_failed()
            raise UserError(
                f"{error}. The failed run's files are in {kept} (its dead letters in {kept}/{REJECTED_DIR}/); "
                f"{cfg.output} is left as it was"
            ) from None
        counters.check_accounting(counts, STAGE, sum(counts.get(split_counter(split), 0) for split in SPLITS))
        publication.publish()
    return PreprocessResult(cfg.output, spec, counts)


def check_rejects(counts: dict[str, int], max_fraction: float, source: str, examples: list[str] = ()) -> None:
    """Fails on an empty input, or when rejects exceed ``max_fraction`` of the records read;
    ``examples`` (``"<id>: <error>"`` of a few dead letters) give the records' own reasons.

    Raises:
      UserError: naming the input, the counts and the worst reasons.
    """
    read = counts.get(RECORDS_READ, 0)
    if read == 0 and counts.get(SKIPPED_LABEL):
        raise UserError(
            f"all {counts[SKIPPED_LABEL]} records of {source!r} were skipped by --keep-labels; "
            "pass labels the input holds (stats.json of a run without it lists them)"
        )
    if read == 0:
        skipped = counters.format_skipped(counts)
        raise UserError(f"input {source!r} holds no records{skipped}; check the path or pattern")
    reasons = collections.Counter(rejected_by_reason(counts, STAGE))
    rejected = sum(reasons.values())
    worst = ", ".join(f"{reason} ({n})" for reason, n in reasons.most_common(3))
    first = f" First: {'; '.join(examples)}." if examples else ""
    if rejected == read:
        raise UserError(f"none of the {read} records of {source!r} could be used; reasons: {worst}.{first}")
    if rejected / read > max_fraction:
        raise UserError(
            f"{rejected} of {read} records of {source!r} were rejected, over --max-reject-fraction {max_fraction}; "
            f"worst reasons: {worst}.{first} Fix the input or raise the limit"
        )
