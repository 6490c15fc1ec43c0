"""Measuring a command as the user runs it: a subprocess's wall time and its process tree's peak memory.

``timed(args, log_path)`` runs ``args`` with its output in ``log_path`` and returns a :class:`Timed`:
the wall seconds, the peak of the summed resident memory (RSS) of the process and all its
descendants (Beam's worker processes included), sampled from ``/proc`` every half second, and the
CPU seconds (user + system) of the process and its descendants. On a shared machine
the CPU seconds move much less with the load than the wall time. ``env`` replaces the environment
(default: this process's), e.g. to run another checkout through ``PYTHONPATH``.

``first_record_at(text)`` reads, from a job's log, when its first record was validated (the line
``pipelines.counters.LogProgressFn`` writes): the end of the start-up, as a Unix time.
"""

from __future__ import annotations

import datetime
import glob
import os
import pathlib
import re
import subprocess
import threading
import time
from typing import NamedTuple


class TreeSampler:
    """Samples a process and all its descendants from /proc until stopped: keeps the peak of their
    summed RSS and the last CPU seconds seen of each process (Beam's workers may never be waited
    for, so their CPU time would not reach the launcher's resource usage)."""

    def __init__(self, pid: int, every: float = 0.5):
        self.peak = 0
        self._cpu: dict[int, float] = {}
        self._pid, self._every, self._done = pid, every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._done.is_set():
            processes = _tree(self._pid)
            self.peak = max(self.peak, sum(rss for rss, _ in processes.values()))
            self._cpu.update({pid: cpu for pid, (_, cpu) in processes.items()})
            self._done.wait(self._every)

    def stop(self) -> tuple[int, float]:
        """(peak summed RSS bytes, CPU seconds of every process seen, up to its last sample)."""
        self._done.set()
        self._thread.join()
        return self.peak, sum(self._cpu.values())


def _tree(root: int) -> dict[int, tuple[int, float]]:
    """``{pid: (resident bytes, CPU seconds)}`` of ``root`` and its descendants, from /proc."""
    parents, usage = {}, {}
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        pid = int(stat.split("/")[2])
        parents[pid] = int(fields[1])
        usage[pid] = (int(fields[21]) * page, (int(fields[11]) + int(fields[12])) / ticks)
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    return {pid: usage[pid] for pid in tree if pid in usage}


class Timed(NamedTuple):
    seconds: float
    peak_bytes: int
    cpu_seconds: float


def timed(args: list[str], log_path: pathlib.Path, env: dict[str, str] | None = None) -> Timed:
    """Runs ``args`` as a subprocess and measures it (see the module docstring).

    Raises:
      RuntimeError: the command failed; names its log.
    """
    started = time.perf_counter()
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env or os.environ.copy())
        sampler = TreeSampler(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
        peak, sampled_cpu = sampler.stop()
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... failed ({os.waitstatus_to_exitcode(status)}); see {log_path}")
    # The resource usage counts the processes waited for to their end; the samples, all of them but
    # their last half second: the larger is the better estimate.
    return Timed(seconds, peak, max(usage.ru_utime + usage.ru_stime, sampled_cpu))


_FIRST_RECORD = re.compile(r"^(\S+ \S+) INFO .*: first record validated", re.M)


def first_record_at(text: str) -> float | None:
    """The Unix time of the log's first ``<stage>: first record validated`` line, or None."""
    first = _FIRST_RECORD.search(text)
    if first is None:
        return None
    # logging's asctime: local time, milliseconds after a comma
    return datetime.datetime.strptime(first.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
