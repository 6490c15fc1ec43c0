"""tf.data input from the preprocess output.

Layout read (written by ``pipelines.preprocess``, named in ``transforms.layout``):
``DATA/train-*.tfrecord.gz``, ``DATA/eval-*.tfrecord.gz`` (gzipped ``tf.train.Example``) and
``DATA/transform_output/``.
Element contract of :func:`make_dataset`: dicts of batched tensors ``inputs`` and ``pixels``
``(batch, H, W, C)`` float32 and ``label_index`` ``(batch,)`` int64. For a restoration model,
:func:`corruptor` makes the batches' ``inputs`` those of the corrupted ``pixels`` (training only:
the export is given what users have, already corrupted); ``pixels`` stay the clean targets.

:class:`SplitInput` builds one split's distributed batches epoch after epoch, as training iterates them.

Distribution: each worker's pipeline reads its own shard, chosen explicitly here (whole files when
there are at least as many files as workers, else every n-th record), and the record order is
deterministic for a given seed, so a resumed epoch can skip exactly the records already trained on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Callable

import tensorflow as tf
import tensorflow_transform as tft

from transforms import features
from transforms.corruption import CorruptionSpec
from transforms.errors import UserError
from transforms.image_ops import corrupt
from transforms.layout import SPLITS, STATS_JSON, TRANSFORM_DIR, split_pattern

SHUFFLE_BUFFER = 10_000  # examples, and at most _SHUFFLE_BUFFER_BYTES of them
_SHUFFLE_BUFFER_BYTES = 256 * 2**20
_PARSE_BATCH = 256
# Parsed batches read ahead of the training: at the end of an epoch, the time to fill the next
# epoch's shuffle buffer.
LOOKAHEAD_BYTES = 64 * 2**20
_USED = (features.INPUTS, features.PIXELS, features.LABEL_INDEX)
# A fixed interleave width keeps the record order the same on any machine (AUTOTUNE would follow
# the core count), which skip-by-step resumption relies on.
_MAX_PARALLEL_READS = 8
_FINGERPRINT_HEAD_BYTES = 64 * 2**10

ShardPolicy = tf.data.experimental.AutoShardPolicy


def load_transform_output(data_dir: str) -> tft.TFTransformOutput:
    """Opens ``DATA/transform_output``.

    Raises:
      UserError: the folder does not exist or is not a preprocess output (names the fix).
    """
    if not tf.io.gfile.isdir(data_dir):
        raise UserError(f"data folder {data_dir} does not exist; run `hourglass preprocess --output {data_dir}` first")
    path = os.path.join(data_dir, TRANSFORM_DIR)
    if not tf.io.gfile.exists(os.path.join(path, "transform_fn")):
        raise UserError(f"{path} holds no tf.Transform output; run `hourglass preprocess --output {data_dir}` first")
    return tft.TFTransformOutput(path)


def image_shape(tft_output: tft.TFTransformOutput) -> tuple[int, int, int]:
    """The HxWxC shape of the transformed images, from the transform's metadata."""
    return tuple(int(d) for d in tft_output.transformed_feature_spec()[features.PIXELS].shape)


def split_files(data_dir: str, split: str) -> list[str]:
    """The split's shard paths, sorted.

    Raises:
      UserError: no shard matches (names the pattern and the fix).
    """
    files = sorted(tf.io.gfile.glob(split_pattern(data_dir, split)))
    if not files:
        raise UserError(
            f"no {split} TFRecords match {split_pattern(data_dir, split)}; run `hourglass preprocess` into {data_dir}"
        )
    return files


def data_fingerprint(data_dir: str) -> dict:
    """What identifies the data in ``data_dir``: the transform output, the shards and the record counts.

    Returns ``{"fingerprint": 16 hex digits, "shards": {split: n}, "records": {split: n}}``; the
    fingerprint hashes every file of ``transform_output/`` (path and bytes), each shard's name, size
    and first 64 KiB, and the record counts of ``stats.json`` (when there is one).
    """
    digest = hashlib.sha256()
    transform_dir = os.path.join(data_dir, TRANSFORM_DIR)
    for folder, _, names in sorted(tf.io.gfile.walk(transform_dir)):
        for name in sorted(names):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, transform_dir).encode() + b"\0")
            with tf.io.gfile.GFile(path, "rb") as f:
                digest.update(f.read())
    shards = {}
    for split in SPLITS:
        files = sorted(tf.io.gfile.glob(split_pattern(data_dir, split)))
        shards[split] = len(files)
        for path in files:
            with tf.io.gfile.GFile(path, "rb") as f:
                head = f.read(_FINGERPRINT_HEAD_BYTES)
            digest.update(f"{os.path.basename(path)}:{tf.io.gfile.stat(path).length}:".encode() + head)
    records = {}
    stats_path = os.path.join(data_dir, STATS_JSON)
    if tf.io.gfile.exists(stats_path):
        with tf.io.gfile.GFile(stats_path) as f:
            splits = json.load(f).get("splits", {})
        records = {split: splits.get(split, {}).get("records") for split in SPLITS}
        digest.update(json.dumps(records, sort_keys=True).encode())
    return {"fingerprint": digest.hexdigest()[:16], "shards": shards, "records": records}


