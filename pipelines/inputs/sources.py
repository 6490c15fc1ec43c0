"""Sources: turn an input spec into raw image records, in parallel and without loading containers.

Element contract: records out of :class:`ReadUnits` / :class:`ReadImages` are raw records (a dict
``id``, ``label``, ``image`` bytes not yet validated, ``source``; see ``inputs.formats.base``).
Items a reader cannot turn into records come out under ``rejected`` as ``formats.base.Unreadable``.

Inputs (``--input``): ``builtin:mnist``; a folder (searched recursively; for image files the first
level of subfolders names the label); a glob pattern; or one file; on any filesystem Beam's
``FileSystems`` supports. Formats (``--format``, default ``auto`` from names and contents): image
files (PNG, JPEG, BMP, GIF, TIFF, WebP), IDX, NPY, NPZ, CSV of flattened pixels, TFRecord of
``tf.Example`` (see ``inputs.formats``). The launching process only lists a sample of the files and reads
a few header bytes; planning (headers, CSV/TFRecord boundary scans) and reading run in workers.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import re

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines import config
from pipelines.config import BUILTIN_MNIST, ReaderOptions
from pipelines.counters import NAMESPACE
from pipelines.inputs import formats
from pipelines.inputs.formats.base import Reader, Unreadable
from pipelines.inputs.formats.image_files import FILES_PER_UNIT
from transforms import features
from transforms.errors import UserError
from transforms.layout import SKIPPED_LABEL

log = logging.getLogger(__name__)

REJECTED = "rejected"
# How many files ``--format auto`` looks at.
SNIFF_FILES = 1000
_GLOB = re.compile(r"[*?\[]")


@dataclasses.dataclass(frozen=True)
class Source:
    """A resolved input: its files (``pattern``), the ``root`` ids are relative to, and the format.

    Build it with :func:`resolve_source`.
    """

    input: str
    format: str
    pattern: str
    root: str
    options: ReaderOptions = dataclasses.field(default_factory=ReaderOptions)
    limit: int | None = None

    def reader(self) -> Reader:
        return formats.READERS[self.format](self.root, self.options)


def resolve_source(input: str, options: ReaderOptions | None = None, limit: int | None = None) -> Source:
    """Checks ``input`` and settles its format (``auto``: from a sample of file names and heads).

    Raises:
      UserError: unknown built-in, missing input, no files, or files of several formats with
        ``format=auto`` (names the formats and the fix).
    """
    options = options or ReaderOptions()
    if input.startswith("builtin:"):
        if input != BUILTIN_MNIST:
            raise UserError(f"unknown built-in dataset {input!r}; the built-in one is {BUILTIN_MNIST!r}")
        return Source(input, BUILTIN_MNIST, input, input, options, limit)
    pattern, root = _pattern_and_root(input)
    sample = [m.path for m in FileSystems.match([pattern], limits=[SNIFF_FILES])[0].metadata_list]
    if not sample:
        raise UserError(f"input {input!r} holds no files; check the path or pattern")
    fmt = options.format if options.format != "auto" else _detect_format(input, sample)
    log.info("reading %s as %s", input, fmt)
    return Source(input, fmt, pattern, root, options, limit)


def _pattern_and_root(input: str) -> tuple[str, str]:
    path = input if "://" in input else os.path.abspath(input)
    glob = _GLOB.search(path)
    if glob:
        return path, path[: glob.start()].rsplit("/", 1)[0]
    path = path.rstrip("/")
    is_dir = os.path.isdir(path) if "://" not in path else bool(_match_one(FileSystems.join(path, "**")))
    if is_dir:
        return FileSystems.join(path, "**"), path
    if not FileSystems.exists(path):
        raise UserError(f"input {input!r} does not exist; pass a folder, a file, a glob pattern or {BUILTIN_MNIST}")
    return path, path.rsplit("/", 1)[0]


def _match_one(pattern: str) -> list:
    return FileSystems.match([pattern], limits=[1])[0].metadata_list


def _detect_format(input: str, paths: list[str]) -> str:
    found = collections.Counter()
    for path in paths:
        fmt = formats.sniff_format(path, b"")
        if fmt is None:
            with FileSystems.open(path, compression_type=beam.io.filesystem.CompressionTypes.UNCOMPRESSED) as f:
                fmt = formats.sniff_format(path, f.read(formats.SNIFF_BYTES))
        found[fmt or "unknown"] += 1
    known = {f: n for f, n in found.items() if f != "unknown"}
    if len(known) > 1:
        seen = ", ".join(f"{fmt} ({n} files)" for fmt, n in sorted(known.items()))
        raise UserError(
            f"input {input!r} mixes formats: {seen}; pass --format {'|'.join(config.FORMATS)} "
            "or a narrower path or glob pattern"
        )
    # Unknown files alone are read as images: validation dead-letters what is not one.
    return next(iter(known), config.IMAGES)


def source_shapes(source: Source) -> dict[tuple[int, int, bool], int] | None:
    """``{(height, width, has_colour): count}`` from container headers, or None when the images
    must be decoded to know (image files, TFRecord). Lists the files in the launching process."""
    reader = source.reader()
    if source.format == BUILTIN_MNIST:
        return reader.shapes(source.input)
    if source.format in (config.IMAGES, config.TFRECORD):
        return None
    shapes: dict[tuple[int, int, bool], int] = collections.Counter()
    for metadata in FileSystems.match([source.pattern])[0].metadata_list:
        shapes.update(reader.shapes(metadata.path))
    return dict(shapes)


class PlanUnitsFn(beam.DoFn):
    """A batch of file paths -> the reader's units, and ``rejected`` ``Unreadable`` items."""

    def __init__(self, source: Source):
        self._source = source

    def setup(self):
        self._reader = self._source.reader()

    def process(self, paths):
        for item in self._reader.plan_all(paths):
            yield beam.pvalue.TaggedOutput(REJECTED, item) if isinstance(item, Unreadable) else item


