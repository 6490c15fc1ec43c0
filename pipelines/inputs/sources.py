"""Sources: turn an input spec into raw image records, in parallel and without loading containers.

Element contract: records out of :class:`ReadUnits` / :class:`ReadImages` are raw records (a dict
``id``, ``label``, ``image`` bytes not yet validated, ``source``; see ``inputs.formats.base``), or
with ``batched`` lists of them (fewer, larger elements for Beam to move).
Items a reader cannot turn into records come out under ``rejected`` as ``formats.base.Unreadable``;
files the listing skips (``inputs.listing``: hidden, sidecar files) come out under ``skipped`` as
their reason, counted by the ``skipped_<reason>`` counters, and are never read.

Inputs (``--input``): ``builtin:mnist``; a folder (searched recursively; for image files the first
level of subfolders names the label); a glob pattern; or one file; on any filesystem Beam's
``FileSystems`` supports. Formats (``--format``, default ``auto`` from names and contents): image
files (PNG, JPEG, BMP, GIF, TIFF, WebP), IDX, NPY, NPZ, CSV of flattened pixels, TFRecord of
``tf.Example`` (see ``inputs.formats``). The launching process only lists a sample of the files and reads
a few header bytes; listing, planning (headers, CSV/TFRecord boundary scans) and reading run in workers.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
import stat
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines import config
from pipelines.config import BUILTIN_MNIST, ReaderOptions
from pipelines.counters import NAMESPACE
from pipelines.inputs import formats, listing
from pipelines.inputs.formats.base import Reader, Unreadable, text
from pipelines.inputs.formats.image_files import FILES_PER_UNIT
from pipelines.inputs.listing import FILE, FOLDER, GLOB, Skipped
from transforms import features
from transforms.errors import UserError
from transforms.layout import FILES_LISTED, SKIPPED_LABEL, skipped_counter

log = logging.getLogger(__name__)

REJECTED = "rejected"
SKIPPED = "skipped"
# How many files ``--format auto`` looks at.
SNIFF_FILES = 1000
# A batch of records (batched reads, validation) holds at most 256 small images, and about 16 MiB of
# encoded bytes (a record weighs one per 64 KiB), so large files do not pile up.
BATCH_WEIGHT = 256
_WEIGHT_BYTES = 64 * 1024
# How many files' reasons the error of an input with no usable image gives.
_REASONS_SHOWN = 3


@dataclasses.dataclass(frozen=True)
class Source:
    """A resolved input: its files (``pattern``: a folder, a glob or a file, as ``kind`` says), the
    ``root`` ids are relative to, and the format.

    Build it with :func:`resolve_source`.
    """

    input: str
    format: str
    pattern: str
    root: str
    kind: str = FOLDER
    options: ReaderOptions = dataclasses.field(default_factory=ReaderOptions)
    limit: int | None = None

    def reader(self) -> Reader:
        return formats.READERS[self.format](self.root, self.options)

    def files(self) -> Iterator[str | Skipped | Unreadable]:
        """The listing (``inputs.listing``) with each file checked: paths to read, ``Skipped`` and
        ``Unreadable`` items."""
        for entry in listing.list_entries(self.pattern, self.root, self.kind):
            if isinstance(entry, str):
                entry = listing.check_file(entry, self.root, self.format, self.kind, self.options.max_file_bytes)
            yield entry


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
        return Source(input, BUILTIN_MNIST, input, input, BUILTIN_MNIST, options, limit)
    pattern, root, kind = _pattern_and_root(input)
    listed = listing.list_entries(pattern, root, kind)
    skipped = collections.Counter()
    sample = []
    for entry in itertools.islice(listed, 10 * SNIFF_FILES):
        if isinstance(entry, Skipped):
            skipped[entry.reason] += 1
        elif isinstance(entry, str):
            sample.append(entry)
            if len(sample) == SNIFF_FILES:
                break
    if not sample:
        seen = f" (only {_describe(skipped)}, which are skipped)" if skipped else ""
        raise UserError(f"input {input!r} holds no files{seen}; check the path or pattern")
    fmt = options.format if options.format != "auto" else _detect_format(input, sample)
    log.info("reading %s as %s", input, fmt)
    return Source(input, fmt, pattern, root, kind, options, limit)


def _describe(skipped: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(skipped.items()))


def _pattern_and_root(input: str) -> tuple[str, str, str]:
    """``(pattern, root, kind)``: a local path that exists is taken literally, even with glob
    characters (other filesystems match every path as a glob, so there they always make one)."""
    path = input if not listing.is_local(input) else os.path.abspath(input)
    glob = listing.GLOB_CHARACTERS.search(path)
    literal = listing.is_local(path) or not glob
    if literal and path.rstrip("/") and _exists(path.rstrip("/")):
        path = path.rstrip("/") or "/"
        if _is_folder(path):
            return path, path, FOLDER
        return path, path.rsplit("/", 1)[0], FILE
    if glob:
        return path, path[: glob.start()].rsplit("/", 1)[0], GLOB
    raise UserError(f"input {input!r} does not exist; pass a folder, a file, a glob pattern or {BUILTIN_MNIST}")


def _exists(path: str) -> bool:
    return os.path.lexists(path) if listing.is_local(path) else _is_folder(path) or FileSystems.exists(path)


def _is_folder(path: str) -> bool:
    if listing.is_local(path):
        return os.path.isdir(path)
    return bool(FileSystems.match([FileSystems.join(path, "**")], limits=[1])[0].metadata_list)


def _detect_format(input: str, paths: list[str]) -> str:
    """The one format of ``paths``, by name, else (files without an extension that says one) by
    content; documentation and metadata (``formats.is_sidecar``) and special files are not looked at."""
    found = collections.Counter()
    for path in paths:
        fmt = formats.format_by_name(path)
        if fmt is None and not formats.is_sidecar(path) and _is_regular(path):
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


def _is_regular(path: str) -> bool:
    """False for local devices, FIFOs and dangling links (never opened; the job dead-letters them)."""
    if not listing.is_local(path):
        return True
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def source_shapes(source: Source) -> dict[tuple[int, int, bool], int] | None:
    """``{(height, width, has_colour): count}`` from container headers, or None when the images
    must be decoded to know (image files, TFRecord). Lists the files in the launching process;
    files the job will reject are left out.

    Raises:
      UserError: no file gives a shape; names the files and their readers' reasons.
    """
    reader = source.reader()
    if source.format == BUILTIN_MNIST:
        return reader.shapes(source.input)
    if source.format in (config.IMAGES, config.TFRECORD):
        return None
    shapes: dict[tuple[int, int, bool], int] = collections.Counter()
    reasons = []
    for entry in source.files():
        if isinstance(entry, Unreadable):
            reasons.append(f"{entry.id}: {entry.error}")
        elif isinstance(entry, str):
            try:
                shapes.update(reader.shapes(entry))
            except Exception as error:  # the job dead-letters the file with this reason
                reasons.append(f"{text(entry)}: {error}")
    if not shapes:
        raise no_images(source.input, reasons)
    return dict(shapes)


def no_images(input: str, reasons: list[str], total: int | None = None) -> UserError:
    """The error of an input with no usable image, giving the first few of the ``total`` files' or
    records' reasons (``"<id>: <the reader's or the validation's reason>"``)."""
    if not reasons:
        return UserError(f"input {input!r} holds no images; check the path, pattern and --format")
    total = len(reasons) if total is None else total
    more = f" ({total} in all)" if total > _REASONS_SHOWN else ""
    return UserError(f"input {input!r} holds no usable image: " + "; ".join(reasons[:_REASONS_SHOWN]) + more)


