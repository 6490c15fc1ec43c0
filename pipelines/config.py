"""Stage configuration for the Beam jobs and the whole run (frozen dataclasses), and the checked constants.

Each option is written once, here (or in ``models.config`` for training), as a dataclass field
with its default and its help text; the command line's options are generated from these fields
(``pipelines.cli``) and job-config files are checked against them (``pipelines.config_loader``).
Each stage gets only its own config. Beam runner flags are not here: they stay Beam
``PipelineOptions`` (passed after ``--`` on the command line, or as ``beam_options`` in a job
config). The resolved config is written as ``config.json`` next to every artifact a stage produces.

This module imports only light modules (no TensorFlow, Beam or PIL), so the command line starts fast.
"""

from __future__ import annotations

import dataclasses
import re
from typing import NamedTuple

from models.config import CONFIG_JSON, TRUST_MODEL_HELP, TrainConfig, write_config  # noqa: F401  (every stage's config.json)
from models.fields import option
from models.model_info import OUTPUTS
from transforms.errors import DriftDetected, UserError
from transforms.image_spec import NORMALIZATIONS, RESIZE_POLICIES

BUILTIN_MNIST = "builtin:mnist"
IMAGES, IDX, NPY, NPZ, CSV, TFRECORD = "images", "idx", "npy", "npz", "csv", "tfrecord"
FORMATS = (IMAGES, IDX, NPY, NPZ, CSV, TFRECORD)
DEFAULT_MAX_PIXELS = 64_000_000
# Decoded bytes (width x height x channels x bytes per sample) of the largest image decoded (64 MiB): a
# 22 MP RGB photo passes; 8 RGBA images at the limit keep a preprocess under 2 GB peak RSS.
DEFAULT_MAX_DECODED_BYTES = 64 << 20
_MAX_DECODED_HELP = "Reject images whose decoded pixels (W x H x channels x bytes per sample) take more bytes."
DEFAULT_MAX_FILE_BYTES = 256 << 20
PIXEL_FORMATS = ("float", "png")
COMPRESSIONS = ("snappy", "zstd")
# How --watch runs: a loop of bounded Beam jobs that publishes each window as it closes (any
# runner), or one unbounded Beam pipeline for streaming runners (Dataflow, Flink).
WATCH_MODES = ("micro-batch", "streaming")
_INPUT_HELP = "builtin:mnist, a folder, a glob pattern or a file (images, IDX, NPY, NPZ, CSV, TFRecord)."


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """``"28x28"`` -> ``(28, 28)``.

    Raises:
      UserError: not of the form HxW with positive integers.
    """
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise UserError(f"image size must look like HxW (e.g. 28x28), got {text!r}")
    return int(match.group(1)), int(match.group(2))


_COLOURS = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "gray": (128, 128, 128)}


def parse_color(text: str) -> tuple[int, int, int]:
    """``"white"``, ``"#ff8000"`` or ``"255,128,0"`` -> ``(r, g, b)``.

    Raises:
      UserError: none of those forms (lists them).
    """
    value = text.strip().lower()
    if value in _COLOURS:
        return _COLOURS[value]
    if re.fullmatch(r"#[0-9a-f]{6}", value):
        return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))
    parts = value.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return tuple(int(p) for p in parts)
    raise UserError(f"colour must be {', '.join(_COLOURS)}, #rrggbb or R,G,B (0..255), got {text!r}")


