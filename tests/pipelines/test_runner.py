"""``pipelines.runner``: the local runner's worker threads keep every element."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.testing.util import assert_that, equal_to

from pipelines.runner import local_runner

N = 20_000


def test_worker_threads_flush_by_size_only_and_keep_every_element(monkeypatch):
    # Beam's in-process workers flush on a 1 s timer that races the bundle's thread and drops
    # elements (benchmarks/results/multi-threading-loss.md); the local runner turns the timer off.
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1000)
    options = PipelineOptions(["--direct_running_mode=multi_threading", "--direct_num_workers=2"])
    runner = local_runner(options)
    assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS >= 10**9
    with beam.Pipeline(runner=runner, options=options) as p:
        units = (
            p
            | beam.Create([N])
            | beam.FlatMap(lambda n: list(range(n)))
            | beam.BatchElements(min_batch_size=100, max_batch_size=100)
            | beam.Reshuffle()
        )
        count = units | beam.Map(len) | beam.CombineGlobally(sum)
        assert_that(count, equal_to([N]))


def test_other_modes_and_runners_keep_beams_flush(monkeypatch):
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1000)
    assert local_runner(PipelineOptions(["--direct_running_mode=multi_processing"])) is not None
    assert local_runner(PipelineOptions(["--runner=PortableRunner", "--direct_running_mode=multi_threading"])) is None
    assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 1000