class ListFilesFn(beam.DoFn):
    """Any element -> the source's files to read, and tagged ``skipped`` (reasons, counted) and
    ``rejected`` (``Unreadable``) items; see ``inputs.listing``."""

    def __init__(self, source: Source):
        self._source = source
        # One file, one record or dead letter: counted for the accounting (counters.check_accounting).
        whole_folder = source.format == config.IMAGES and source.limit is None
        self._listed = Metrics.counter(NAMESPACE, FILES_LISTED) if whole_folder else None

    def process(self, _):
        for entry in self._source.files():
            if isinstance(entry, Skipped):
                Metrics.counter(NAMESPACE, skipped_counter(entry.reason)).inc()
                yield beam.pvalue.TaggedOutput(SKIPPED, entry.reason)
                continue
            if self._listed is not None:
                self._listed.inc()
            yield beam.pvalue.TaggedOutput(REJECTED, entry) if isinstance(entry, Unreadable) else entry


class PlanUnitsFn(beam.DoFn):
    """A batch of file paths -> the reader's units, and ``rejected`` ``Unreadable`` items."""

    def __init__(self, source: Source):
        self._source = source

    def setup(self):
        self._reader = self._source.reader()

    def process(self, paths):
        for item in self._reader.plan_all(paths):
            yield beam.pvalue.TaggedOutput(REJECTED, item) if isinstance(item, Unreadable) else item


def record_weight(record: dict) -> int:
    """A record's weight in a batch: one, and one more per ``_WEIGHT_BYTES`` of encoded image."""
    return 1 + len(record[features.IMAGE]) // _WEIGHT_BYTES


