"""Dead letters: records that could not be used, with the reason, written as JSON lines.

Element contract: a dict ``id``, ``source``, ``stage`` (``preprocess``, ``infer`` or ``probe``),
``reason`` (a short stable code such as ``not_an_image``) and ``error`` (the error text).
"""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines.counters import NAMESPACE
from pipelines.inputs.formats.base import SOURCE, Unreadable
from transforms import features
from transforms.layout import rejected_counter


def rejection(record: dict, stage: str, reason: str, error: str) -> dict:
    """The dead-letter record for ``record``."""
    return {
        features.ID: record.get(features.ID, ""),
        SOURCE: record.get(SOURCE, ""),
        "stage": stage,
        "reason": reason,
        "error": error,
    }


def first_errors(folder: str, n: int = 3) -> list[str]:
    """``"<id>: <error>"`` of the first ``n`` dead letters in ``folder/*.jsonl`` (read line by line,
    however many there are), for error messages that give the records' own reasons."""
    found = []
    for metadata in sorted(FileSystems.match([FileSystems.join(folder, "*.jsonl")])[0].metadata_list, key=_path):
        with FileSystems.open(metadata.path) as f:
            while len(found) < n and (line := f.readline()):
                dead = json.loads(line)
                found.append(f"{dead[features.ID]}: {dead['error']}")
    return found


def _path(metadata) -> str:
    return metadata.path


def from_unreadable(item: Unreadable, stage: str) -> dict:
    """The dead-letter record for what a reader could not read."""
    return rejection({features.ID: item.id, SOURCE: item.source}, stage, item.reason, item.error)


class CountRejectedFn(beam.DoFn):
    """Counts dead letters into ``<stage>_rejected_<reason>`` counters; passes them on."""

    def process(self, rejected):
        Metrics.counter(NAMESPACE, rejected_counter(rejected["stage"], rejected["reason"])).inc()
        yield rejected


class WriteRejected(beam.PTransform):
    """Writes dead-letter records to ``PREFIX-*.jsonl`` (always at least one, possibly empty, file)."""

    def __init__(self, prefix: str):
        super().__init__()
        self._prefix = prefix

    def expand(self, rejected):
        return (
            rejected
            | "ToJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
            | "WriteJsonLines" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl")
        )
