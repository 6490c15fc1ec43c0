"""Stage configuration for the Beam jobs and the whole run (frozen dataclasses).

Each stage gets only its own config. Beam runner flags are not here: they stay Beam
``PipelineOptions`` (passed after ``--`` on the command line). The resolved config is written as
``config.json`` next to every artifact a stage produces.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import tensorflow as tf

from models.config import TrainConfig
from pipelines.parquet_schema import COMPRESSIONS, PIXEL_FORMATS, check_outputs
from pipelines.sources import BUILTIN_MNIST, ReaderOptions
from pipelines.validation import DEFAULT_MAX_PIXELS
from transforms.image_ops import RESIZE_POLICIES
from transforms.preprocessing import NORMALIZATIONS

CONFIG_JSON = "config.json"


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Attributes:
    input: ``builtin:mnist``, a folder, a glob pattern or a file (see ``sources``).
    output: where TFRecords, ``transform_output/``, ``rejected/`` and ``stats.json`` go.
    image_size: ``(height, width)`` to bring every image to, or None to keep the dataset's one size.
    channels: 1 or 3, or None to pick 3 when any image has colour, else 1.
    resize: ``stretch``, ``pad`` or ``crop`` (with ``image_size``).
    normalize: ``unit`` ([0, 1]) or ``standardize`` (per-pixel z-score from the train split).
    eval_percent: share of records (by a hash of ``id``) that go to the eval split.
    max_pixels: images with more pixels are rejected (decompression bombs).
    max_reject_fraction: the job fails when more of the records than this are rejected.
    limit: read only the first this many records (quick runs and tests).
    reader: the input format and how to read it (``readers.ReaderOptions``).
    background: ``(r, g, b)`` 0..255 that transparency is composited on and ``pad`` fills with.
    """

    input: str = BUILTIN_MNIST
    output: str = "hourglass-output/data"
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    resize: str = "stretch"
    normalize: str = "unit"
    eval_percent: int = 10
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_reject_fraction: float = 0.01
    limit: int | None = None
    reader: ReaderOptions = dataclasses.field(default_factory=ReaderOptions)
    background: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self):
        _choice("resize", self.resize, RESIZE_POLICIES)
        _choice("normalize", self.normalize, NORMALIZATIONS)
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not 0 < self.eval_percent < 100:
            raise ValueError(f"eval_percent must be between 1 and 99, got {self.eval_percent}")
        if not 0 <= self.max_reject_fraction <= 1:
            raise ValueError(f"max_reject_fraction must be in [0, 1], got {self.max_reject_fraction}")


