"""Image files (PNG, JPEG, BMP, GIF, TIFF, WebP): one record per file, labelled by its first-level folder.

Units are groups of up to ``FILES_PER_UNIT`` paths (fewer, larger elements for Beam to move); a
record's id is its path under the input root (``7/00012.png``), its label the first folder of that
path (``7``; none for files at the root). A file is recognised by its extension or its signature.
Each file is read whole, up to ``--max-file-bytes`` (a larger one is a ``file_too_large`` dead letter).
"""

from __future__ import annotations

from typing import NamedTuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.config import IMAGES
from pipelines.inputs.formats.base import Format, Reader, Unreadable, make_record, relative_id, too_large
from pipelines.inputs.images import has_image_signature
from transforms import features

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
# Image files are read in units of this many files.
FILES_PER_UNIT = 100
# Below malloc's mmap threshold: ``read(n)`` allocates ``n`` bytes before reading, which for
# ``--max-file-bytes`` (256 MB) costs three times the read of a small image.
_CHUNK_BYTES = 64 * 1024


class FileUnit(NamedTuple):
    """A group of image files, read one record each."""

    paths: tuple[str, ...]

    @property
    def order(self) -> tuple:
        return (self.paths[0], 0)

    @property
    def count(self) -> int:
        return len(self.paths)

    def head(self, n: int) -> FileUnit:
        return self._replace(paths=self.paths[:n])


class ImageFileReader(Reader):
    """Reads :class:`FileUnit` s (see the module docstring)."""

    def plan_all(self, paths):
        paths = sorted(paths)
        for start in range(0, len(paths), FILES_PER_UNIT):
            yield FileUnit(tuple(paths[start : start + FILES_PER_UNIT]))

    def setup(self):
        self._filesystem = FileSystems.get_filesystem(self.root)  # once: the lookup costs per call

    def read(self, unit: FileUnit):
        for path in unit.paths:
            yield self.read_file(path)

    def read_file(self, path: str) -> dict | Unreadable:
        """One file's record, or its dead letter."""
        record_id = relative_id(path, self.root)
        try:
            with self._filesystem.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                data = read_at_most(f, self.options.max_file_bytes + 1)  # the listing checks local sizes
        except Exception as error:  # any filesystem's read error
            return self.file_error(path, error)
        if len(data) > self.options.max_file_bytes:
            return too_large(record_id, path, f"more than {self.options.max_file_bytes}", self.options.max_file_bytes)
        parts = record_id.split("/")
        return make_record(record_id, parts[0] if len(parts) > 1 else features.UNKNOWN_LABEL, data, path)


def read_at_most(f, limit: int) -> bytes:
    """Up to ``limit`` bytes of the open file ``f``, read in chunks (see ``_CHUNK_BYTES``)."""
    chunks = []
    while limit > 0 and (chunk := f.read(min(limit, _CHUNK_BYTES))):
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)


FORMAT = Format(
    IMAGES,
    ImageFileReader,
    by_name=lambda stem, extension: extension in IMAGE_EXTENSIONS,
    by_head=has_image_signature,
)