def check_split(files: list[str], tft_output: tft.TFTransformOutput, split: str) -> None:
    """Reads the split's first record and parses it with the transform's feature spec.

    Raises:
      UserError: the split holds no records, cannot be read, or its records do not match the
        transform output (TFRecords and ``transform_output/`` from different preprocess runs).
    """
    folder = os.path.dirname(files[0])
    try:
        first = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP").take(1)), None)
    except tf.errors.OpError as error:
        raise UserError(
            f"cannot read the {split} TFRecords in {folder} ({error.message}); re-run `hourglass preprocess`"
        ) from error
    if first is None:
        hint = " (or with a larger --eval-percent)" if split == "eval" else ""
        raise UserError(
            f"the {split} TFRecords in {folder} ({len(files)} file(s)) hold no records; "
            f"re-run `hourglass preprocess` on more images{hint}"
        )
    try:
        tf.io.parse_single_example(first, _spec(tft_output))
    except tf.errors.InvalidArgumentError as error:
        shape = "x".join(map(str, image_shape(tft_output)))
        raise UserError(
            f"{files[0]} does not match {tft_output.transform_savedmodel_dir} (expected images of shape {shape}): "
            f"{error.message.splitlines()[0]}. "
            f"The TFRecords and {TRANSFORM_DIR}/ come from different preprocess runs; "
            "re-run `hourglass preprocess` into an empty folder"
        ) from error


def shard_policy(num_files: int, num_shards: int) -> ShardPolicy:
    """How ``num_shards`` input pipelines split ``num_files`` files.

    ``FILE`` (each pipeline reads whole files: no wasted reads) when every pipeline gets at least
    one file, else ``DATA`` (each reads everything and keeps every ``num_shards``-th record);
    ``OFF`` for a single pipeline.
    """
    if num_shards <= 1:
        return ShardPolicy.OFF
    return ShardPolicy.FILE if num_files >= num_shards else ShardPolicy.DATA


def record_bytes(tft_output: tft.TFTransformOutput) -> int:
    """Bytes of one parsed example (the features used in training)."""
    return _nbytes(_spec(tft_output).values())


def count_records(files: list[str], limit: int | None = None) -> int:
    """Records in ``files``, counting at most ``limit + 1`` (reads that many, no more)."""
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if limit is not None:
        dataset = dataset.take(limit + 1)
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def fits_in_memory(files: list[str], tft_output: tft.TFTransformOutput, budget_mb: int) -> bool:
    """Whether the parsed split takes at most ``budget_mb`` MB (reads no more records than fit)."""
    limit = budget_mb * 2**20 // record_bytes(tft_output)
    return limit > 0 and count_records(files, limit) <= limit


def read_records(files: list[str], *, num_shards: int = 1, shard_index: int = 0) -> tf.data.Dataset:
    """One input pipeline's serialized ``tf.Example`` records, in a fixed order: its part of the
    files (see :func:`shard_policy`) read up to ``_MAX_PARALLEL_READS`` at a time, each in its own
    thread (a parallel interleave, one record from each file in turn), or every ``num_shards``-th
    record of all of them."""
    policy = shard_policy(len(files), num_shards)
    if policy == ShardPolicy.FILE:
        files = files[shard_index::num_shards]
    dataset = tf.data.TFRecordDataset(
        files, compression_type="GZIP", num_parallel_reads=min(len(files), _MAX_PARALLEL_READS)
    )
    if policy == ShardPolicy.DATA:
        dataset = dataset.shard(num_shards, shard_index)
    return dataset


def read_examples(
    files: list[str],
    tft_output: tft.TFTransformOutput,
    *,
    num_shards: int = 1,
    shard_index: int = 0,
    cache: bool = False,
) -> tf.data.Dataset:
    """One input pipeline's parsed examples (unbatched), in a fixed order.

    Args:
      files: the split's shards.
      tft_output: gives the feature spec.
      num_shards, shard_index: this pipeline's part of the data (see :func:`shard_policy`).
      cache: keep the examples in memory after the first full pass (every later pass, and every
        dataset built on this one by :func:`make_batches`, reads them from there).
    """
    records = read_records(files, num_shards=num_shards, shard_index=shard_index)
    dataset = _parse(records.batch(_PARSE_BATCH), tft_output).unbatch()
    return dataset.cache() if cache else dataset


