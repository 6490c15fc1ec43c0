"""tf.data input from the preprocess output.

Layout read (written by ``pipelines.preprocess``): ``DATA/train-*.tfrecord.gz``,
``DATA/eval-*.tfrecord.gz`` (gzipped ``tf.train.Example``) and ``DATA/transform_output/``.
Element contract of :func:`make_dataset`: dicts of batched tensors ``inputs`` and ``pixels``
``(batch, H, W, C)`` float32 and ``label_index`` ``(batch,)`` int64.
"""

from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_transform as tft

from transforms import features

TRANSFORM_DIR = "transform_output"
SPLITS = ("train", "eval")
_USED = (features.INPUTS, features.PIXELS, features.LABEL_INDEX)


def split_pattern(data_dir: str, split: str) -> str:
    """Glob of one split's TFRecord shards."""
    return os.path.join(data_dir, f"{split}-*.tfrecord.gz")


def load_transform_output(data_dir: str) -> tft.TFTransformOutput:
    """Opens ``DATA/transform_output``.

    Raises:
      FileNotFoundError: the folder is not a preprocess output (names the fix).
    """
    path = os.path.join(data_dir, TRANSFORM_DIR)
    if not tf.io.gfile.exists(os.path.join(path, "transform_fn")):
        raise FileNotFoundError(
            f"{path} holds no tf.Transform output; run `hourglass preprocess --output {data_dir}` first"
        )
    return tft.TFTransformOutput(path)


def image_shape(tft_output: tft.TFTransformOutput) -> tuple[int, int, int]:
    """The HxWxC shape of the transformed images, from the transform's metadata."""
    return tuple(int(d) for d in tft_output.transformed_feature_spec()[features.PIXELS].shape)


def split_files(data_dir: str, split: str) -> list[str]:
    """The split's shard paths, sorted.

    Raises:
      FileNotFoundError: no shard matches (names the pattern and the fix).
    """
    files = sorted(tf.io.gfile.glob(split_pattern(data_dir, split)))
    if not files:
        raise FileNotFoundError(
            f"no {split} TFRecords match {split_pattern(data_dir, split)}; run `hourglass preprocess` into {data_dir}"
        )
    return files


def make_dataset(
    files: list[str],
    tft_output: tft.TFTransformOutput,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batched, parsed dataset of the transformed features used in training."""
    spec = {k: v for k, v in tft_output.transformed_feature_spec().items() if k in _USED}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    if shuffle:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(lambda records: tf.io.parse_example(records, spec), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
