"""RunInference model handler for an exported Hourglass SavedModel.

Element contract: ``run_inference`` takes a batch of valid raw records (dicts with ``image``
encoded bytes, see ``sources``) and yields one ``PredictionResult(example=record,
inference={"latent", "reconstruction", "reconstruction_error"})`` per record, numpy arrays.
RunInference loads the model once per worker process and shares it across threads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from models.export import saved_model_path
from transforms import features


class HourglassModelHandler(ModelHandler[dict, PredictionResult, Any]):
    """Loads ``MODEL_DIR/saved_model`` and calls its serving function on raw image bytes.

    Args:
      model_dir: a training output folder.
      min_batch_size, max_batch_size: bounds for RunInference's batching.
    """

    def __init__(self, model_dir: str, min_batch_size: int = 32, max_batch_size: int = 1024):
        super().__init__()
        self._path = saved_model_path(model_dir)
        self._batch = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}

    def load_model(self):
        return tf.saved_model.load(self._path)

    def run_inference(
        self, batch: Sequence[dict], model, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        images = tf.constant([record[features.IMAGE] for record in batch])
        outputs = {name: value.numpy() for name, value in model.signatures["serving_default"](images=images).items()}
        for i, record in enumerate(batch):
            yield PredictionResult(record, {name: np.asarray(value[i]) for name, value in outputs.items()})

    def batch_elements_kwargs(self) -> dict[str, int]:
        return dict(self._batch)

    def get_metrics_namespace(self) -> str:
        return "hourglass"