class ImageLimits(NamedTuple):
    """The bounds every image is checked against from its header, before it is decoded."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES

    @classmethod
    def of(cls, cfg) -> ImageLimits:
        """The limits of a stage config (``max_pixels``, ``max_decoded_bytes``)."""
        return cls(cfg.max_pixels, cfg.max_decoded_bytes)


@dataclasses.dataclass(frozen=True)
class ReaderOptions:
    """How to read an input; every field is optional."""

    format: str = option(
        "auto", "Input format; auto: from file names and contents.", flag="--format", choices=("auto", *FORMATS)
    )
    image_key: str | None = option(None, "NPZ array / TFRecord feature of the images (default: x|images, image).")
    label_key: str | None = option(None, "NPZ array / TFRecord feature / CSV column (name, index or none) of labels.")
    labels: str | None = option(None, "A labels file for NPY or IDX images (default: the sibling file).", path=True)
    pixel_max: float | None = option(
        None, "The value meaning white in arrays and CSV (default by dtype: 255, 65535 for uint16, 1.0 for floats)."
    )
    max_file_bytes: int = option(
        DEFAULT_MAX_FILE_BYTES,
        "Reject larger image files unread (file_too_large); containers are read in ranges and have no limit.",
    )
    keep_labels: tuple[str, ...] | None = option(
        None,
        "Read only the records with these labels (comma-separated, e.g. 1,5,6); the others are skipped and "
        "counted (records_skipped_label), not rejected.",
        metavar="LABELS",
    )

    def __post_init__(self):
        _choice("format", self.format, ("auto", *FORMATS))
        if self.max_file_bytes <= 0:
            raise UserError(f"max_file_bytes must be positive, got {self.max_file_bytes}")
        if self.keep_labels is not None and not any(label.strip() for label in self.keep_labels):
            raise UserError("keep_labels must name at least one label, e.g. --keep-labels 1,5,6")
        if self.pixel_max is not None and not self.pixel_max > 0:
            raise UserError(f"pixel_max must be positive, got {self.pixel_max}")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Read, validate, split and tf.Transform images into TFRecords."""

    input: str = option(help=_INPUT_HELP, path=True)
    output: str = option(help="Where the TFRecords, transform_output/, rejected/ and stats.json go.", path=True)
    image_size: tuple[int, int] | None = option(
        None, "HxW to bring every image to (default: the dataset's one size).", metavar="HxW", parse=parse_image_size
    )
    channels: int | None = option(None, "1 or 3 (default: 3 when any image has colour, else 1).", choices=(1, 3))
    resize: str = option("stretch", "How images of another size reach --image-size.", choices=RESIZE_POLICIES)
    normalize: str = option(
        "unit", "unit ([0, 1]) or standardize (per-pixel z-score from the train split).", choices=NORMALIZATIONS
    )
    eval_percent: int = option(10, "Share of records (by a hash of the id) that go to the eval split.")
    max_pixels: int = option(DEFAULT_MAX_PIXELS, "Reject larger images (decompression bombs).")
    max_decoded_bytes: int = option(DEFAULT_MAX_DECODED_BYTES, _MAX_DECODED_HELP)
    max_reject_fraction: float = option(0.01, "Fail when a larger share of the records is rejected.")
    limit: int | None = option(None, "Read only the first N records.")
    reader: ReaderOptions = option(help="How to read the input.", factory=ReaderOptions)
    background: tuple[int, int, int] = option(
        (0, 0, 0), "Alpha and pad colour: a name, #rrggbb or R,G,B.", metavar="COLOUR", parse=parse_color
    )

    def __post_init__(self):
        _choice("resize", self.resize, RESIZE_POLICIES)
        _choice("normalize", self.normalize, NORMALIZATIONS)
        if self.channels not in (None, 1, 3):
            raise UserError(f"channels must be 1 or 3, got {self.channels}")
        if not 0 < self.eval_percent < 100:
            raise UserError(f"eval_percent must be between 1 and 99, got {self.eval_percent}")
        if not 0 <= self.max_reject_fraction <= 1:
            raise UserError(f"max_reject_fraction must be in [0, 1], got {self.max_reject_fraction}")
        _check_limit(self.limit)


