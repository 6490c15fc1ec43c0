"""The predictions' Parquet schema (explicit, documented in the README) and batch conversion to it.

One row per input image:
  ``id`` string, ``source`` string, ``label`` string (null when unknown), then the selected outputs:
  ``latent`` list<float32> (latent_dim values), ``reconstruction`` and ``denoised`` (the image,
  row-major HWC: list<float32> in [0, 1] with ``pixels="float"``, PNG bytes with ``pixels="png"``;
  ``denoised`` is null unless the model was trained to denoise) and ``reconstruction_error``
  float32 (MSE against the model's own [0, 1] input).
File key-value metadata: ``hourglass.image_shape`` ("H,W,C"), ``hourglass.model_kind``,
``hourglass.latent_dim``, ``hourglass.model_hash``, ``hourglass.denoising`` ("true"/"false"),
``hourglass.pixels`` ("float"/"png").

:func:`record_batch` turns one batch of model outputs (numpy arrays, one row per image) into an
Arrow ``RecordBatch`` of that schema without going through per-row Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from pipelines.images import encode_png

ID, SOURCE, LABEL = "id", "source", "label"
LATENT, RECONSTRUCTION, DENOISED = "latent", "reconstruction", "denoised"
RECONSTRUCTION_ERROR = "reconstruction_error"

KEY_COLUMNS = (ID, SOURCE, LABEL)
OUTPUT_COLUMNS = (LATENT, RECONSTRUCTION, DENOISED, RECONSTRUCTION_ERROR)
IMAGE_COLUMNS = (RECONSTRUCTION, DENOISED)
PIXEL_FORMATS = ("float", "png")
COMPRESSIONS = ("snappy", "zstd")

META_PREFIX = "hourglass."


def is_denoising(model_info: dict) -> bool:
    """True when the export's ``serving_default`` also returns ``denoised`` (``model_info.json``)."""
    return bool(model_info.get("denoising", False))


def check_outputs(outputs: Sequence[str]) -> tuple[str, ...]:
    """Validates an output column selection; returns it in schema order.

    Raises:
      ValueError: empty, or naming an unknown column (lists the valid ones).
    """
    unknown = sorted(set(outputs) - set(OUTPUT_COLUMNS))
    if unknown or not outputs:
        raise ValueError(
            f"outputs must be a non-empty selection of {', '.join(OUTPUT_COLUMNS)}, got {', '.join(outputs) or 'none'}"
        )
    return tuple(c for c in OUTPUT_COLUMNS if c in outputs)


def prediction_schema(model_info: dict, outputs: Sequence[str] = OUTPUT_COLUMNS, pixels: str = "float") -> pa.Schema:
    """The Arrow schema of the predictions, with the model's identity as metadata.

    Args:
      model_info: the export's ``model_info.json``.
      outputs: the output columns to write (the key columns are always written).
      pixels: ``float`` or ``png``, the type of the image columns.

    Raises:
      ValueError: bad outputs or pixels.
    """
    if pixels not in PIXEL_FORMATS:
        raise ValueError(f"pixels must be one of {', '.join(PIXEL_FORMATS)}, got {pixels!r}")
    image_type = pa.list_(pa.float32()) if pixels == "float" else pa.binary()
    types = {
        LATENT: (pa.list_(pa.float32()), False),
        RECONSTRUCTION: (image_type, False),
        DENOISED: (image_type, True),
        RECONSTRUCTION_ERROR: (pa.float32(), False),
    }
    fields = [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(SOURCE, pa.string(), nullable=False),
        pa.field(LABEL, pa.string(), nullable=True),
    ]
    fields += [pa.field(name, *types[name]) for name in check_outputs(outputs)]
    metadata = {
        META_PREFIX + "image_shape": ",".join(str(d) for d in model_info["image_shape"]),
        META_PREFIX + "model_kind": model_info["kind"],
        META_PREFIX + "latent_dim": str(model_info["latent_dim"]),
        META_PREFIX + "model_hash": model_info["model_hash"],
        META_PREFIX + "denoising": str(is_denoising(model_info)).lower(),
        META_PREFIX + "pixels": pixels,
    }
    return pa.schema(fields, metadata=metadata)


def record_batch(schema: pa.Schema, keys: dict[str, list], outputs: dict[str, np.ndarray]) -> pa.RecordBatch:
    """One batch of predictions as a ``RecordBatch`` of ``schema``.

    Args:
      schema: from :func:`prediction_schema`.
      keys: ``id``, ``source`` and ``label`` lists (label ``None`` when unknown).
      outputs: model outputs stacked over the batch (``latent`` (n, d), ``reconstruction`` and
        ``denoised`` (n, H, W, C) in [0, 1], ``reconstruction_error`` (n,)); ``denoised`` may be
        missing (a model not trained to denoise), which writes nulls.
    """
    rows = len(keys[ID])
    png = schema.metadata[(META_PREFIX + "pixels").encode()] == b"png"
    arrays = []
    for field in schema:
        if field.name in KEY_COLUMNS:
            arrays.append(pa.array(keys[field.name], field.type))
        elif field.name not in outputs:
            arrays.append(pa.nulls(rows, field.type))
        elif field.name == RECONSTRUCTION_ERROR:
            arrays.append(pa.array(np.asarray(outputs[field.name], np.float32).reshape(rows)))
        elif field.name in IMAGE_COLUMNS and png:
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