class ReadUnitFn(beam.DoFn):
    """Unit -> raw records (``batched``: lists of them, each of at most ``BATCH_WEIGHT``, see
    :func:`record_weight`), and ``rejected`` ``Unreadable`` items.

    With the reader option ``keep_labels``, records with other labels (or none) are skipped and
    counted in ``records_skipped_label`` (unless ``counted`` is False: a second pass over the same
    units): they are not rejected, and not counted as read.
    """

    def __init__(self, source: Source, counted: bool = True, batched: bool = False):
        self._source = source
        keep = source.options.keep_labels
        self._keep = frozenset(label.strip() for label in keep) if keep is not None else None
        self._skipped = Metrics.counter(NAMESPACE, SKIPPED_LABEL) if counted else None
        self._batched = batched

    def setup(self):
        self._reader = self._source.reader()
        self._reader.setup()

    def process(self, unit):
        batch, weight = [], 0
        for item in self._reader.read(unit):
            if isinstance(item, Unreadable):
                yield beam.pvalue.TaggedOutput(REJECTED, item)
            elif self._keep is not None and (item[features.LABEL] or "") not in self._keep:
                if self._skipped is not None:
                    self._skipped.inc()
            elif not self._batched:
                yield item
            else:
                if batch and weight + record_weight(item) > BATCH_WEIGHT:
                    yield batch
                    batch, weight = [], 0
                batch.append(item)
                weight += record_weight(item)
        if batch:
            yield batch


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
    """pbegin -> ``{"units", "rejected", "skipped"}``: the input's units of work, spread over the
    workers, what cannot be read, and the reasons of the files skipped."""

    def __init__(self, source: Source):
        super().__init__()
        self._source = source

    def expand(self, pbegin):
        source = self._source
        if source.format == BUILTIN_MNIST:
            paths = pbegin | "Builtin" >> beam.Create([[source.input]])
            unlisted, skipped = [], pbegin | "NoneSkipped" >> beam.Create([])
        else:
            listed = (
                pbegin
                | "Input" >> beam.Create([source.input])
                | "ListFiles" >> beam.ParDo(ListFilesFn(source)).with_outputs(REJECTED, SKIPPED, main="paths")
            )
            paths, unlisted, skipped = listed.paths, [listed[REJECTED]], listed[SKIPPED]
            if source.format != config.IMAGES:  # containers: plan (read headers, scan) in parallel
                paths = paths | "SpreadFiles" >> beam.Reshuffle()
            paths = paths | "BatchPaths" >> beam.BatchElements(
                min_batch_size=FILES_PER_UNIT, max_batch_size=FILES_PER_UNIT
            )
        planned = paths | "PlanUnits" >> beam.ParDo(PlanUnitsFn(source)).with_outputs(REJECTED, main="units")
        units = planned.units
        if source.limit is not None:
            units = units | "Limit" >> LimitUnits(source.limit)
        rejected = (*unlisted, planned[REJECTED]) | "FlattenUnreadable" >> beam.Flatten()
        return {"units": units | "SpreadUnits" >> beam.Reshuffle(), "rejected": rejected, "skipped": skipped}


class ReadUnits(beam.PTransform):
    """Units -> ``{"records", "rejected"}`` (``counted``, ``batched``: see :class:`ReadUnitFn`)."""

    def __init__(self, source: Source, counted: bool = True, batched: bool = False):
        super().__init__()
        self._source = source
        self._counted = counted
        self._batched = batched

    def expand(self, units):
        read_fn = ReadUnitFn(self._source, self._counted, self._batched)
        read = units | "ReadUnits" >> beam.ParDo(read_fn).with_outputs(REJECTED, main="records")
        return {"records": read.records, "rejected": read[REJECTED]}


class ReadImages(beam.PTransform):
    """pbegin -> ``{"records", "rejected", "units", "skipped"}``: :class:`PlanReads` then :class:`ReadUnits`
    (``batched``: ``records`` holds lists of records).

    ``units`` lets a second pass read the same records again (see ``preprocess``).
    """

    def __init__(self, source: Source, batched: bool = False):
        super().__init__()
        self._source = source
        self._batched = batched

    def expand(self, pbegin):
        planned = pbegin | "PlanReads" >> PlanReads(self._source)
        read = planned["units"] | "ReadUnits" >> ReadUnits(self._source, batched=self._batched)
        rejected = (planned["rejected"], read["rejected"]) | "FlattenRejected" >> beam.Flatten()
        units, skipped = planned["units"], planned["skipped"]
        return {"records": read["records"], "rejected": rejected, "units": units, "skipped": skipped}
