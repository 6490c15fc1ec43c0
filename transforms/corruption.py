"""Image corruptions for restoration models: parsing ``--corrupt`` / ``--noise`` (pure Python;
``image_ops.corrupt`` applies them).

Spec strings (``KIND`` or ``KIND:AMOUNT``), one per restoration task:

* noise (denoising; ``--noise`` takes these only): ``gaussian:SIGMA`` (additive N(0, SIGMA^2)),
  ``salt-pepper:P`` (each pixel set to 0 or 1 with probability P), ``mask:P`` (each pixel zeroed
  with probability P);
* ``grey`` (recolouring): the image's luma (ITU-R BT.601) in every channel; 3-channel images only;
* ``downscale:F`` (upscaling by F, an integer >= 2): shrunk by F with area averaging, then brought
  back to its size with bicubic interpolation;
* ``blocks:P`` (inpainting): square blocks (an eighth of the smaller side) zeroed in every channel,
  each with probability P, so about a fraction P of the image is missing.
"""

from __future__ import annotations

import dataclasses

from transforms.errors import UserError

NOISE_KINDS = ("gaussian", "salt-pepper", "mask")
KINDS = (*NOISE_KINDS, "grey", "downscale", "blocks")
# How each kind is written, for messages.
FORMS = ("gaussian:SIGMA", "salt-pepper:P", "mask:P", "grey", "downscale:F", "blocks:P")
# Blocks of ``blocks:P`` are this fraction of the image's smaller side (at least one pixel).
BLOCK_FRACTION = 1 / 8


@dataclasses.dataclass(frozen=True)
class CorruptionSpec:
    """A corruption: ``kind`` in ``KINDS`` and its ``amount`` (sigma, probability or factor; 0 for ``grey``)."""

    kind: str
    amount: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise UserError(f"corruption kind must be one of {', '.join(FORMS)}, got {self.kind!r}")
        if self.kind == "grey":
            if self.amount:
                raise UserError(f"grey takes no amount (write just grey), got {self.amount:g}")
        elif self.kind == "gaussian":
            if self.amount <= 0:
                raise UserError(f"gaussian:SIGMA needs SIGMA > 0, got {self.amount:g}")
        elif self.kind == "downscale":
            if self.amount < 2 or self.amount != int(self.amount):
                raise UserError(f"downscale:F needs an integer factor F >= 2, got {self.amount:g}")
        elif not 0 < self.amount < 1:
            raise UserError(f"{self.kind}:P needs P in (0, 1), got {self.amount:g}")

    @property
    def is_noise(self) -> bool:
        """A denoising corruption (what ``--noise`` takes)."""
        return self.kind in NOISE_KINDS

    def check_shape(self, shape: tuple[int, int, int]) -> None:
        """Raises UserError when images of ``shape`` (H, W, C) cannot take this corruption (names the fix)."""
        height, width, channels = shape
        if self.kind == "grey" and channels != 3:
            raise UserError(
                f"--corrupt grey (recolouring) needs colour images, but the data is {height}x{width}x{channels}; "
                "preprocess with --channels 3"
            )
        if self.kind == "downscale" and min(height, width) < 2 * self.amount:
            raise UserError(
                f"--corrupt {self} shrinks {height}x{width} images below 2 pixels a side; use a smaller factor"
            )

    def __str__(self) -> str:
        return self.kind if self.kind == "grey" else f"{self.kind}:{self.amount:g}"


def parse_corruption(text: str | None, *, noise_only: bool = False, option: str = "--corrupt") -> CorruptionSpec | None:
    """``"gaussian:0.5"`` -> ``CorruptionSpec("gaussian", 0.5)``, ``"grey"`` -> ``CorruptionSpec("grey")``;
    None or ``""`` -> None.

    Args:
      noise_only: accept only ``NOISE_KINDS`` (``--noise``).
      option: how messages name the value.

    Raises:
      UserError: not one of the forms in ``FORMS`` (or of the noise forms), naming them.
    """
    if not text:
        return None
    forms = FORMS[: len(NOISE_KINDS)] if noise_only else FORMS
    kind, sep, amount = (part.strip() for part in text.partition(":"))
    bad = UserError(f"{option} must be one of {', '.join(forms)}, got {text!r}")
    if kind not in (NOISE_KINDS if noise_only else KINDS) or (kind == "grey") == bool(sep):
        raise bad
    try:
        value = float(amount) if sep else 0.0
    except ValueError:
        raise bad from None
    try:
        return CorruptionSpec(kind, value)
    except UserError as error:
        raise UserError(f"{option}: {error}") from error
