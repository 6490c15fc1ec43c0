"""Incremental scheduled runs (``--skip-existing``): each partition's keys index, and the lookup of a
new run's records in the other partitions.

A record's key is its id, a hash of its bytes as read (before validation) and the model's hash.
Every ``--run-id`` partition holds its keys index, ``_keys/keys-*.parquet``: one row per record
written, ``id`` (string), ``id_hash`` and ``content_hash`` (uint64: the first 8 bytes of BLAKE2b of
the id and of the bytes), the model hash in the file metadata (``hourglass.model_hash``). Records
dead-lettered (by validation or by the model) are not in it, so a later run tries them again.

With ``--skip-existing``, :class:`KeysIndex` finds the other partitions written with the same model
(their manifests say so), and :class:`SkipExistingFn` loads only their two hash columns (16 bytes a
row: never the codes) into sorted arrays, keeping for each id the entry of the partition published
last. A record whose id is in none of them is ``new``, one whose bytes differ is ``changed``, both
go on to be encoded; the others are counted as ``skipped_existing`` and dropped before validation.
A new model finds no partition of its own, so every record is new.

Element contract: :func:`add_content_hash` takes a raw record (see ``inputs.formats.base``) and
adds ``content_hash``; :class:`SkipExistingFn` passes on the records to encode; :class:`WriteKeys`
takes the valid records and the run's dead letters and writes the index.
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines.counters import NAMESPACE
from pipelines.infer import publish
from pipelines.infer.parquet import META_PREFIX, WriteParquet
from transforms import features
from transforms.layout import SKIPPED_EXISTING

KEYS_DIR = "_keys"
ID_HASH, CONTENT_HASH = "id_hash", "content_hash"
SKIPPED, NEW, CHANGED = SKIPPED_EXISTING, "new_records", "changed_records"
_INFERENCE_FAILED = "inference_failed"


def keys_schema(model_hash: str) -> pa.Schema:
    return pa.schema(
        [pa.field(features.ID, pa.string()), pa.field(ID_HASH, pa.uint64()), pa.field(CONTENT_HASH, pa.uint64())],
        metadata={META_PREFIX + "model_hash": model_hash},
    )


def hash64(data: bytes) -> int:
    """The first 8 bytes of BLAKE2b of ``data``, as an unsigned integer."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def add_content_hash(record: dict) -> dict:
    """A raw record with ``content_hash``: the hash of its bytes as read."""
    return {**record, CONTENT_HASH: hash64(record[features.IMAGE])}


@dataclasses.dataclass(frozen=True)
class KeysIndex:
    """The keys index files of the partitions to compare with, oldest published first."""

    partitions: tuple[str, ...]
    files: tuple[str, ...]

    @classmethod
    def of_output(cls, output: str, run_id: str, model_hash: str) -> KeysIndex:
        """The other ``run_id=`` partitions of ``output`` written with the model ``model_hash``."""
        found = []
        names = tf.io.gfile.listdir(output) if tf.io.gfile.isdir(output) else []
        for name in (n.rstrip("/") for n in names):
            folder = posixpath.join(output, name)
            if not name.startswith(f"{publish.RUN_ID}=") or name == f"{publish.RUN_ID}={run_id}":
                continue
            if not tf.io.gfile.exists(posixpath.join(folder, publish.MANIFEST)):
                continue
            written = publish.read_manifest(folder)
            if written.get("model", {}).get("model_hash") == model_hash:
                found.append((written.get("timing", {}).get("finished", ""), name, folder))
        found.sort()
        files = [f for _, _, folder in found for f in sorted(tf.io.gfile.glob(f"{folder}/{KEYS_DIR}/*.parquet"))]
        return cls(tuple(name for _, name, _ in found), tuple(files))

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """``(id hashes sorted, their content hashes)``, the last file's entry kept for an id in several."""
        if not self.files:
            return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
        tables = []
        for order, path in enumerate(self.files):
            with FileSystems.open(path) as f:
                table = pq.ParquetFile(f).read(columns=[ID_HASH, CONTENT_HASH])
            tables.append(table.append_column("order", pa.array(np.full(table.num_rows, order, np.int64))))
        table = pa.concat_tables(tables)
        ids, contents = table[ID_HASH].to_numpy(), table[CONTENT_HASH].to_numpy()
        by_id = np.lexsort((table["order"].to_numpy(), ids))  # by id, then oldest -> newest
        ids, contents = ids[by_id], contents[by_id]
        last = np.append(ids[1:] != ids[:-1], True)  # the newest entry of each id
        return ids[last], contents[last]


class SkipExistingFn(beam.DoFn):
    """Records with ``content_hash`` -> those not already encoded (see the module docstring)."""

    def __init__(self, index: KeysIndex):
        self._index = index
        self._counters = {name: Metrics.counter(NAMESPACE, name) for name in (SKIPPED, NEW, CHANGED)}

    def setup(self):
        self._ids, self._contents = self._index.load()

    def process(self, record: dict):
        id_hash = np.uint64(hash64(record[features.ID].encode()))
        at = int(np.searchsorted(self._ids, id_hash))
        if at < len(self._ids) and self._ids[at] == id_hash:
            if self._contents[at] == record[CONTENT_HASH]:
                self._counters[SKIPPED].inc()
                return
            self._counters[CHANGED].inc()
        else:
            self._counters[NEW].inc()
        yield record


class WriteKeys(beam.PTransform):
    """``(valid records, dead letters)`` -> ``FOLDER/_keys/keys-*.parquet``: the keys of the records
    written (valid and not failed by the model)."""

    def __init__(self, folder: str, model_hash: str):
        super().__init__()
        self._prefix = posixpath.join(folder, KEYS_DIR, "keys")
        self._schema = keys_schema(model_hash)

    def expand(self, inputs):
        valid, rejected = inputs
        keys = valid | "KeyById" >> beam.Map(lambda r: (r[features.ID], r[CONTENT_HASH]))
        failed = (
            rejected
            | "FailedByModel" >> beam.Filter(lambda r: r["reason"] == _INFERENCE_FAILED)
            | "FailedId" >> beam.Map(lambda r: (r[features.ID], None))
        )
        schema = self._schema
        return (
            {"keys": keys, "failed": failed}
            | "JoinFailed" >> beam.CoGroupByKey()
            | "Written" >> beam.FlatMap(lambda kv: [] if kv[1]["failed"] else [(kv[0], kv[1]["keys"][0])])
            | "Batch" >> beam.BatchElements(min_batch_size=1024, max_batch_size=65536)
            | "ToArrow" >> beam.Map(_keys_table, schema)
            | "WriteKeys" >> WriteParquet(self._prefix, schema, "snappy")
        )


def _keys_table(batch: list[tuple[str, int]], schema: pa.Schema) -> pa.Table:
    ids = [record_id for record_id, _ in batch]
    id_hashes = [hash64(record_id.encode()) for record_id in ids]
    contents = [content for _, content in batch]
    return pa.Table.from_arrays(
        [pa.array(ids), pa.array(id_hashes, pa.uint64()), pa.array(contents, pa.uint64())], schema=schema
    )
