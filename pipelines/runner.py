"""The runner a job's Beam pipeline runs on, and the runner flags a job refuses.

:func:`local_runner` takes the job's ``PipelineOptions`` and returns the runner to hand
``beam.Pipeline(runner=..., options=...)``: for a batch job on the DirectRunner (no ``--runner``, or
``--runner=DirectRunner``), Beam's ``FnApiRunner``, made the way the DirectRunner makes it; for any
other runner, None (the one the flags name). Beam 2.77's DirectRunner first tries the PrismRunner,
which it downloads from GitHub: offline, that costs a second translation of the whole pipeline and a
worker pool started for nothing (about 2 s of the launcher's CPU, 4 to 15 s of wall time on a
shared machine) before it falls back to the FnApiRunner that runs our batch jobs anyway
(``benchmarks/results/preprocess-profile.md``). ``--direct_running_mode`` and
``--direct_num_workers`` keep their meaning.

:func:`check_running_mode` refuses ``--direct_running_mode=multi_threading`` on the DirectRunner for
preprocess, where Beam's own runner loses records (``benchmarks/results/multi-threading-loss.md``) and
worker processes are faster at scale. The FnApiRunner that :func:`local_runner` makes
flushes its in-process workers' output by size only, which stops that loss, so infer and evaluate
keep their threads (which share one loaded model).
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner

from transforms.errors import UserError

# A timed-flush period no batch bundle reaches (about 11.6 days): see ``_no_timed_flush``.
_SIZE_FLUSH_ONLY_MS = 10**9
# The names of the DirectRunner (no ``--runner`` means it too).
_DIRECT_RUNNERS = frozenset({None, "DirectRunner", "direct", "SwitchingDirectRunner"})


def _is_direct(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    return runner is None or (isinstance(runner, str) and runner in _DIRECT_RUNNERS)


def local_runner(options: PipelineOptions) -> PipelineRunner | None:
    """The FnApiRunner for a batch job on the DirectRunner, else None (see the module docstring).

    With ``--direct_running_mode=multi_threading`` it first turns off the in-process workers' timed
    flush (:func:`_no_timed_flush`), so those threads lose no records.
    """
    if not _is_direct(options) or options.view_as(StandardOptions).streaming:
        return None
    if options.view_as(DirectOptions).direct_running_mode == "multi_threading":
        _no_timed_flush()
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    # As the DirectRunner does: the workers get the job's options.
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=info)


def _no_timed_flush() -> None:
    """Makes the FnApiRunner's in-process (``multi_threading``) workers flush their output by size only.

    Beam 2.77 gives those workers a data channel that a timer flushes every
    ``worker_handlers.DATA_BUFFER_TIME_LIMIT_MS`` (1 s), racing the bundle's thread
    (:func:`check_running_mode`); 0 falls back to that constant, so it is raised to a limit no batch
    bundle reaches, and the channel then flushes as worker processes do: by size, from the bundle's
    own thread, and at the bundle's end. A batch job needs no timed flush: the runner reads a bundle's
    output when the bundle ends. With the constant at 10**9 ms a 1,000,000-name pipeline that lost 14
    to 21 units with the timer lost none (``benchmarks/results/multi-threading-loss.md``). Beam's
    module constant is the only setting the mode reads; check it again on a Beam upgrade.
    """
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = _SIZE_FLUSH_ONLY_MS


def check_running_mode(options: PipelineOptions) -> None:
    """Refuses the DirectRunner's worker threads, which lose records.

    Beam 2.77's ``multi_threading`` mode runs its workers in this process with a data channel that
    a timer flushes every second (``data_plane.TimeBasedBufferingClosableOutputStream``); the flush
    takes the buffer and then clears it with no lock against the bundle's thread, so elements written
    in between are dropped: whole units of 100 files (``benchmarks/results/multi-threading-loss.md``).
    Worker processes flush only from the bundle's own thread.

    Raises:
      UserError: ``--direct_running_mode=multi_threading`` on the DirectRunner; names the fix.
    """
    if _is_direct(options) and options.view_as(DirectOptions).direct_running_mode == "multi_threading":
        raise UserError(
            "--direct_running_mode=multi_threading loses records in Beam's DirectRunner (its in-process data "
            "channel drops elements when a timed flush races the worker, benchmarks/results/multi-threading-loss.md); "
            "pass --direct_running_mode=multi_processing --direct_num_workers=2 after --, or leave both out for one "
            "in-process worker"
        )
