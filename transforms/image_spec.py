"""What every image is brought to: the target shape, the resize and colour policy, the normalization.

Pure Python (no TensorFlow), so that configs and the command line can check these values without
importing TensorFlow. The ops that apply them are in ``image_ops`` and ``preprocessing``.
"""

from __future__ import annotations

import dataclasses

from transforms.errors import UserError

RESIZE_POLICIES = ("stretch", "pad", "crop")
NORMALIZATIONS = ("unit", "standardize")


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """The shape every image is brought to, and how.

    Attributes:
      height, width, channels: the target shape (channels 1 or 3).
      resize: how an image of another size reaches the target: ``stretch`` (plain resize),
        ``pad`` (keep aspect ratio, pad with the background) or ``crop`` (keep aspect ratio,
        center crop).
      background: ``(r, g, b)`` in 0..255 that transparent pixels are composited on and that
        ``pad`` fills with.
    """

    height: int
    width: int
    channels: int
    resize: str = "stretch"
    background: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self):
        if self.height <= 0 or self.width <= 0:
            raise UserError(f"image size must be positive, got {self.height}x{self.width}")
        if self.channels not in (1, 3):
            raise UserError(f"channels must be 1 or 3, got {self.channels}")
        if self.resize not in RESIZE_POLICIES:
            raise UserError(f"resize must be one of {', '.join(RESIZE_POLICIES)}, got {self.resize!r}")
        if len(self.background) != 3 or not all(0 <= int(v) <= 255 for v in self.background):
            raise UserError(f"background must be three values in 0..255, got {self.background}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def size(self) -> int:
        return self.height * self.width * self.channels
