"""Beam counters read back after a run (for summaries and the record accounting), and progress logged
while it runs.

:class:`LogProgressFn` passes every element on unchanged and logs ``STAGE: first record WHAT`` (where
the start-up ends), then ``STAGE: N records WHAT so far`` at most every ``every_seconds`` (per worker:
Beam's counters are read only when the pipeline ends).
"""

from __future__ import annotations

import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

from transforms.layout import (
    FILES_LISTED,
    RECORDS_READ,
    SKIPPED_EXISTING,
    SKIPPED_LABEL,
    rejected_by_reason,
    skipped_by_reason,
)

NAMESPACE = "hourglass"
PROGRESS_SECONDS = 30.0

log = logging.getLogger(__name__)


class LogProgressFn(beam.DoFn):
    """element -> the same element; logs the first one (``"<stage>: first record <what>"``, the end of
    the start-up), then how many this worker has seen, at most every ``every_seconds`` (``batched``:
    the elements are lists of records, which count by their length)."""

    def __init__(self, stage: str, what: str, every_seconds: float = PROGRESS_SECONDS, batched: bool = False):
        self._stage, self._what, self._every, self._batched = stage, what, every_seconds, batched

    def setup(self):
        self._seen, self._logged = 0, None

    def process(self, element):
        self._seen += len(element) if self._batched else 1
        now = time.monotonic()
        if self._logged is None:  # the clock starts with the first element, not with the worker
            self._logged = now
            log.info("%s: first record %s", self._stage, self._what)
        if now - self._logged >= self._every:
            self._logged = now
            log.info("%s: %d records %s so far (this worker)", self._stage, self._seen, self._what)
        yield element


class AccountingError(RuntimeError):
    """Records were lost or counted twice between the reader and the sinks: a bug, not an input problem."""


def check_accounting(counts: dict[str, int], stage: str, written: int) -> None:
    """Checks that every record read was written or rejected (infer's ``--skip-existing`` leaves
    records out before they are counted as read, and counts them apart).

    ``records_read`` is counted where records leave the reader, ``written`` at the sink and the
    rejects at the dead-letter sink, so a record lost (or doubled) on the way shows here. An image
    folder read whole also counts its ``files_listed``: each is read (one record or one dead letter)
    or left out by ``--keep-labels`` or ``--skip-existing``, so a file lost before it is read shows too.

    Raises:
      AccountingError: the counts do not add up.
    """
    read, rejected = counts.get(RECORDS_READ, 0), sum(rejected_by_reason(counts, stage).values())
    if FILES_LISTED in counts:
        left_out = counts.get(SKIPPED_LABEL, 0) + counts.get(SKIPPED_EXISTING, 0)
        if counts[FILES_LISTED] != read + left_out:
            raise AccountingError(
                f"{stage}: {counts[FILES_LISTED]} files listed but {read} read + {left_out} left out "
                f"(--keep-labels, --skip-existing) = {read + left_out}; files were lost or read twice "
                f"between the listing and the reader (counters: {dict(sorted(counts.items()))})"
            )
    if read != written + rejected:
        raise AccountingError(
            f"{stage}: {read} records read but {written} written + {rejected} rejected "
            f"= {written + rejected}; records were lost or duplicated "
            f"(counters: {dict(sorted(counts.items()))})"
        )


def format_skipped(counts: dict[str, int]) -> str:
    """``", 3 files skipped (by_extension 2, hidden 1)"`` for a summary, or ``""`` when none were."""
    skipped = skipped_by_reason(counts)
    if not skipped:
        return ""
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(skipped.items()))
    return f", {sum(skipped.values())} files skipped ({reasons})"


def counters(result) -> dict[str, int]:
    """All ``hourglass`` counters of a finished pipeline, by name (committed values)."""
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + counter.committed
    return totals


def distributions(result) -> dict[str, dict[str, float]]:
    """All ``hourglass`` distributions (e.g. RunInference's batch sizes and latencies), by name:
    ``count``, ``sum``, ``min``, ``max`` and ``mean`` of the committed values."""
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    merged: dict[str, tuple] = {}
    for dist in query["distributions"]:
        value = dist.committed
        if value is None or value.count == 0:
            continue
        count, total, low, high = merged.get(dist.key.metric.name, (0, 0, value.min, value.max))
        merged[dist.key.metric.name] = (
            count + value.count,
            total + value.sum,
            min(low, value.min),
            max(high, value.max),
        )
    return {
        name: {"count": count, "sum": total, "min": low, "max": high, "mean": total / count}
        for name, (count, total, low, high) in merged.items()
    }


def format_counters(values: dict[str, int]) -> str:
    """One ``name: value`` line per counter, sorted, for logs."""
    return "\n".join(f"  {name}: {value}" for name, value in sorted(values.items()))


def count(name: str) -> beam.PTransform:
    """A pass-through step that counts its elements into the ``hourglass`` counter ``name``."""
    return beam.Map(_increment, Metrics.counter(NAMESPACE, name))


def _increment(element, counter):
    counter.inc()
    return element