def input_scaling(tft_output: tft.TFTransformOutput) -> tuple[tf.Tensor, tf.Tensor]:
    """``(offset, gain)``, each ``(H, W, C)``, of the transform's normalization (``unit`` or
    ``standardize``), which is affine per pixel: ``inputs = offset + gain * pixels``. They are read
    off the transform itself, by passing it an all-black and an all-white image."""
    height, width, channels = image_shape(tft_output)
    blank = [tf.io.encode_png(tf.fill([height, width, channels], tf.constant(v, tf.uint8))) for v in (0, 255)]
    black, white = tft_output.transform_features_layer()({features.IMAGE: tf.stack(blank)})[features.INPUTS].numpy()
    return tf.constant(black), tf.constant(white - black)


def corruptor(tft_output: tft.TFTransformOutput, spec: CorruptionSpec) -> Callable[[dict], dict]:
    """A function of a batch that corrupts its ``pixels`` with ``spec`` and puts the model inputs of
    the corrupted pixels in ``inputs`` (``pixels``, the targets, stay clean): what the transform
    makes of the corrupted image (:func:`input_scaling`).
    """
    offset, gain = input_scaling(tft_output)

    def apply(batch: dict) -> dict:
        return {**batch, features.INPUTS: offset + gain * corrupt(batch[features.PIXELS], spec)}

    return apply


