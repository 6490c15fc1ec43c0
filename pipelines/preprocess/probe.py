"""Resolving the image shape before preprocessing (the transform graph needs a static shape).

When the config does not fix both the size and the channels, the shapes come from container headers
(IDX, NPY, NPZ, CSV, the built-in sample) or, for image files and TFRecords, from a Beam pass that
validates every image as the job will (``inputs.validation``, stage ``probe``, nothing written) and
counts ``(height, width, has_colour)`` of the valid ones, so a corrupt file's declared size never
counts. A dataset of several sizes with no ``image_size`` is rejected up front with the sizes seen;
one with no usable image with the readers' and the validation's own reasons.
"""

from __future__ import annotations

import json
import tempfile

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.config import ImageLimits, PreprocessConfig
from pipelines.inputs.images import is_color, open_image, upright_size
from pipelines.inputs.sources import ReadImages, Source, no_images, source_shapes
from pipelines.inputs.validation import count_items, validate_read
from pipelines.runner import local_runner
from transforms import features
from transforms.errors import UserError
from transforms.image_spec import ImageSpec

# How many rejected records' reasons the probe keeps for its error.
_REASONS_SHOWN = 3


def resolve_image_spec(cfg: PreprocessConfig, source: Source, options: PipelineOptions) -> ImageSpec:
    """The target shape: from the config where given, else from the data (``source``, resolved from ``cfg``).

    Raises:
      UserError: no readable image was found, or several sizes and no ``image_size``.
    """
    if cfg.image_size and cfg.channels:
        return ImageSpec(*cfg.image_size, cfg.channels, cfg.resize, cfg.background)
    shapes = source_shapes(source)
    if shapes is None:
        shapes = probe_shapes(source, options, ImageLimits.of(cfg))
    sizes = sorted({(h, w) for h, w, _ in shapes})
    if cfg.image_size is None and len(sizes) > 1:
        seen = ", ".join(
            f"{h}x{w} ({sum(n for (hh, ww, _), n in shapes.items() if (hh, ww) == (h, w))} images)"
            for h, w in sizes[:10]
        )
        raise UserError(
            f"images in {cfg.input!r} differ in size: {seen}{' ...' if len(sizes) > 10 else ''}; "
            "pass --image-size HxW (and --resize pad|crop|stretch) to bring them to one size"
        )
    height, width = cfg.image_size or sizes[0]
    channels = cfg.channels or (3 if any(color for _, _, color in shapes) else 1)
    return ImageSpec(height, width, channels, cfg.resize, cfg.background)


def probe_shapes(source: Source, options: PipelineOptions, limits: ImageLimits) -> dict[tuple[int, int, bool], int]:
    """Counts ``(height, width, has_colour)`` over the valid images, with one Beam pass.

    Raises:
      UserError: no valid image; gives a few rejected records' reasons.
    """
    base = options.get_all_options().get("temp_location") or tempfile.mkdtemp(prefix="hourglass-probe-")
    prefix = FileSystems.join(base, "shapes")
    with beam.Pipeline(runner=local_runner(options), options=options) as p:
        read = p | "ReadImages" >> ReadImages(source)
        checked = validate_read(read, "probe", limits, counted=False)
        shapes = (
            checked["valid"]
            | "Shapes" >> beam.FlatMap(_shape)
            | "CountShapes" >> beam.combiners.Count.PerElement()
            | "ShapesToJson" >> beam.MapTuple(lambda shape, n: json.dumps({"shape": shape, "n": n}))
        )
        examples = (
            checked["rejected"]
            | "SomeRejected" >> beam.combiners.Sample.FixedSizeGlobally(_REASONS_SHOWN)
            | "RejectedToJson" >> beam.FlatMap(_reasons_json)
        )
        rejected = count_items([checked["rejected"]], "Rejected") | "CountToJson" >> beam.Map(
            lambda n: json.dumps({"rejected_count": n})
        )
        _ = (
            (shapes, examples, rejected)
            | "Flatten" >> beam.Flatten()
            | "Write" >> beam.io.WriteToText(prefix, shard_name_template="")
        )
    with FileSystems.open(prefix) as f:
        rows = [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line]
    FileSystems.delete([prefix])
    shapes = {(h, w, bool(color)): row["n"] for row in rows if "shape" in row for h, w, color in [row["shape"]]}
    if not shapes:
        reasons = sorted(row["rejected"] for row in rows if "rejected" in row)
        raise no_images(source.input, reasons, next(row["rejected_count"] for row in rows if "rejected_count" in row))
    return shapes


def _reasons_json(rejected: list[dict]) -> list[str]:
    return [json.dumps({"rejected": f"{r['id']}: {r['error']}"}) for r in rejected]


def _shape(record: dict):
    """``(height, width, has_colour)`` of a valid record's image header, as shown (after its EXIF
    orientation)."""
    image = open_image(record[features.IMAGE])
    yield *upright_size(image), is_color(image.mode)