class ReadUnitFn(beam.DoFn):
    """Unit -> raw records, and ``rejected`` ``Unreadable`` items.

    With the reader option ``keep_labels``, records with other labels (or none) are skipped and
    counted in ``records_skipped_label`` (unless ``counted`` is False: a second pass over the same
    units): they are not rejected, and not counted as read.
    """

    def __init__(self, source: Source, counted: bool = True):
        self._source = source
        keep = source.options.keep_labels
        self._keep = frozenset(label.strip() for label in keep) if keep is not None else None
        self._skipped = Metrics.counter(NAMESPACE, SKIPPED_LABEL) if counted else None

    def setup(self):
        self._reader = self._source.reader()
        self._reader.setup()

    def process(self, unit):
        for item in self._reader.read(unit):
            if isinstance(item, Unreadable):
                yield beam.pvalue.TaggedOutput(REJECTED, item)
            elif self._keep is None or (item[features.LABEL] or "") in self._keep:
                yield item
            elif self._skipped is not None:
                self._skipped.inc()


class LimitUnits(beam.PTransform):
    """Keeps the units of the first ``limit`` records (in file and index order), cutting the last.

    Gathers the unit descriptions (not the data) in one place, which is fine for a limited run.
    """

    def __init__(self, limit: int):
        super().__init__()
        self._limit = limit

    def expand(self, units):
        return units | "AllUnits" >> beam.combiners.ToList() | "FirstUnits" >> beam.FlatMap(_first_units, self._limit)


def _first_units(units: list, limit: int):
    for unit in sorted(units, key=lambda u: u.order):
        if limit <= 0:
            return
        yield unit if unit.count <= limit else unit.head(limit)
        limit -= unit.count


class PlanReads(beam.PTransform):
    """pbegin -> ``{"units", "rejected"}``: the input's units of work, spread over the workers."""

    def __init__(self, source: Source):
        super().__init__()
        self._source = source

    def expand(self, pbegin):
        source = self._source
        if source.format == BUILTIN_MNIST:
            paths = pbegin | "Builtin" >> beam.Create([[source.input]])
        else:
            paths = (
                pbegin
                | "Pattern" >> beam.Create([source.pattern])
                | "MatchFiles" >> fileio.MatchAll()
                | "Paths" >> beam.Map(lambda metadata: metadata.path)
            )
            if source.format != config.IMAGES:  # containers: plan (read headers, scan) in parallel
                paths = paths | "SpreadFiles" >> beam.Reshuffle()
            paths = paths | "BatchPaths" >> beam.BatchElements(
                min_batch_size=FILES_PER_UNIT, max_batch_size=FILES_PER_UNIT
            )
        planned = paths | "PlanUnits" >> beam.ParDo(PlanUnitsFn(source)).with_outputs(REJECTED, main="units")
        units = planned.units
        if source.limit is not None:
            units = units | "Limit" >> LimitUnits(source.limit)
        return {"units": units | "SpreadUnits" >> beam.Reshuffle(), "rejected": planned[REJECTED]}


class ReadUnits(beam.PTransform):
    """Units -> ``{"records", "rejected"}`` (``counted``: see :class:`ReadUnitFn`)."""

    def __init__(self, source: Source, counted: bool = True):
        super().__init__()
        self._source = source
        self._counted = counted

    def expand(self, units):
        read_fn = ReadUnitFn(self._source, self._counted)
        read = units | "ReadUnits" >> beam.ParDo(read_fn).with_outputs(REJECTED, main="records")
        return {"records": read.records, "rejected": read[REJECTED]}


class ReadImages(beam.PTransform):
    """pbegin -> ``{"records", "rejected", "units"}``: :class:`PlanReads` then :class:`ReadUnits`.

    ``units`` lets a second pass read the same records again (see ``preprocess``).
    """

    def __init__(self, source: Source):
        super().__init__()
        self._source = source

    def expand(self, pbegin):
        planned = pbegin | "PlanReads" >> PlanReads(self._source)
        read = planned["units"] | "ReadUnits" >> ReadUnits(self._source)
        rejected = (planned["rejected"], read["rejected"]) | "FlattenRejected" >> beam.Flatten()
        return {"records": read["records"], "rejected": rejected, "units": planned["units"]}
