"""Image corruption specs for denoising: parsing ``--noise`` (pure Python; ``image_ops.corrupt`` applies them).

Spec strings: ``gaussian:SIGMA`` (additive N(0, SIGMA^2)), ``salt-pepper:P`` (each pixel set to 0
or 1 with probability P), ``mask:P`` (each pixel zeroed with probability P).
"""

from __future__ import annotations

import dataclasses

from transforms.errors import UserError

NOISE_KINDS = ("gaussian", "salt-pepper", "mask")


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """A corruption: ``kind`` in ``NOISE_KINDS`` and its ``amount`` (sigma or probability)."""

    kind: str
    amount: float

    def __post_init__(self):
        if self.kind not in NOISE_KINDS:
            raise UserError(f"noise kind must be one of {', '.join(NOISE_KINDS)}, got {self.kind!r}")
        if self.amount <= 0 or (self.kind != "gaussian" and self.amount >= 1):
            raise UserError(f"noise amount for {self.kind} must be in (0, 1) (gaussian: > 0), got {self.amount}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.amount:g}"


def parse_noise(text: str | None) -> NoiseSpec | None:
    """``"gaussian:0.5"`` -> ``NoiseSpec("gaussian", 0.5)``; None or ``""`` -> None.

    Raises:
      UserError: not ``KIND:AMOUNT`` with a known kind and a valid amount.
    """
    if not text:
        return None
    kind, sep, amount = text.partition(":")
    try:
        value = float(amount)
    except ValueError:
        value = None
    if not sep or value is None:
        raise UserError(f"noise must look like KIND:AMOUNT with KIND one of {', '.join(NOISE_KINDS)}, got {text!r}")
    return NoiseSpec(kind.strip(), value)