@dataclasses.dataclass(frozen=True)
class InferConfig:
    """Encode and reconstruct images with a trained model; write Parquet, once or as files land."""

    model_dir: str = option(help="A training output folder (holds saved_model/).", path=True)
    output: str = option(
        help="Folder of the Parquet predictions (predictions-*.parquet, _rejected/, _config.json, _manifest.json; "
        "with --run-id or --watch one partition per run or window).",
        path=True,
    )
    input: str | None = option(None, "Images to read once: " + _INPUT_HELP, path=True)
    batch_size_min: int = option(32, "Smallest RunInference batch.")
    batch_size_max: int = option(1024, "Largest RunInference batch.")
    max_pixels: int = option(DEFAULT_MAX_PIXELS, "Reject larger images (decompression bombs).")
    max_decoded_bytes: int = option(DEFAULT_MAX_DECODED_BYTES, _MAX_DECODED_HELP)
    limit: int | None = option(None, "Read only the first N records.")
    reader: ReaderOptions = option(help="How to read the input.", factory=ReaderOptions)
    run_id: str | None = option(
        None, "A scheduled run's id (e.g. a date): writes OUTPUT/run_id=ID/, replaced by a rerun."
    )
    outputs: tuple[str, ...] | None = option(
        None,
        f"Comma-separated output columns of {','.join(OUTPUTS)} (default: all but denoised, the older name "
        "of restored).",
        metavar="COLS",
    )
    pixels: str = option("float", "Image columns as float lists in [0, 1] or PNG bytes.", choices=PIXEL_FORMATS)
    compression: str = option("snappy", "Parquet codec.", choices=COMPRESSIONS)
    skip_existing: bool = option(
        False, "With --run-id: encode only records whose id, bytes and model are in no other partition of OUTPUT."
    )
    watch: str | None = option(
        None,
        "Instead of --input: encode image files as they land in this folder (names starting with . are skipped).",
        path=True,
    )
    window_seconds: float = option(60.0, "With --watch: the width of each window (one partition per window).")
    poll_seconds: float = option(5.0, "With --watch: how often the folder is listed.")
    watch_seconds: float | None = option(
        None, "With --watch: stop after this long (default: run until SIGTERM or SIGINT)."
    )
    fail_on_drift: bool = option(
        False,
        f"Publish the run (or watch window), then exit with code {DriftDetected.exit_code} when its manifest's "
        "drift section says detected: true.",
    )
    watch_mode: str = option(
        "micro-batch",
        "With --watch: micro-batch (bounded Beam jobs, each window published as it closes, any runner) or "
        "streaming (one unbounded pipeline, for streaming runners such as Dataflow and Flink).",
        choices=WATCH_MODES,
    )
    trust_model: bool = option(False, TRUST_MODEL_HELP)

    def __post_init__(self):
        if self.input is not None and self.watch is not None:
            raise UserError("pass only one of --input (a batch run) and --watch (streaming)")
        if self.input is None and self.watch is None:
            raise UserError("pass --input (a batch run) or --watch (streaming)")
        if not 0 < self.batch_size_min <= self.batch_size_max:
            raise UserError(
                f"need 0 < batch_size_min <= batch_size_max, got {self.batch_size_min}, {self.batch_size_max}"
            )
        if self.outputs is not None:
            object.__setattr__(self, "outputs", check_outputs(tuple(self.outputs)))
        _choice("pixels", self.pixels, PIXEL_FORMATS)
        _choice("compression", self.compression, COMPRESSIONS)
        if self.run_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", self.run_id):
            raise UserError(
                f"run id must be letters, digits and . _ + - (starting with a letter or digit), got {self.run_id!r}"
            )
        if self.watch is not None and self.run_id is not None:
            raise UserError(
                "--run-id names one batch run's partition; --watch writes one partition per window: use one"
            )
        if self.skip_existing and self.run_id is None:
            raise UserError(
                "--skip-existing compares with the other partitions of --output: pass --run-id too "
                "(a watch reads each file once by itself)"
            )
        _choice("watch_mode", self.watch_mode, WATCH_MODES)
        if self.window_seconds <= 0 or self.poll_seconds <= 0 or (self.watch_seconds or 1) <= 0:
            raise UserError("window, poll and watch seconds must be positive")
        _check_limit(self.limit)


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """Evaluate a trained model; write a visual report (index.html) and metrics.json.

    Exactly one of ``data`` (a preprocess output: its eval split is evaluated, its train split sets
    the anomaly threshold and fits the baselines) and ``input`` (images read and evaluated as one
    set: threshold and baselines from the same images, classifiers cross-validated).
    """

    model_dir: str = option(help="A training output folder (holds saved_model/).", path=True)
    output: str = option(help="Where index.html, metrics.json, the figures and config.json go.", path=True)
    data: str | None = option(None, "A preprocess output: its eval split is evaluated.", path=True)
    input: str | None = option(None, "Instead of --data: images to read (any preprocess input).", path=True)
    limit: int | None = option(None, "With --input: read only the first N records.")
    reader: ReaderOptions = option(help="How to read --input.", factory=ReaderOptions)
    max_examples: int = option(10_000, "Images used per split, at most (the first ones read).")
    threshold_percentile: float = option(99.0, "The suggested anomaly threshold: this percentile of reference errors.")
    normal_labels: tuple[str, ...] | None = option(
        None,
        "Labels of normal images (comma-separated, e.g. 1,7); images with other labels are anomalies: reports "
        "AUROC, AUPR, F1 at the model's stored threshold and its FPR on normal images.",
        metavar="LABELS",
    )
    max_pixels: int = option(DEFAULT_MAX_PIXELS, "With --input: reject larger images.")
    max_decoded_bytes: int = option(DEFAULT_MAX_DECODED_BYTES, "With --input: " + _MAX_DECODED_HELP)
    seed: int = option(0, "Seed of the pairs interpolated, prior samples, noise and t-SNE.")
    trust_model: bool = option(False, TRUST_MODEL_HELP)

    def __post_init__(self):
        if (self.data is None) == (self.input is None):
            raise UserError("pass exactly one of --data (a preprocess output) and --input (images to read)")
        if self.max_examples <= 0:
            raise UserError(f"max_examples must be positive, got {self.max_examples}")
        if not 0 < self.threshold_percentile < 100:
            raise UserError(f"threshold_percentile must be in (0, 100), got {self.threshold_percentile}")
        _check_limit(self.limit)


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """The stage configs of one command: the whole run has all four, a stage command its own (others None)."""

    preprocess: PreprocessConfig | None = None
    train: TrainConfig | None = None
    infer: InferConfig | None = None
    evaluate: EvaluateConfig | None = None


def check_outputs(outputs: tuple[str, ...]) -> tuple[str, ...]:
    """Validates an output column selection; returns it in schema order.

    Raises:
      UserError: empty, or naming an unknown column (lists the valid ones).
    """
    unknown = sorted(set(outputs) - set(OUTPUTS))
    if unknown or not outputs:
        raise UserError(
            f"outputs must be a non-empty selection of {', '.join(OUTPUTS)}, got {', '.join(outputs) or 'none'}"
        )
    return tuple(c for c in OUTPUTS if c in outputs)


def _choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit <= 0:
        raise UserError(f"limit must be positive, got {limit}")