def make_batches(
    examples: tf.data.Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    skip: int = 0,
    parse_with: tft.TFTransformOutput | None = None,
    transform: Callable[[dict], dict] | None = None,
) -> tf.data.Dataset:
    """Batches of ``examples``: shuffled in an order fixed by ``seed`` (one seed per epoch), without
    the first ``skip`` examples of that order (to resume mid-epoch), each passed through
    ``transform`` when given (e.g. a :func:`corruptor`).

    ``examples`` are parsed examples (:func:`read_examples`), or serialized records
    (:func:`read_records`) when ``parse_with`` gives their transform output: those are shuffled as
    records and parsed a whole batch at a time, in parallel, which keeps a feed read from disk
    every epoch up with the training step (no per-example parsing or unbatching). Both give the same
    batches in the same order: the shuffle buffer holds the same number of examples either way.
    """
    if shuffle:
        example_bytes = record_bytes(parse_with) if parse_with else _nbytes(examples.element_spec.values())
        buffer = max(1, min(SHUFFLE_BUFFER, _SHUFFLE_BUFFER_BYTES // example_bytes))
        examples = examples.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
    if skip:
        examples = examples.skip(skip)
    batches = examples.batch(batch_size)
    if parse_with is not None:
        batches = _parse(batches, parse_with)
    if transform is not None:
        batches = batches.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Sharded by read_records, explicitly; tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = ShardPolicy.OFF
    return batches.with_options(options).prefetch(tf.data.AUTOTUNE)


def make_dataset(
    files: list[str],
    tft_output: tft.TFTransformOutput,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    *,
    num_shards: int = 1,
    shard_index: int = 0,
    skip: int = 0,
) -> tf.data.Dataset:
    """Batched, parsed dataset of the transformed features used in training (one pass, no cache).

    See :func:`read_records` and :func:`make_batches` for the arguments.
    """
    records = read_records(files, num_shards=num_shards, shard_index=shard_index)
    return make_batches(records, batch_size, shuffle, seed, skip, parse_with=tft_output)


def _parse(batches: tf.data.Dataset, tft_output: tft.TFTransformOutput) -> tf.data.Dataset:
    """Batches of serialized records -> batches of parsed features, several batches at once (in order)."""
    spec = _spec(tft_output)
    return batches.map(lambda records: tf.io.parse_example(records, spec), num_parallel_calls=tf.data.AUTOTUNE)


def _spec(tft_output: tft.TFTransformOutput) -> dict:
    return {k: v for k, v in tft_output.transformed_feature_spec().items() if k in _USED}


def _nbytes(specs) -> int:
    """Bytes of one example described by feature or tensor specs (``shape`` and ``dtype``)."""
    return sum(math.prod(tf.TensorShape(s.shape).as_list()) * tf.as_dtype(s.dtype).size for s in specs)


class SplitInput:
    """Builds one split's distributed batches, epoch after epoch.

    Each worker's input pipeline reads its shard (see ``shard_policy``); when
    ``cache`` is set the parsed examples stay in memory after the first epoch and later epochs read
    them from there, else every epoch shuffles the records read from disk and parses them a batch at
    a time (``make_batches``). Each epoch's order is fixed by ``seed`` and the epoch
    (the same with or without the cache), so a resumed epoch can skip the steps already done.
    ``transform`` (a restoration model's ``corruptor``) is applied to every batch.

    Given the number of ``epochs`` to train (and a single replica), shuffled epochs come from
    one stream through the epochs: each epoch's batches are the same as alone, but the next epoch's
    shuffle buffer fills (for an epoch read from disk: up to ``SHUFFLE_BUFFER`` records read and
    decompressed) while the last ``LOOKAHEAD_BYTES`` of batches of the current one are trained on,
    rather than between the two with the training waiting. The stream serves the epoch after the
    one read before; asking for any other (or another seed, or a skip) starts a new stream. With
    several replicas (or workers), a step's batches could straddle two epochs and the replicas
    must agree where the data ends (a distributed iterator's end), so there every epoch is its own
    dataset, as without ``epochs``.
    """

    def __init__(
        self,
        strategy,
        files: list[str],
        tft_output,
        global_batch: int,
        cache: bool,
        transform=None,
        epochs: int | None = None,
    ):
        self.strategy = strategy
        self.files = files
        self.tft_output = tft_output
        self.global_batch = global_batch
        self.cache = cache
        self.transform = transform
        self.epochs = epochs if strategy.num_replicas_in_sync == 1 else None
        self._examples: dict[int, tf.data.Dataset] = {}
        self._stream: _EpochStream | None = None

    def batches(self, shuffle: bool, seed: int = 0, epoch: int = 0, skip_steps: int = 0):
        """The epoch's distributed batches: a ``tf.distribute.DistributedDataset``, or with the
        stream (see the class docstring) an iterator of the epoch's batches read from it."""
        if shuffle and self.epochs is not None:
            if self._stream is None or not self._stream.serves(seed, epoch, skip_steps):
                self._stream = self._start_stream(seed, epoch, skip_steps)
            return self._stream.epoch()
        return self.strategy.distribute_datasets_from_function(
            lambda ctx: self._epoch_batches(ctx, shuffle, seed * 100_003 + epoch, skip_steps)
        )

    def _start_stream(self, seed: int, first: int, skip_steps: int) -> _EpochStream:
        def stream(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            epochs = [
                self._epoch_batches(ctx, True, seed * 100_003 + e, skip_steps if e == first else 0).map(
                    lambda batch, e=e: (tf.constant(e, tf.int64), batch)
                )
                for e in range(first, max(first + 1, self.epochs))
            ]
            batch_bytes = ctx.get_per_replica_batch_size(self.global_batch) * record_bytes(self.tft_output)
            return functools.reduce(tf.data.Dataset.concatenate, epochs).prefetch(
                max(2, LOOKAHEAD_BYTES // batch_bytes)
            )

        return _EpochStream(self.strategy, self.strategy.distribute_datasets_from_function(stream), seed, first)

    def _epoch_batches(self, ctx: tf.distribute.InputContext, shuffle: bool, seed: int, skip: int) -> tf.data.Dataset:
        return make_batches(
            self._pipeline_examples(ctx),
            ctx.get_per_replica_batch_size(self.global_batch),
            shuffle,
            seed=seed,
            skip=skip * self.global_batch // ctx.num_input_pipelines,
            parse_with=None if self.cache else self.tft_output,
            transform=self.transform,
        )

    def _pipeline_examples(self, ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        """The input pipeline's parsed examples when cached, else its records (parsed batch by batch)."""
        if not self.cache:
            return read_records(self.files, num_shards=ctx.num_input_pipelines, shard_index=ctx.input_pipeline_id)
        # One dataset per input pipeline, reused by every epoch, so that its cache is too.
        if ctx.input_pipeline_id not in self._examples:
            self._examples[ctx.input_pipeline_id] = read_examples(
                self.files,
                self.tft_output,
                num_shards=ctx.num_input_pipelines,
                shard_index=ctx.input_pipeline_id,
                cache=True,
            )
        return self._examples[ctx.input_pipeline_id]


class _EpochStream:
    """The batches of consecutive epochs, tagged with their epoch, read one epoch at a time."""

    def __init__(self, strategy, dataset, seed: int, first: int):
        self._strategy = strategy
        self._iterator = iter(dataset)
        self._seed, self._next = seed, first
        self._head = None  # the first batch of the next epoch, read past the end of the previous one

    def serves(self, seed: int, epoch: int, skip_steps: int) -> bool:
        """Whether the stream's next batches are those of ``epoch`` (from its start) for ``seed``."""
        return seed == self._seed and epoch == self._next and skip_steps == 0

    def epoch(self):
        """The next epoch's distributed batches (an iterator); the stream serves the epoch after it
        once this one is read to its end."""
        epoch, self._next = self._next, None
        return self._batches(epoch)

    def _batches(self, epoch: int):
        while True:
            tagged, self._head = self._head, None
            if tagged is None:
                tagged = next(self._iterator, None)
            if tagged is None:  # past the stream's last epoch
                return
            if int(self._strategy.experimental_local_results(tagged[0])[0]) != epoch:
                self._head, self._next = tagged, epoch + 1
                return
            yield tagged[1]
