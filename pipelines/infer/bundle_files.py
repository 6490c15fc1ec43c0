"""Light sinks for an output that its caller publishes as a whole: one file per Beam bundle, no finalization.

Beam's file sinks (``parquet.WriteParquet``, ``WriteToText``) write temporary files and add
stages that rename them when the job ends; in a small bounded job those stages cost more than the
work (the micro-batch watch's batches, see ``watch``). These DoFns write each bundle's elements
straight to ``PREFIX-<random>.parquet`` (``pa.Table`` elements, a row group each, a new file after
``parquet.MAX_FILE_BYTES``) or ``PREFIX-<random>.jsonl`` (dead-letter dicts, one JSON line each), and
write nothing for an empty bundle. A bundle retried by a runner would leave its first file behind,
so they are used only on the local runner, into a private folder whose files the caller moves
into place after the job has succeeded.
"""

from __future__ import annotations

import json
import uuid

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.infer import parquet


class _BundleFileFn(beam.DoFn):
    suffix = ""

    def __init__(self, prefix: str):
        self._prefix = prefix

    def start_bundle(self):
        self._handle = None

    def _file(self):
        if self._handle is None:
            tf.io.gfile.makedirs(self._prefix.rsplit("/", 1)[0])
            path = f"{self._prefix}-{uuid.uuid4().hex[:12]}{self.suffix}"
            self._handle = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
            self._opened(self._handle)
        return self._handle

    def _opened(self, handle) -> None:
        """Called once a new file is open."""

    def _close(self) -> None:
        self._handle.close()

    def finish_bundle(self):
        if self._handle is not None:
            self._close()
            self._handle = None


class WriteTablesFn(_BundleFileFn):
    """``pa.Table`` elements of ``schema`` -> ``PREFIX-<random>.parquet`` files, a row group each."""

    suffix = ".parquet"

    def __init__(self, prefix: str, schema: pa.Schema, compression: str):
        super().__init__(prefix)
        self._schema, self._compression = schema, compression

    def _opened(self, handle) -> None:
        self._writer = pq.ParquetWriter(handle, self._schema, compression=self._compression)

    def process(self, table: pa.Table):
        handle = self._file()
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        if handle.tell() >= parquet.MAX_FILE_BYTES:
            self.finish_bundle()

    def _close(self) -> None:
        self._writer.close()
        super()._close()


class WriteLinesFn(_BundleFileFn):
    """Dicts -> ``PREFIX-<random>.jsonl``, one JSON line each (keys sorted)."""

    suffix = ".jsonl"

    def process(self, element: dict):
        self._file().write((json.dumps(element, sort_keys=True) + "\n").encode())
