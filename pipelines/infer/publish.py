"""Infer's outputs: partitions, manifests, and the watch's window staging folders.

A batch run publishes through ``transforms.publishing`` (its own staging folder
``.NAME.staging-RUN``, a lock on the target, the swap that restores the previous output when a
step fails). The watch (``watch``) stages each window in ``.window_start=...staging`` with
:func:`start_staging` and swaps it in with :func:`publish`, the same swap. Staging folders are
hidden from Hive-style readers such as pyarrow datasets and DuckDB globs over ``run_id=*``, which
skip names starting with ``.``; a reader sees the previous partition or the new one, never a part,
and re-running a run id replaces its partition without duplicates. On a local disk each rename is
one atomic directory rename; object stores have no directories, so there the objects are renamed
one by one after the job succeeded, and readers should take a partition as complete once its
``_manifest.json`` is there.

Manifest (``_manifest.json``): ``run_id``, ``input``, ``model`` (kind, hash, latent size, image
shape, denoising, corruption, path), ``columns``, ``pixels``, ``compression``, ``rows`` (from the Parquet
footers), ``files`` (name, rows, bytes, row groups), ``records_read``, ``rejected`` (by reason),
``drift`` (against the model's calibration, see ``drift``), ``metrics`` (Beam counters and
distributions) and ``timing`` (UTC start and end, seconds).
"""

from __future__ import annotations

import json
import os
import posixpath

import pyarrow.parquet as pq
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems

from models.model_info import ModelInfo, saved_model_path
from transforms import publishing
from transforms.errors import UserError

MANIFEST = "_manifest.json"
RUN_ID = "run_id"


def target_dir(output: str, run_id: str | None) -> str:
    """``output``, or its Hive partition ``output/run_id=RUN_ID``."""
    return posixpath.join(output.rstrip("/"), f"{RUN_ID}={run_id}") if run_id else output.rstrip("/")


def staging_dir(target: str) -> str:
    parent, name = posixpath.split(target.rstrip("/"))
    return posixpath.join(parent, f".{name}.staging")


def start_staging(target: str) -> str:
    """Checks that ``target`` may be replaced and returns an empty staging folder for it.

    Raises:
      UserError: ``target`` exists, is not empty and holds no ``_manifest.json`` (it is not an
        infer output, and replacing it would delete someone's files).
    """
    if tf.io.gfile.isdir(target) and tf.io.gfile.listdir(target) and not _is_output(target):
        raise UserError(
            f"output {target} exists and is not an infer output (no {MANIFEST}); "
            "pass a new or empty folder, or an earlier infer output to replace"
        )
    staging = staging_dir(target)
    discard(staging)
    tf.io.gfile.makedirs(staging)
    return staging


def write_manifest(staging: str, fields: dict) -> dict:
    """Adds the written files' row counts (from their Parquet footers) to ``fields`` and writes
    ``staging/_manifest.json``; returns the manifest."""
    files = []
    for name in sorted(tf.io.gfile.listdir(staging)):
        if name.endswith(".parquet"):
            with FileSystems.open(posixpath.join(staging, name)) as f:
                meta = pq.read_metadata(f)
            size = tf.io.gfile.stat(posixpath.join(staging, name)).length
            files.append({"name": name, "rows": meta.num_rows, "bytes": size, "row_groups": meta.num_row_groups})
    manifest = {**fields, "rows": sum(f["rows"] for f in files), "files": files}
    with tf.io.gfile.GFile(posixpath.join(staging, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True, default=str)
    return manifest


def publish(staging: str, target: str) -> None:
    """Replaces ``target`` by ``staging``; on a failed step ``target`` stays as it was."""
    publishing.replace([(staging, target)], publishing.new_run_id())


def discard(staging: str) -> None:
    """Deletes a staging folder if there is one."""
    if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)


def read_manifest(target: str) -> dict:
    with tf.io.gfile.GFile(posixpath.join(target, MANIFEST)) as f:
        return json.load(f)


def model_identity(info: ModelInfo, model_dir: str) -> dict:
    """The model fields of the manifest, from ``model_info.json``."""
    return {
        "kind": info.kind,
        "model_hash": info.model_hash,
        "latent_dim": info.latent_dim,
        "image_shape": list(info.image_shape),
        "denoising": info.denoising,
        "corruption": info.restores,
        "path": os.path.abspath(saved_model_path(model_dir)) if "://" not in model_dir else saved_model_path(model_dir),
    }


def _is_output(folder: str) -> bool:
    return tf.io.gfile.exists(posixpath.join(folder, MANIFEST))
