"""The tf.data input: explicit sharding, a fixed order per seed, skipping for resumption, caching."""

import pytest
import tensorflow as tf

from models import input_pipeline
from models.input_pipeline import ShardPolicy, SplitInput
from transforms import features


def _labels(dataset) -> list[int]:
    return [int(i) for batch in dataset for i in batch[features.LABEL_INDEX].numpy()]


def _split(data_dir):
    return input_pipeline.split_files(data_dir, "train"), input_pipeline.load_transform_output(data_dir)


@pytest.mark.parametrize(
    "files, shards, policy",
    [
        (1, 1, ShardPolicy.OFF),
        (4, 1, ShardPolicy.OFF),
        (3, 2, ShardPolicy.FILE),
        (2, 2, ShardPolicy.FILE),
        (1, 2, ShardPolicy.DATA),
        (3, 4, ShardPolicy.DATA),
    ],
)
def test_shard_policy_uses_whole_files_when_every_worker_gets_one(files, shards, policy):
    assert input_pipeline.shard_policy(files, shards) == policy


@pytest.mark.parametrize("counts", [(5, 4, 3), (7,)], ids=["by-file", "by-record"])
def test_two_shards_read_every_record_exactly_once(make_data, counts):
    files, tft_output = _split(make_data(train=counts))
    shards = [
        _labels(input_pipeline.make_dataset(files, tft_output, 4, shuffle=False, num_shards=2, shard_index=i))
        for i in (0, 1)
    ]
    assert shards[0] and shards[1]
    assert sorted(shards[0] + shards[1]) == list(range(sum(counts)))


def test_an_epoch_order_is_fixed_by_its_seed_and_skip_drops_its_head(make_data):
    files, tft_output = _split(make_data(train=(10, 9)))
    order = _labels(input_pipeline.make_dataset(files, tft_output, 3, shuffle=True, seed=5))
    assert sorted(order) == list(range(19)) and order != sorted(order)
    assert _labels(input_pipeline.make_dataset(files, tft_output, 3, shuffle=True, seed=5)) == order
    assert _labels(input_pipeline.make_dataset(files, tft_output, 3, shuffle=True, seed=6)) != order
    assert _labels(input_pipeline.make_dataset(files, tft_output, 3, shuffle=True, seed=5, skip=7)) == order[7:]


def test_cached_examples_give_the_same_epochs(make_data):
    files, tft_output = _split(make_data(train=(6, 5)))
    cached = input_pipeline.read_examples(files, tft_output, cache=True)
    epochs = [_labels(input_pipeline.make_batches(cached, 4, shuffle=True, seed=s)) for s in (1, 2, 1)]
    assert epochs[0] == epochs[2] == _labels(input_pipeline.make_dataset(files, tft_output, 4, shuffle=True, seed=1))
    assert sorted(epochs[1]) == list(range(11))


def test_counting_stops_past_the_limit_and_the_budget_uses_parsed_sizes(make_data):
    files, tft_output = _split(make_data(train=(20, 4)))
    assert input_pipeline.count_records(files) == 24
    assert input_pipeline.count_records(files, limit=10) == 11
    # inputs and pixels: 12x10x1 float32 each; label_index: one int64.
    assert input_pipeline.record_bytes(tft_output) == 2 * 120 * 4 + 8
    assert input_pipeline.fits_in_memory(files, tft_output, budget_mb=1)


def test_an_epoch_read_from_disk_matches_the_cached_one_and_resumes_alike(make_data):
    files, tft_output = _split(make_data(train=(6, 5)))
    strategy = tf.distribute.get_strategy()

    def epoch(cache: bool, number: int, skip_steps: int = 0) -> list[int]:
        split = SplitInput(strategy, files, tft_output, 4, cache)
        return _labels(split.batches(True, seed=3, epoch=number, skip_steps=skip_steps))

    first = epoch(True, 0)
    assert sorted(first) == list(range(11))
    assert epoch(False, 0) == first and epoch(False, 1) == epoch(True, 1) != first
    assert epoch(False, 0, skip_steps=1) == epoch(True, 0, skip_steps=1) == first[4:]


@pytest.mark.parametrize("cache", [False, True], ids=["from-disk", "cached"])
def test_a_stream_through_the_epochs_gives_each_epoch_as_alone(make_data, cache):
    files, tft_output = _split(make_data(train=(6, 5)))
    strategy = tf.distribute.get_strategy()
    alone = [_labels(SplitInput(strategy, files, tft_output, 4, cache).batches(True, 3, e)) for e in range(3)]
    assert alone[0] != alone[1] != alone[2]
    stream = SplitInput(strategy, files, tft_output, 4, cache, epochs=3)
    assert [_labels(stream.batches(True, 3, e)) for e in range(3)] == alone
    # Past its last epoch, or after an epoch left half read, the stream starts again where asked.
    assert _labels(stream.batches(True, 3, 3)) == _labels(
        SplitInput(strategy, files, tft_output, 4, cache).batches(True, 3, 3)
    )
    stream = SplitInput(strategy, files, tft_output, 4, cache, epochs=3)
    next(iter(stream.batches(True, 3, 0)))
    assert _labels(stream.batches(True, 3, 1)) == alone[1]
    assert _labels(stream.batches(True, 3, 1, skip_steps=1)) == alone[1][4:]
