"""Measuring a command as the user runs it: a subprocess's wall time and its process tree's peak memory.

``timed(args, log_path)`` runs ``args`` with its output in ``log_path`` and returns a :class:`Timed`:
the wall seconds, the peak of the summed resident memory (RSS) of the process and all its
descendants (Beam's worker processes included), sampled from ``/proc`` every half second, and the
CPU seconds (user + system) of the process and the descendants it waited for. On a shared machine
the CPU seconds move much less with the load than the wall time.
"""

from __future__ import annotations

import glob
import os
import pathlib
import subprocess
import threading
import time
from typing import NamedTuple


class TreeMemory:
    """Samples the summed RSS of a process and all its descendants until stopped; keeps the peak."""

    def __init__(self, pid: int, every: float = 0.5):
        self.peak = 0
        self._pid, self._every, self._done = pid, every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._done.is_set():
            self.peak = max(self.peak, tree_rss(self._pid))
            self._done.wait(self._every)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def tree_rss(root: int) -> int:
    """Summed resident memory (bytes) of ``root`` and its descendants, from /proc."""
    parents, rss = {}, {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        pid = int(stat.split("/")[2])
        parents[pid], rss[pid] = int(fields[1]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    return sum(rss.get(pid, 0) for pid in tree)


class Timed(NamedTuple):
    seconds: float
    peak_bytes: int
    cpu_seconds: float


def timed(args: list[str], log_path: pathlib.Path) -> Timed:
    """Runs ``args`` as a subprocess and measures it (see the module docstring).

    Raises:
      RuntimeError: the command failed; names its log.
    """
    started = time.perf_counter()
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=os.environ.copy())
        memory = TreeMemory(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
        peak = memory.stop()
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... failed ({os.waitstatus_to_exitcode(status)}); see {log_path}")
    return Timed(seconds, peak, usage.ru_utime + usage.ru_stime)
