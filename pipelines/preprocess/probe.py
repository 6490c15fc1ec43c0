"""Resolving the image shape before preprocessing (the transform graph needs a static shape).

When the config does not fix both the size and the channels, the shapes come from container headers
(IDX, NPY, NPZ, CSV, the built-in sample) or, for image files and TFRecords, from a light Beam pass
that reads every image's header (no decoding) and counts ``(height, width, has_colour)``. A dataset
of several sizes with no ``image_size`` is rejected up front with the sizes seen.
"""

from __future__ import annotations

import json
import tempfile

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.config import PreprocessConfig
from pipelines.inputs.images import is_color, open_image, upright_size
from pipelines.inputs.sources import ReadImages, Source, source_shapes
from transforms import features
from transforms.errors import UserError
from transforms.image_spec import ImageSpec


def resolve_image_spec(cfg: PreprocessConfig, source: Source, options: PipelineOptions) -> ImageSpec:
    """The target shape: from the config where given, else from the data (``source``, resolved from ``cfg``).

    Raises:
      UserError: no readable image was found, or several sizes and no ``image_size``.
    """
    if cfg.image_size and cfg.channels:
        return ImageSpec(*cfg.image_size, cfg.channels, cfg.resize, cfg.background)
    shapes = source_shapes(source)
    if shapes is None:
        shapes = probe_shapes(source, options)
    if not shapes:
        raise UserError(f"input {cfg.input!r} holds no readable image; see its rejected/ records")
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


def probe_shapes(source: Source, options: PipelineOptions) -> dict[tuple[int, int, bool], int]:
    """Counts ``(height, width, has_colour)`` over the readable image headers, with one Beam pass."""
    base = options.get_all_options().get("temp_location") or tempfile.mkdtemp(prefix="hourglass-probe-")
    prefix = FileSystems.join(base, "shapes")
    with beam.Pipeline(options=options) as p:
        read = p | "ReadImages" >> ReadImages(source)
        _ = (
            read["records"]
            | "Shapes" >> beam.FlatMap(_shape)
            | "CountShapes" >> beam.combiners.Count.PerElement()
            | "ToJson" >> beam.MapTuple(lambda shape, n: json.dumps([*shape, n]))
            | "WriteShapes" >> beam.io.WriteToText(prefix, shard_name_template="")
        )
    with FileSystems.open(prefix) as f:
        rows = [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line]
    FileSystems.delete([prefix])
    return {(h, w, bool(color)): n for h, w, color, n in rows}


def _shape(record: dict):
    """``(height, width, has_colour)`` of a record's image header, as shown (after its EXIF
    orientation); nothing for non-images (the preprocess job dead-letters those)."""
    try:
        image = open_image(record[features.IMAGE])
    except Exception:  # not an image: no shape to count
        return
    yield *upright_size(image), is_color(image.mode)
