"""The fields of an infer output's ``_manifest.json`` that batch runs and watch windows share.

A batch run (``job``) and each published window of a watch (``watch``) write one manifest (see
``publish``, which adds ``rows`` and ``files`` from the Parquet footers). Both carry
:func:`output_fields` (the model's identity, the columns, pixels and compression),
:func:`count_fields` (records read, rejects and skipped files by reason, the Beam counters, and the
``drift`` section computed from them against the model's calibration, see ``drift``) and
:func:`timing` (UTC start and end, seconds).
"""

from __future__ import annotations

import datetime

import pyarrow as pa

from models.model_info import Calibration, ModelInfo
from pipelines.config import InferConfig
from pipelines.infer import publish
from pipelines.infer.drift import drift_report
from pipelines.infer.encode import STAGE
from transforms.layout import RECORDS_READ, rejected_by_reason, skipped_by_reason


def output_fields(cfg: InferConfig, info: ModelInfo, schema: pa.Schema) -> dict:
    """What was written and with which model."""
    return {
        "model": publish.model_identity(info, cfg.model_dir),
        "columns": schema.names,
        "pixels": cfg.pixels,
        "compression": cfg.compression,
    }


def count_fields(counts: dict[str, int], calibration: Calibration | None) -> dict:
    """``records_read``, ``rejected`` (by reason), ``skipped`` (input files skipped unread, by
    reason), ``drift`` and the ``hourglass`` counters."""
    return {
        "records_read": counts.get(RECORDS_READ, 0),
        "rejected": rejected_by_reason(counts, STAGE),
        "skipped": skipped_by_reason(counts),
        "drift": drift_report(counts, calibration),
        "metrics": {"counters": dict(sorted(counts.items()))},
    }


def iso(seconds: float) -> str:
    """A POSIX time as UTC ISO 8601 to the second (``2026-12-01T20:54:00+00:00``)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")


def timing(started: float, finished: float) -> dict:
    """``started``, ``finished`` (UTC) and ``seconds``."""
    return {"started": iso(started), "finished": iso(finished), "seconds": round(finished - started, 3)}


def add_counts(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """Two sets of counters added name by name."""
    return {name: total.get(name, 0) + more.get(name, 0) for name in total.keys() | more.keys()}
