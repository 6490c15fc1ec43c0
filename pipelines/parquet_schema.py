"""The predictions' Parquet schema (explicit, documented in the README).

One row per input image:
  ``id`` string, ``source`` string, ``label`` string (null when unknown), ``latent``
  list<float32> (latent_dim values), ``reconstruction`` list<float32> (H*W*C values in [0, 1],
  row-major HWC), ``reconstruction_error`` float32 (MSE against the model's own [0, 1] input).
File key-value metadata: ``hourglass.image_shape`` ("H,W,C"), ``hourglass.model_kind``,
``hourglass.latent_dim``, ``hourglass.model_hash``.
"""

from __future__ import annotations

import pyarrow as pa

ID, SOURCE, LABEL = "id", "source", "label"
LATENT, RECONSTRUCTION, RECONSTRUCTION_ERROR = "latent", "reconstruction", "reconstruction_error"


def prediction_schema(model_info: dict) -> pa.Schema:
    """The Arrow schema of the predictions, with the model's identity as metadata."""
    fields = [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(SOURCE, pa.string(), nullable=False),
        pa.field(LABEL, pa.string(), nullable=True),
        pa.field(LATENT, pa.list_(pa.float32()), nullable=False),
        pa.field(RECONSTRUCTION, pa.list_(pa.float32()), nullable=False),
        pa.field(RECONSTRUCTION_ERROR, pa.float32(), nullable=False),
    ]
    metadata = {
        "hourglass.image_shape": ",".join(str(d) for d in model_info["image_shape"]),
        "hourglass.model_kind": model_info["kind"],
        "hourglass.latent_dim": str(model_info["latent_dim"]),
        "hourglass.model_hash": model_info["model_hash"],
    }
    return pa.schema(fields, metadata=metadata)
