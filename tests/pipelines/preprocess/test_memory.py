"""Peak memory of a preprocess on images at the decode limit, measured on the real console script:
images are decoded one at a time, so eight cost about what one costs; and no step of the job holds
the dataset (Beam's fused stages, as the runner plans them)."""

import glob
import os
import shutil
import subprocess

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.runners.portability.fn_api_runner import fn_runner
from PIL import Image

from pipelines.config import DEFAULT_MAX_DECODED_BYTES, PreprocessConfig
from pipelines.inputs.sources import resolve_source
from pipelines.preprocess.job import build_preprocess_pipeline
from tests.helpers import HOURGLASS, ROOT, read_rejected
from transforms.image_spec import ImageSpec

# One image at the limit costs its decode, its float32 copy and the resize's: about 0.5 GB on top of
# TensorFlow and Beam (1.5-2.2 GB in all, measured 2026-12-07, varying run to run). Eight decoded at
# once would cost about 4 GB more; one at a time, about nothing more.
EXTRA_LIMIT = 1 << 30


def _preprocess_peak(tmp_path, name: str, count: int) -> int:
    """Peak RSS (bytes) of ``hourglass preprocess`` on ``count`` copies of the RGBA PNG at the limit."""
    (tmp_path / name).mkdir()
    for index in range(count):
        shutil.copy(tmp_path / "one.png", tmp_path / name / f"{index}.png")
    out = tmp_path / f"{name}-out"
    args = ["--input", str(tmp_path / name), "--output", str(out), "--image-size", "64x64"]
    child = subprocess.Popen(
        [HOURGLASS, "preprocess", *args, "--eval-percent", "1"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = child.stderr.read()
    # This child's own usage (RUSAGE_CHILDREN would hold the largest child of the whole test session).
    _, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, stderr[-2000:]
    files = glob.glob(str(out / "*.tfrecord.gz"))
    assert sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP")) == count
    assert read_rejected(out / "rejected") == []
    return usage.ru_maxrss * 1024  # kilobytes on Linux


@pytest.mark.slow
def test_eight_rgba_images_at_the_decode_limit_cost_about_what_one_costs(tmp_path):
    side = int((DEFAULT_MAX_DECODED_BYTES // 4) ** 0.5)  # RGBA: 4 bytes a pixel, right at the limit
    pixels = np.zeros((side, side, 4), np.uint8)
    pixels[..., 0], pixels[..., 3], pixels[: side // 2, :, 1] = 200, 128, 255
    Image.fromarray(pixels).save(tmp_path / "one.png", compress_level=9)  # a few hundred KB
    del pixels
    one, eight = _preprocess_peak(tmp_path, "one", 1), _preprocess_peak(tmp_path, "eight", 8)
    assert eight < one + EXTRA_LIMIT, f"peak RSS {eight / 2**20:.0f} MiB for 8 images, {one / 2**20:.0f} MiB for 1"


def test_the_second_read_streams_from_the_files_to_the_shards_in_one_stage(image_tree, tmp_path):
    # Were the second read fused into the first pass (both read the same units), the runner would
    # hold every record it read, image bytes and all, until the first pass's verdicts were ready:
    # peak memory in the input's size.
    root, _ = image_tree
    cfg = PreprocessConfig(input=str(root), output=str(tmp_path / "out"))
    p = beam.Pipeline()
    build_preprocess_pipeline(p, cfg, resolve_source(cfg.input), ImageSpec(8, 8, 1), str(tmp_path / "tmp"))
    _, stages = fn_runner.FnApiRunner().create_stages(p.to_runner_api())
    stage_of = {t.unique_name: i for i, stage in enumerate(stages) for t in stage.transforms}
    second = {
        stage_of[name]
        for name in (
            "RereadValidImages/ReadUnits/ReadUnits/ParDo(ReadUnitFn)",
            "RereadValidImages/Validate/Validate/ParDo(ValidateImagesFn)",
            "PreprocessImages/Transform/Transform",
            "EncodeTrain",
            "WriteTrain/WriteImpl/WriteBundles",
        )
    }
    assert len(second) == 1, "the second read's records leave the worker before the shards"
    assert second != {stage_of["ReadValidImages/ReadImages/ReadUnits/ReadUnits/ParDo(ReadUnitFn)"]}
