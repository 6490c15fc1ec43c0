"""An exported Hourglass SavedModel, called in batches from Python (evaluation and reports).

Element contract: ``serve``, ``encode`` and ``pixels`` take encoded image bytes (a list of N
``bytes``) and return numpy arrays with N rows; ``decode`` takes codes ``(N, latent_dim)`` and
returns images ``(N, H, W, C)`` in [0, 1]. ``info`` is the export's ``model_info.json``; the
variational / restoration fields follow the training contract (``variational: true`` or a ``vae``
kind; ``corruption`` such as ``grey`` or ``gaussian:0.5``, or in older exports ``denoising: true``
with a ``noise`` spec).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from models.model_check import check_export
from models.model_info import DENOISED, LATENT, RECONSTRUCTION, RESTORED, saved_model_path
from transforms import features
from transforms.corruption import CorruptionSpec
from transforms.errors import UserError


class ExportedModel:
    """Loads ``MODEL_DIR/saved_model`` once, after ``models.model_check`` accepts it (unless
    ``trust_model``), and calls its signatures in batches of ``batch_size``.

    Raises:
      UserError: ``model_dir`` holds no export, or it fails its checks (names the fix).
    """

    def __init__(self, model_dir: str, batch_size: int = 256, trust_model: bool = False):
        self.info = check_export(model_dir, trust_model)
        self._loaded = tf.saved_model.load(saved_model_path(model_dir))
        self._batch_size = batch_size

    @property
    def latent_dim(self) -> int:
        return self.info.latent_dim

    @property
    def variational(self) -> bool:
        return self.info.variational

    @property
    def corruption(self) -> CorruptionSpec | None:
        """What the model was trained to undo (``ModelInfo.corruption_spec``), or None."""
        return self.info.corruption_spec()

    def serve(self, images: list[bytes]) -> dict[str, np.ndarray]:
        """``serving_default``: every output (latent, reconstruction, ... and restored if exported)."""
        fn = self._loaded.signatures["serving_default"]
        return self._batched(lambda chunk: fn(images=tf.constant(chunk)), images)

    def encode(self, images: list[bytes]) -> np.ndarray:
        fn = self._loaded.signatures["encode"]
        return self._batched(lambda chunk: fn(images=tf.constant(chunk)), images)[LATENT]

    def decode(self, latent: np.ndarray) -> np.ndarray:
        fn = self._loaded.signatures["decode"]
        return self._batched(lambda chunk: fn(latent=tf.constant(chunk, tf.float32)), latent)[RECONSTRUCTION]

    def restore(self, images: list[bytes]) -> np.ndarray:
        """What the model makes of (possibly corrupted) images: its restoring output (``RESTORED``, or
        ``DENOISED`` in older exports) when exported, else ``reconstruction``."""
        outputs = self.serve(images)
        return outputs.get(RESTORED, outputs.get(DENOISED, outputs[RECONSTRUCTION]))

    def pixels(self, images: list[bytes]) -> np.ndarray:
        """The model's own [0, 1] pixels of ``images`` (its embedded tf.Transform layer), the reconstruction target.

        Raises:
          UserError: the export does not carry its transform layer.
        """
        transform = getattr(self._loaded, "transform", None)
        if transform is None:
            raise UserError("this export has no embedded transform layer; evaluate it with --data instead of --input")
        return self._batched(
            lambda chunk: {features.PIXELS: transform({features.IMAGE: tf.constant(chunk)})[features.PIXELS]}, images
        )[features.PIXELS]

    def _batched(self, call, items) -> dict[str, np.ndarray]:
        if len(items) == 0:
            raise UserError("no images to evaluate")
        parts = [call(items[i : i + self._batch_size]) for i in range(0, len(items), self._batch_size)]
        return {name: np.concatenate([part[name].numpy() for part in parts]) for name in parts[0]}
