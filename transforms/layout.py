"""The preprocess output's layout: split names, file names and counter names, in one place.

``hourglass preprocess`` writes, under its output folder DATA::

    train-*.tfrecord.gz, eval-*.tfrecord.gz   gzipped tf.train.Example of the transformed features
    transform_output/                          the tf.Transform graph and metadata
    rejected/rejected-*.jsonl                  dead letters
    stats.json                                 counts, rejects by reason, analyzer values

and its Beam counters (namespace ``hourglass``) are ``records_read``, ``<split>_records``,
``<stage>_rejected_<reason>``, ``skipped_<reason>`` (input files skipped unread) and
``records_skipped_label`` (records a reader's ``keep_labels`` left out, not counted as read). The
writer (``pipelines.preprocess``) and every reader (``models.input_pipeline``, ``pipelines.evaluate``,
the jobs' summaries) import these names from here. Pure Python, so it sits at the bottom of the imports.
"""

from __future__ import annotations

import os

TRAIN, EVAL = "train", "eval"
SPLITS = (TRAIN, EVAL)
TFRECORD_SUFFIX = ".tfrecord.gz"
TRANSFORM_DIR = "transform_output"
REJECTED_DIR = "rejected"
STATS_JSON = "stats.json"

RECORDS_READ = "records_read"
SKIPPED_LABEL = "records_skipped_label"
SKIPPED_EXISTING = "skipped_existing"  # infer --skip-existing: records already in another partition
# Files of an image folder listed for reading (each one record or one dead letter), counted when the
# whole folder is read (no --limit), so that a record lost before it is counted as read shows.
FILES_LISTED = "files_listed"


def split_prefix(data_dir: str, split: str) -> str:
    """Path prefix of one split's shards (what the writer is given)."""
    return os.path.join(data_dir, split)


def split_pattern(data_dir: str, split: str) -> str:
    """Glob of one split's TFRecord shards."""
    return f"{split_prefix(data_dir, split)}-*{TFRECORD_SUFFIX}"


def split_counter(split: str) -> str:
    """The counter of records written to ``split``."""
    return f"{split}_records"


def rejected_counter(stage: str, reason: str) -> str:
    """The counter of ``stage``'s dead letters of ``reason``."""
    return f"{stage}_rejected_{reason}"


def skipped_counter(reason: str) -> str:
    """The counter of input files skipped unread for ``reason`` (``hidden``, ``by_extension``, ...)."""
    return f"skipped_{reason}"


def skipped_by_reason(counts: dict[str, int]) -> dict[str, int]:
    """``{reason: n}`` of the input files skipped unread, from a job's counters."""
    prefix = skipped_counter("")
    return {name.removeprefix(prefix): n for name, n in counts.items() if name.startswith(prefix)}


def rejected_by_reason(counts: dict[str, int], stage: str) -> dict[str, int]:
    """``{reason: n}`` of ``stage``'s dead letters, from a job's counters."""
    prefix = rejected_counter(stage, "")
    return {name.removeprefix(prefix): n for name, n in counts.items() if name.startswith(prefix)}
