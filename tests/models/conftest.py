"""Fixtures for the training tests: data folders written directly as TFRecords, with the
``preprocessed`` fixture's transform output, so that record counts, shards and values are exact."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import HEIGHT, WIDTH
from transforms import features
from transforms.layout import TRANSFORM_DIR


def example(index: int, value: float, size: int = HEIGHT * WIDTH) -> bytes:
    """A transformed record whose ``inputs`` and ``pixels`` are all ``value``, ``label_index`` ``index``."""
    pixels = tf.train.Feature(float_list=tf.train.FloatList(value=[value] * size))
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                features.INPUTS: pixels,
                features.PIXELS: pixels,
                features.LABEL_INDEX: tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
            }
        )
    ).SerializeToString()


def write_records(path, records: list[bytes]) -> None:
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for record in records:
            writer.write(record)


@pytest.fixture
def make_data(preprocessed, tmp_path):
    """``make_data(train=[n, ...], eval=[n, ...])`` -> a data folder with one shard per count.

    Record ``i`` (counted over the split's shards) has ``label_index`` ``i`` and every pixel at a
    value that depends on ``i``; ``value`` overrides the pixel value of every record (e.g. NaN).
    """
    created = 0

    def make(train=(24,), eval=(8,), value=None, size=HEIGHT * WIDTH):
        nonlocal created
        created += 1
        root = tmp_path / f"data{created}"
        shutil.copytree(f"{preprocessed.output}/{TRANSFORM_DIR}", root / TRANSFORM_DIR)
        for split, counts in (("train", train), ("eval", eval)):
            index = 0
            for shard, count in enumerate(counts):
                records = []
                for _ in range(count):
                    pixel = np.float32((index % 97) / 97) if value is None else value
                    records.append(example(index, float(pixel), size))
                    index += 1
                write_records(root / f"{split}-{shard:05d}-of-{len(counts):05d}.tfrecord.gz", records)
        return str(root)

    return make
