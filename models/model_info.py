"""What an export is: :class:`ModelInfo` (``saved_model/model_info.json``) and the names of its outputs.

The one writer (``models.export``) and every reader (infer, evaluate, warm starts) go through
:class:`ModelInfo`, so the file's fields are typed and checked in one place. Pure Python (the file
is read with ``tf.io.gfile`` when it is read), so the command line can import the output names fast.

``serving_default`` returns ``LATENT``, ``RECONSTRUCTION``, ``RECONSTRUCTION_ERROR``, for a
model trained with a corruption (``--corrupt``) ``RESTORED``, for one trained with a noise also
``DENOISED`` (the same tensor: the name exports made before ``RESTORED`` existed return alone),
and for a calibrated model (every export since calibration exists) ``ANOMALY_ERROR`` (the scored
error, ``Calibration.error`` names it), ``ANOMALY_SCORE`` and ``IS_ANOMALY``; ``encode`` returns
``LATENT``; ``decode`` and ``interpolate`` return ``RECONSTRUCTION``. :class:`Calibration` is what
``train`` measured on the eval split to set the last
two (``models.calibration`` computes it).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from typing import Any

from models import fields
from transforms.corruption import CorruptionSpec, parse_corruption
from transforms.errors import UserError

SAVED_MODEL_DIR = "saved_model"
MODEL_INFO = "model_info.json"

LATENT = "latent"
RECONSTRUCTION = "reconstruction"
RESTORED = "restored"
DENOISED = "denoised"
RECONSTRUCTION_ERROR = "reconstruction_error"
ANOMALY_ERROR = "anomaly_error"
ANOMALY_SCORE = "anomaly_score"
IS_ANOMALY = "is_anomaly"
OUTPUTS = (
    LATENT,
    RECONSTRUCTION,
    RESTORED,
    DENOISED,
    RECONSTRUCTION_ERROR,
    ANOMALY_ERROR,
    ANOMALY_SCORE,
    IS_ANOMALY,
)
# What infer writes without --outputs: every output but ``DENOISED``, the older name of ``RESTORED``.
DEFAULT_OUTPUTS = tuple(name for name in OUTPUTS if name != DENOISED)
# The outputs that are images of the model's shape.
IMAGE_OUTPUTS = (RECONSTRUCTION, RESTORED, DENOISED)
ANOMALY_OUTPUTS = (ANOMALY_ERROR, ANOMALY_SCORE, IS_ANOMALY)
# ``Calibration.error`` of exports made before the scored error had its own output.
PLAIN_MSE = "mse"
# The error percentile table has a point at every percent, 0 to 100.
PERCENTILE_POINTS = 101


def saved_model_path(model_dir: str) -> str:
    """``MODEL_DIR/saved_model``."""
    return os.path.join(model_dir, SAVED_MODEL_DIR)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The anomaly calibration: what the eval split (held out from the weights) looked like to the model.

    Attributes:
      error: which per-image error is scored (``ANOMALY_ERROR``; ``blurred_mse``: the mean squared
        error over pixels after a 3x3 binomial blur, see ``models.calibration``; ``mse`` in exports
        made before: the plain ``RECONSTRUCTION_ERROR``, and no ``ANOMALY_ERROR`` output).
      fpr: the target false-positive rate the threshold was set for (``--anomaly-fpr``).
      threshold: ``is_anomaly`` is ``anomaly_error > threshold``.
      method: how the threshold was set: ``conformal`` (the ``ceil((1 - fpr)(n + 1))``-th smallest
        of the n calibration errors, when n is large enough for it) or ``lognormal`` (a log-normal
        fitted to the errors, its ``1 - fpr`` quantile, for fewer errors). Never a minimum.
      examples: how many eval images were scored.
      flagged_fraction: the share of the calibration errors above the threshold.
      error_percentiles: the error at each percent 0..100 (101 values; ``anomaly_score`` is the
        percentile rank in this table, linear between points, and it is the drift reference of the errors).
      latent_mean, latent_std: per latent dimension.
      latent_quantiles: per latent dimension, its deciles (10%..90%: the edges of the PSI bins).
      latent_bin_shares: per latent dimension, the share of the calibration latents in each of the
        10 bins those edges make (about 10% each; tied deciles make empty bins and fuller ones).
    """

    error: str
    fpr: float
    threshold: float
    method: str
    examples: int
    flagged_fraction: float
    error_percentiles: tuple[float, ...]
    latent_mean: tuple[float, ...]
    latent_std: tuple[float, ...]
    latent_quantiles: tuple[tuple[float, ...], ...]
    latent_bin_shares: tuple[tuple[float, ...], ...]

    def __post_init__(self):
        table = self.error_percentiles
        if len(table) != PERCENTILE_POINTS or any(b < a for a, b in itertools.pairwise(table)):
            raise UserError(f"error_percentiles must be {PERCENTILE_POINTS} non-decreasing values")
        if not 0 < self.fpr < 1:
            raise UserError(f"fpr must be in (0, 1), got {self.fpr}")
        per_dim = (self.latent_std, self.latent_quantiles, self.latent_bin_shares)
        if any(len(values) != len(self.latent_mean) for values in per_dim):
            raise UserError(
                "latent_mean, latent_std, latent_quantiles and latent_bin_shares need one entry per latent dimension"
            )


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """An exported model's identity and contract.

    Attributes:
      kind, latent_dim, params: the registered kind, its code size and its resolved parameters.
      image_shape: ``(H, W, C)`` the embedded transform brings every image to.
      loss: the reconstruction loss it was trained with.
      model_hash: SHA-256 (hex) of the saved files and the other fields (``model_check.export_hash``).
      noise: the noise it was trained to remove (``KIND:AMOUNT``, ``transforms.corruption``), or None.
      denoising: trained with noise: ``serving_default`` also returns ``DENOISED``.
      corruption: the corruption it was trained to undo (any ``--corrupt`` form; equal to ``noise``
        when that is set), or None: ``serving_default`` also returns ``RESTORED``. None in exports
        made before restoration (their ``noise`` alone says what they remove), and then not
        written, so that their ``model_hash`` stays valid.
      variational: a VAE (its ``encode`` is the posterior mean; it has ``interpolate``).
      calibration: the anomaly calibration; None for exports made before it existed (they return
        no ``ANOMALY_OUTPUTS``).
    """

    kind: str
    latent_dim: int
    image_shape: tuple[int, int, int]
    loss: str
    params: dict[str, Any]
    model_hash: str
    noise: str | None = None
    denoising: bool = False
    variational: bool = False
    calibration: Calibration | None = None
    corruption: str | None = None

    def __post_init__(self):
        if self.latent_dim <= 0 or min(self.image_shape) <= 0:
            raise UserError(f"latent_dim and image_shape must be positive, got {self.latent_dim}, {self.image_shape}")
        if self.denoising != (self.noise is not None):
            raise UserError(f"denoising is {self.denoising} but noise is {self.noise!r}")
        parse_corruption(self.noise, noise_only=True, option="noise")
        spec = parse_corruption(self.corruption, option="corruption")
        if spec is not None and self.noise is not None and str(spec) != self.noise:
            raise UserError(f"corruption is {self.corruption!r} but noise is {self.noise!r}")

    @property
    def restores(self) -> str | None:
        """The corruption the model was trained to undo (``corruption``, else an older export's ``noise``), or None."""
        return self.corruption or self.noise

    def corruption_spec(self) -> CorruptionSpec | None:
        """:attr:`restores`, parsed."""
        return parse_corruption(self.restores)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The names ``serving_default`` returns."""
        # Exports calibrated before ANOMALY_ERROR existed scored the plain MSE and do not return it.
        scored_apart = self.calibration is not None and self.calibration.error != PLAIN_MSE
        present = {RESTORED: self.corruption is not None, DENOISED: self.denoising, ANOMALY_ERROR: scored_apart}
        return tuple(
            name
            for name in OUTPUTS
            if present.get(name, True) and (name not in ANOMALY_OUTPUTS or self.calibration is not None)
        )

    def identity(self) -> dict[str, Any]:
        """What a model folder, its checkpoints and a warm start must agree on (as JSON reads it back)."""
        return identity(self.kind, self.latent_dim, self.image_shape, self.params)

    def to_json(self) -> dict[str, Any]:
        value = {**dataclasses.asdict(self), "image_shape": list(self.image_shape)}
        if self.corruption is None:
            del value["corruption"]  # as exports made before it wrote (and hashed) their fields
        return value

    def write(self, export_dir: str) -> str:
        """Writes ``export_dir/model_info.json``; returns its path."""
        import tensorflow as tf

        path = os.path.join(export_dir, MODEL_INFO)
        with tf.io.gfile.GFile(path, "w") as f:
            json.dump(self.to_json(), f, indent=2, sort_keys=True)
        return path

    @classmethod
    def read(cls, model_dir: str) -> ModelInfo:
        """The ``model_info.json`` of ``MODEL_DIR/saved_model``.

        Raises:
          UserError: ``model_dir`` holds no export, or its ``model_info.json`` is not valid (names the fix).
        """
        import tensorflow as tf

        path = os.path.join(saved_model_path(model_dir), MODEL_INFO)
        if not tf.io.gfile.exists(path):
            if tf.io.gfile.exists(os.path.join(saved_model_path(model_dir), "saved_model.pb")):
                raise UserError(
                    f"{path} not found: {saved_model_path(model_dir)} is a SavedModel that Hourglass did not export; "
                    "pass the folder of a model `hourglass train` exported"
                )
            raise UserError(f"{path} not found: {model_dir} holds no exported model; run `hourglass train` first")
        fix = "re-export the model with `hourglass train`, or pass the folder of a model Hourglass exported"
        with tf.io.gfile.GFile(path) as f:
            try:
                return fields.build(cls, json.load(f), path)
            except json.JSONDecodeError as error:
                raise UserError(f"{path} is not valid JSON ({error}); {fix}") from error
            except UserError as error:
                raise UserError(f"{error}; {fix}") from error


def identity(kind: str, latent_dim: int, image_shape, params: dict[str, Any]) -> dict[str, Any]:
    """A model's identity (see :meth:`ModelInfo.identity`), in its JSON form."""
    value = {"kind": kind, "latent_dim": latent_dim, "image_shape": list(image_shape), "params": params}
    return json.loads(json.dumps(value))
