"""RunInference model handlers for an exported Hourglass SavedModel.

Element contract: ``run_inference`` takes a batch of valid raw records (dicts with ``image``
encoded bytes, see ``inputs.formats.base``) and returns one ``PredictionResult`` for the whole
batch (:func:`batch_result`): ``example`` the batch's records (a list, in order) and ``inference``
``{name: numpy array}`` with one row per record, as the signature returned it. Keeping the batch
whole lets everything after ``RunInference`` (Arrow conversion, drift bins) work on arrays, with no
Python per record. The names are the signature's outputs:
``serving_default`` gives ``latent``, ``reconstruction``, ``reconstruction_error``, for models
trained with a corruption (``corruption`` in ``model_info.json``) ``restored``, for those trained
with a noise (``"denoising": true``) ``denoised``, and for calibrated models
``anomaly_score`` and ``is_anomaly``; ``encode`` gives
``latent`` only (cheaper: no decoder) and is used when only latents are written.

The SavedModel is loaded once per worker process and shared by every thread and every
RunInference step that uses a copy of the same handler (the main step and the per-element retry
step): ``load_model`` goes through one Beam ``shared.Shared`` handle that is pickled with the
handler.

Nothing of the model runs before ``models.model_check`` accepts its folder: the handler checks it
when it is built (on the launching machine, so a refused model stops the job before it starts) and
again on each worker before it loads it (the folder may have changed since), unless ``trust_model``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from apache_beam.utils import shared

from models.model_check import check_export
from models.model_info import saved_model_path
from pipelines.counters import NAMESPACE
from transforms import features

SIGNATURES = ("serving_default", "encode")


class _LoadedModel:
    """Holds the loaded SavedModel (``shared.Shared`` caches objects by weak reference)."""

    def __init__(self, model_dir: str, trust_model: bool):
        check_export(model_dir, trust_model)
        self.module = tf.saved_model.load(saved_model_path(model_dir))


class HourglassModelHandler(ModelHandler[dict, PredictionResult, Any]):
    """Loads ``MODEL_DIR/saved_model`` and calls one of its signatures on raw image bytes.

    Args:
      model_dir: a training output folder.
      min_batch_size, max_batch_size: bounds for RunInference's batching.
      signature: ``serving_default`` (every output) or ``encode`` (latents only).
      trust_model: load the model without ``models.model_check``'s checks.

    Raises:
      UserError: the folder holds no export, or the export fails its checks (``ModelCheckError``).
    """

    def __init__(
        self,
        model_dir: str,
        min_batch_size: int = 32,
        max_batch_size: int = 1024,
        signature: str = "serving_default",
        trust_model: bool = False,
    ):
        super().__init__()
        if signature not in SIGNATURES:
            raise ValueError(f"signature must be one of {', '.join(SIGNATURES)}, got {signature!r}")
        check_export(model_dir, trust_model)
        self._model_dir, self._trust = model_dir, trust_model
        self._signature = signature
        self._batch = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}
        self._shared = shared.Shared()

    def load_model(self) -> _LoadedModel:
        model_dir, trust = self._model_dir, self._trust
        return self._shared.acquire(lambda: _LoadedModel(model_dir, trust), tag=saved_model_path(model_dir))

    def run_inference(
        self, batch: Sequence[dict], model: _LoadedModel, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        images = tf.constant([record[features.IMAGE] for record in batch])
        outputs = model.module.signatures[self._signature](images=images)
        return [batch_result(batch, {name: value.numpy() for name, value in outputs.items()})]

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        return sum(len(record[features.IMAGE]) for record in batch)

    def batch_elements_kwargs(self) -> dict[str, int]:
        return dict(self._batch)

    def get_metrics_namespace(self) -> str:
        return NAMESPACE


class OneAtATime(ModelHandler):
    """Wraps a handler to run it on batches of one record (retrying the records of a failed batch).

    Loading goes through the wrapped handler, so a handler that shares its model (as
    :class:`HourglassModelHandler` does) shares it with this step too.
    """

    def __init__(self, base: ModelHandler):
        super().__init__()
        self._base = base

    def load_model(self):
        return self._base.load_model()

    def run_inference(self, batch, model, inference_args=None):
        return self._base.run_inference(batch, model, inference_args)

    def get_num_bytes(self, batch) -> int:
        return self._base.get_num_bytes(batch)

    def get_metrics_namespace(self) -> str:
        return self._base.get_metrics_namespace()

    def batch_elements_kwargs(self) -> dict[str, int]:
        return {"min_batch_size": 1, "max_batch_size": 1}

    def share_model_across_processes(self) -> bool:
        return self._base.share_model_across_processes()


def batch_result(records: Sequence[dict], outputs: dict[str, np.ndarray]) -> PredictionResult:
    """The one result of a batch: its ``records`` and the model's ``outputs`` (one row per record)."""
    return PredictionResult(list(records), outputs)


def concat_outputs(results: Sequence[PredictionResult]) -> dict[str, np.ndarray]:
    """The outputs of several batch results, concatenated into one array per output."""
    names = results[0].inference.keys()
    return {name: np.concatenate([r.inference[name] for r in results]) for name in names}