@dataclasses.dataclass(frozen=True)
class InferConfig:
    """Attributes:
    model_dir: a training output (holds ``saved_model/``).
    input: ``builtin:mnist``, a folder, a glob pattern or a file (see ``sources``); unused with ``watch``.
    output: where the predictions go: ``predictions-*.parquet``, ``_rejected/``, ``_config.json`` and
      ``_manifest.json``, under ``output/run_id=RUN_ID/`` when ``run_id`` is set.
    batch_size_min, batch_size_max: bounds of RunInference's batches.
    max_pixels: images with more pixels are rejected.
    limit: read only the first this many records.
    reader: the input format and how to read it (``readers.ReaderOptions``).
    run_id: a scheduled run's id (e.g. a date): the output is the Hive partition
      ``output/run_id=RUN_ID``, published only when the run succeeds and replaced by a re-run.
    outputs: the output columns to write, from ``parquet_schema.OUTPUT_COLUMNS`` (None: all of them,
      ``denoised`` null unless the model denoises); the key columns are always written.
    pixels: ``float`` (list<float32> in [0, 1]) or ``png`` (PNG bytes) for the image columns.
    compression: Parquet codec, ``snappy`` or ``zstd``.
    watch: a folder to watch instead of reading ``input`` once (streaming mode).
    window_seconds: with ``watch``, the width of the fixed windows, one set of files per window.
    poll_seconds: with ``watch``, how often the folder is listed.
    watch_seconds: with ``watch``, stop after this long (None: run until stopped).
    """

    model_dir: str
    input: str = BUILTIN_MNIST
    output: str = "hourglass-output/predictions"
    batch_size_min: int = 32
    batch_size_max: int = 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    limit: int | None = None
    reader: ReaderOptions = dataclasses.field(default_factory=ReaderOptions)
    run_id: str | None = None
    outputs: tuple[str, ...] | None = None
    pixels: str = "float"
    compression: str = "snappy"
    watch: str | None = None
    window_seconds: float = 60.0
    poll_seconds: float = 5.0
    watch_seconds: float | None = None

    def __post_init__(self):
        if not 0 < self.batch_size_min <= self.batch_size_max:
            raise ValueError(
                f"need 0 < batch_size_min <= batch_size_max, got {self.batch_size_min}, {self.batch_size_max}"
            )
        if self.outputs is not None:
            object.__setattr__(self, "outputs", check_outputs(tuple(self.outputs)))
        _choice("pixels", self.pixels, PIXEL_FORMATS)
        _choice("compression", self.compression, COMPRESSIONS)
        if self.run_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", self.run_id):
            raise ValueError(
                f"run id must be letters, digits and . _ + - (starting with a letter or digit), got {self.run_id!r}"
            )
        if self.watch is not None and self.run_id is not None:
            raise ValueError("--run-id names one batch run's partition; --watch writes windowed files: use one")
        if self.window_seconds <= 0 or self.poll_seconds <= 0 or (self.watch_seconds or 1) <= 0:
            raise ValueError("window, poll and watch seconds must be positive")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """Attributes:
    model_dir: a training output (holds ``saved_model/``).
    output: where ``index.html``, ``metrics.json``, the figures and ``config.json`` go.
    data: a preprocess output: its eval split is evaluated, its train split sets the anomaly
      threshold and fits the baselines (PCA, classifiers). Exactly one of ``data`` and ``input``.
    input: ``builtin:mnist`` or a folder of images, evaluated as one set (threshold and baselines
      from the same images, classifiers cross-validated).
    limit: read only this many records of ``builtin:mnist`` (with ``input``).
    max_examples: use at most this many records of each split (the first ones read).
    threshold_percentile: the suggested anomaly threshold is this percentile of the reference errors.
    max_pixels: images with more pixels are rejected (with ``input``).
    seed: for the pairs interpolated, prior samples, noise and t-SNE.
    """

    model_dir: str
    output: str
    data: str | None = None
    input: str | None = None
    limit: int | None = None
    max_examples: int = 10_000
    threshold_percentile: float = 99.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    seed: int = 0

    def __post_init__(self):
        if (self.data is None) == (self.input is None):
            raise ValueError("pass exactly one of --data (a preprocess output) and --input (images to read)")
        if self.max_examples <= 0:
            raise ValueError(f"max_examples must be positive, got {self.max_examples}")
        if not 0 < self.threshold_percentile < 100:
            raise ValueError(f"threshold_percentile must be in (0, 100), got {self.threshold_percentile}")


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """The whole run: preprocess -> train -> infer -> evaluate, with outputs under one folder."""

    preprocess: PreprocessConfig
    train: TrainConfig
    infer: InferConfig
    evaluate: EvaluateConfig


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """``"28x28"`` -> ``(28, 28)``.

    Raises:
      ValueError: not of the form HxW with positive integers.
    """
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise ValueError(f"image size must look like HxW (e.g. 28x28), got {text!r}")
    return int(match.group(1)), int(match.group(2))


_COLOURS = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "gray": (128, 128, 128)}


def parse_color(text: str) -> tuple[int, int, int]:
    """``"white"``, ``"#ff8000"`` or ``"255,128,0"`` -> ``(r, g, b)``.

    Raises:
      ValueError: none of those forms (lists them).
    """
    value = text.strip().lower()
    if value in _COLOURS:
        return _COLOURS[value]
    if re.fullmatch(r"#[0-9a-f]{6}", value):
        return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))
    parts = value.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return tuple(int(p) for p in parts)
    raise ValueError(f"colour must be {', '.join(_COLOURS)}, #rrggbb or R,G,B (0..255), got {text!r}")


def write_config(config, directory: str, name: str = CONFIG_JSON) -> str:
    """Writes ``directory/config.json`` (the resolved config; or ``name``) and returns its path."""
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, name)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2, sort_keys=True)
    return path


def _choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
