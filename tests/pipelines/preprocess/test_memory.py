"""Peak memory of a preprocess on images at the decode limit, measured on the real console script."""

import glob
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines.config import DEFAULT_MAX_DECODED_BYTES
from tests.helpers import HOURGLASS, ROOT, read_rejected

PEAK_RSS_LIMIT = 2 << 30


@pytest.mark.slow
def test_eight_rgba_images_at_the_decode_limit_stay_under_2_gb(tmp_path):
    side = int((DEFAULT_MAX_DECODED_BYTES // 4) ** 0.5)  # RGBA: 4 bytes a pixel, right at the limit
    pixels = np.zeros((side, side, 4), np.uint8)
    pixels[..., 0], pixels[..., 3], pixels[: side // 2, :, 1] = 200, 128, 255
    (tmp_path / "in").mkdir()
    Image.fromarray(pixels).save(tmp_path / "one.png", compress_level=9)  # a few hundred KB
    del pixels
    for index in range(8):
        shutil.copy(tmp_path / "one.png", tmp_path / "in" / f"{index}.png")
    args = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--image-size", "64x64"]
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
    peak = usage.ru_maxrss * 1024  # kilobytes on Linux
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
    files = glob.glob(str(tmp_path / "out" / "*.tfrecord.gz"))
    assert sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP")) == 8
    assert read_rejected(tmp_path / "out" / "rejected") == []
