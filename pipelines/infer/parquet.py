"""The predictions' Parquet: the schema (explicit, documented in the README), batch conversion, the sink.

One row per input image:
  ``id`` string, ``source`` string, ``label`` string (null when unknown), then the selected outputs:
  ``latent`` list<float32> (latent_dim values), ``reconstruction``, ``restored`` and ``denoised``
  (the image, row-major HWC: list<float32> in [0, 1] with ``pixels="float"``, PNG bytes with
  ``pixels="png"``; ``restored`` is null unless the model was trained with a corruption
  (``--corrupt``), ``denoised``, its older name, written only when ``--outputs`` names it, null
  unless the model was trained to denoise), ``reconstruction_error``
  float32 (MSE against the model's own [0, 1] input), ``anomaly_error`` float32 (the scored error
  the model's calibration names: the MSE of the blurred images), ``anomaly_score`` float32 (its
  percentile rank in the model's calibration, 0 to 1) and ``is_anomaly`` bool (it is above the
  calibrated threshold); the three null for a model exported without calibration.
File key-value metadata: ``hourglass.image_shape`` ("H,W,C"), ``hourglass.model_kind``,
``hourglass.latent_dim``, ``hourglass.model_hash``, ``hourglass.denoising`` ("true"/"false"),
``hourglass.corruption`` (the corruption's spec, ``""`` for none),
``hourglass.pixels`` ("float"/"png") and, for a calibrated model, ``hourglass.anomaly_threshold``,
``hourglass.anomaly_fpr`` and ``hourglass.anomaly_method``.

:func:`record_batch` turns one batch of model outputs (numpy arrays, one row per image) into an
Arrow ``RecordBatch`` of that schema without going through per-row Python objects.
:class:`WriteParquet` writes ``pa.Table`` elements as row groups of ``PREFIX-*.parquet`` files, and
:func:`write_predictions` adds the infer job's sinks: the tables and the dead letters under a folder
(``predictions-*.parquet``, rolled over at ``MAX_FILE_BYTES``, and ``_rejected/rejected-*.jsonl``;
names other than the Parquet files start with ``_``, so pandas, pyarrow and Spark read the folder).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from models.model_info import (
    ANOMALY_ERROR,
    ANOMALY_SCORE,
    DEFAULT_OUTPUTS,
    DENOISED,
    IMAGE_OUTPUTS,
    IS_ANOMALY,
    LATENT,
    RECONSTRUCTION,
    RECONSTRUCTION_ERROR,
    RESTORED,
    ModelInfo,
)
from pipelines.config import PIXEL_FORMATS, check_outputs
from pipelines.inputs.dead_letters import WriteRejected
from pipelines.inputs.images import encode_png
from transforms.errors import UserError
from transforms.layout import REJECTED_DIR

ID, SOURCE, LABEL = "id", "source", "label"
KEY_COLUMNS = (ID, SOURCE, LABEL)
SCALAR_COLUMNS = {
    RECONSTRUCTION_ERROR: np.float32,
    ANOMALY_ERROR: np.float32,
    ANOMALY_SCORE: np.float32,
    IS_ANOMALY: np.bool_,
}

META_PREFIX = "hourglass."
PREDICTIONS = "predictions"
# Names starting with "_" are skipped by pandas, pyarrow datasets and Spark reading the folder.
REJECTED = "_" + REJECTED_DIR
CONFIG_NAME = "_config.json"
# A file is closed once this much is written; with one more row group it stays under 512 MB.
MAX_FILE_BYTES = 448 * 1024 * 1024


def prediction_schema(
    model_info: ModelInfo, outputs: Sequence[str] = DEFAULT_OUTPUTS, pixels: str = "float"
) -> pa.Schema:
    """The Arrow schema of the predictions, with the model's identity as metadata.

    Args:
      model_info: the export's ``model_info.json``.
      outputs: the output columns to write (the key columns are always written).
      pixels: ``float`` or ``png``, the type of the image columns.

    Raises:
      UserError: bad outputs or pixels.
    """
    if pixels not in PIXEL_FORMATS:
        raise UserError(f"pixels must be one of {', '.join(PIXEL_FORMATS)}, got {pixels!r}")
    image_type = pa.list_(pa.float32()) if pixels == "float" else pa.binary()
    types = {
        LATENT: (pa.list_(pa.float32()), False),
        RECONSTRUCTION: (image_type, False),
        RESTORED: (image_type, True),
        DENOISED: (image_type, True),
        RECONSTRUCTION_ERROR: (pa.float32(), False),
        ANOMALY_ERROR: (pa.float32(), True),
        ANOMALY_SCORE: (pa.float32(), True),
        IS_ANOMALY: (pa.bool_(), True),
    }
    fields = [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(SOURCE, pa.string(), nullable=False),
        pa.field(LABEL, pa.string(), nullable=True),
    ]
    fields += [pa.field(name, *types[name]) for name in check_outputs(outputs)]
    metadata = {
        META_PREFIX + "image_shape": ",".join(str(d) for d in model_info.image_shape),
        META_PREFIX + "model_kind": model_info.kind,
        META_PREFIX + "latent_dim": str(model_info.latent_dim),
        META_PREFIX + "model_hash": model_info.model_hash,
        META_PREFIX + "denoising": str(model_info.denoising).lower(),
        META_PREFIX + "corruption": model_info.restores or "",
        META_PREFIX + "pixels": pixels,
    }
    if model_info.calibration is not None:
        metadata[META_PREFIX + "anomaly_threshold"] = repr(model_info.calibration.threshold)
        metadata[META_PREFIX + "anomaly_fpr"] = repr(model_info.calibration.fpr)
        metadata[META_PREFIX + "anomaly_method"] = model_info.calibration.method
    return pa.schema(fields, metadata=metadata)


def record_batch(schema: pa.Schema, keys: dict[str, list], outputs: dict[str, np.ndarray]) -> pa.RecordBatch:
    """One batch of predictions as a ``RecordBatch`` of ``schema``.

    Args:
      schema: from :func:`prediction_schema`.
      keys: ``id``, ``source`` and ``label`` lists (label ``None`` when unknown).
      outputs: model outputs stacked over the batch (``latent`` (n, d), ``reconstruction``,
        ``restored`` and ``denoised`` (n, H, W, C) in [0, 1], ``reconstruction_error``,
        ``anomaly_error``, ``anomaly_score`` and ``is_anomaly`` (n,)); ``restored``, ``denoised``
        and the anomaly outputs may be missing (a model trained with no corruption, or not
        calibrated), which writes nulls.
    """
    rows = len(keys[ID])
    png = schema.metadata[(META_PREFIX + "pixels").encode()] == b"png"
    arrays = []
    for field in schema:
        if field.name in KEY_COLUMNS:
            arrays.append(pa.array(keys[field.name], field.type))
        elif field.name not in outputs:
            arrays.append(pa.nulls(rows, field.type))
        elif field.name in SCALAR_COLUMNS:
            values = np.asarray(outputs[field.name], SCALAR_COLUMNS[field.name]).reshape(rows)
            arrays.append(pa.array(values, field.type))
        elif field.name in IMAGE_OUTPUTS and png:
            arrays.append(pa.array([encode_png(image) for image in to_uint8(outputs[field.name])], pa.binary()))
        else:
            arrays.append(_float_lists(outputs[field.name], rows))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 (rounded), the quantization of ``pixels="png"``."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def _float_lists(values: np.ndarray, rows: int) -> pa.ListArray:
    flat = np.ascontiguousarray(values, np.float32).reshape(rows, -1)
    width = flat.shape[1]
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.reshape(-1)))


class ParquetTableSink(filebasedsink.FileBasedSink):
    """A Beam file sink of ``pa.Table`` elements, each written as one row group.

    Args:
      prefix: path prefix of the files.
      schema: every table's schema.
      compression: Parquet codec.
      max_file_bytes: roll over to a new file once this much is written (None: one file per
        bundle or window).
      shard_name_template: Beam's shard name template (windowed names for streaming).
      skip_if_empty: write no file for no tables (else one file with the schema and no rows).
    """

    def __init__(
        self,
        prefix: str,
        schema: pa.Schema,
        compression: str,
        max_file_bytes: int | None,
        shard_name_template: str | None = None,
        skip_if_empty: bool = False,
    ):
        super().__init__(
            prefix,
            coder=None,
            file_name_suffix=".parquet",
            shard_name_template=shard_name_template,
            mime_type="application/x-parquet",
            compression_type=CompressionTypes.UNCOMPRESSED,  # Parquet compresses its pages itself
            max_bytes_per_shard=max_file_bytes,
            skip_if_empty=skip_if_empty,
        )
        self._schema = schema
        self._compression = compression

    def open(self, temp_path):
        handle = FileSystems.create(temp_path, self.mime_type, self.compression_type)
        # Beam's writer rolls over to a new file when ``byte_counter.bytes_written`` reaches
        # ``max_bytes_per_shard``; its own counting wrapper is not a file pyarrow can write to.
        self.byte_counter = _BytesWritten(handle)
        return handle, pq.ParquetWriter(handle, self._schema, compression=self._compression)

    def write_record(self, file_handle, value: pa.Table):
        file_handle[1].write_table(value, row_group_size=max(value.num_rows, 1))

    def close(self, file_handle):
        handle, writer = file_handle
        writer.close()
        handle.close()


class _BytesWritten:
    def __init__(self, handle):
        self._handle = handle

    @property
    def bytes_written(self) -> int:
        return self._handle.tell()


class WriteParquet(beam.PTransform):
    """``pa.Table`` elements -> ``PREFIX-*.parquet`` (windowed names for unbounded input)."""

    def __init__(
        self,
        prefix: str,
        schema: pa.Schema,
        compression: str,
        max_file_bytes: int | None = MAX_FILE_BYTES,
        skip_if_empty: bool = False,
    ):
        super().__init__()
        self._args = prefix, schema, compression, max_file_bytes, skip_if_empty

    def expand(self, tables):
        prefix, schema, compression, max_file_bytes, skip_if_empty = self._args
        if tables.is_bounded:
            sink = ParquetTableSink(prefix, schema, compression, max_file_bytes, skip_if_empty=skip_if_empty)
        else:  # several windows' writers are open at once: no per-file byte budget
            sink = ParquetTableSink(prefix, schema, compression, None, "-V-SSSSS-of-NNNNN", skip_if_empty)
        return tables | "Write" >> beam.io.Write(sink)


def write_predictions(encoded: dict, invalid, output: str, schema: pa.Schema, compression: str) -> dict:
    """Adds the sinks of ``EncodeImages``' outputs and the invalid records' dead letters under
    ``output``; returns ``encoded`` with every dead letter under ``rejected``."""
    prefix = os.path.join(output, PREDICTIONS)
    _ = encoded["tables"] | "WriteParquet" >> WriteParquet(prefix, schema, compression)
    retried = WriteParquet(prefix + "-retried", schema, compression, skip_if_empty=True)
    _ = encoded["retried"] | "WriteRetriedParquet" >> retried
    rejected = (invalid, encoded["rejected"]) | "MergeRejected" >> beam.Flatten()
    _ = rejected | "WriteRejected" >> WriteRejected(os.path.join(output, REJECTED, "rejected"))
    return {**encoded, "rejected": rejected}
