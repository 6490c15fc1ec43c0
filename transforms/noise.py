"""Image corruption for denoising: parsing ``--noise`` specs and applying them as TF ops.

Spec strings: ``gaussian:SIGMA`` (additive N(0, SIGMA^2)), ``salt-pepper:P`` (each pixel set to 0
or 1 with probability P), ``mask:P`` (each pixel zeroed with probability P). Element contract of
:func:`corrupt`: float images ``(batch, H, W, C)`` in [0, 1] -> same shape, clipped to [0, 1].
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

NOISE_KINDS = ("gaussian", "salt-pepper", "mask")


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """A corruption: ``kind`` in ``NOISE_KINDS`` and its ``amount`` (sigma or probability)."""

    kind: str
    amount: float

    def __post_init__(self):
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"noise kind must be one of {', '.join(NOISE_KINDS)}, got {self.kind!r}")
        if self.amount <= 0 or (self.kind != "gaussian" and self.amount >= 1):
            raise ValueError(f"noise amount for {self.kind} must be in (0, 1) (gaussian: > 0), got {self.amount}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.amount:g}"


def parse_noise(text: str | None) -> NoiseSpec | None:
    """``"gaussian:0.5"`` -> ``NoiseSpec("gaussian", 0.5)``; None or ``""`` -> None.

    Raises:
      ValueError: not ``KIND:AMOUNT`` with a known kind and a valid amount.
    """
    if not text:
        return None
    kind, sep, amount = text.partition(":")
    try:
        value = float(amount)
    except ValueError:
        value = None
    if not sep or value is None:
        raise ValueError(f"noise must look like KIND:AMOUNT with KIND one of {', '.join(NOISE_KINDS)}, got {text!r}")
    return NoiseSpec(kind.strip(), value)


def corrupt(images: tf.Tensor, spec: NoiseSpec, seed: int | None = None) -> tf.Tensor:
    """Applies ``spec`` to a batch of [0, 1] images."""
    shape = tf.shape(images)
    if spec.kind == "gaussian":
        noisy = images + tf.random.normal(shape, stddev=spec.amount, seed=seed, dtype=images.dtype)
    elif spec.kind == "mask":
        keep = tf.cast(tf.random.uniform(shape, seed=seed) >= spec.amount, images.dtype)
        noisy = images * keep
    else:
        draw = tf.random.uniform(shape, seed=seed)
        salt = tf.cast(draw < spec.amount / 2, images.dtype)
        pepper = draw < spec.amount
        noisy = tf.where(pepper, salt, images)
    return tf.clip_by_value(noisy, 0.0, 1.0)
