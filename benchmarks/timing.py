"""Timing for every benchmark script, in one place: how long a call takes, in wall-clock seconds and in the process's
CPU seconds (``time.process_time``: other programs on a shared machine disturb it little), and medians over runs.

The scripts run as ``python benchmarks/<script>.py``, so this folder is on ``sys.path``: ``from timing import ...``.

>>> c, out = timed(lambda: sum(range(1000)))
>>> out, c.wall >= 0 and c.cpu >= 0
(499500, True)
>>> medians(iter([(1, 5), (3, 4), (2, 6)]).__next__, 3)
[2, 5]
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

__all__ = ["Clock", "timed", "seconds", "medians", "clock"]


class Clock:
    """``with Clock() as c: ...``, then ``c.wall`` and ``c.cpu`` (seconds); ``c.lap()`` inside the block gives the
    wall-clock seconds so far. With ``trace_memory=True``, ``c.py_peak_mb`` is the peak of Python's own allocations
    (tracemalloc, MiB) during the block; None otherwise."""

    def __init__(self, trace_memory: bool = False):
        self.trace_memory = trace_memory
        self.wall = self.cpu = 0.0
        self.py_peak_mb: Optional[float] = None

    def __enter__(self) -> "Clock":
        if self.trace_memory:
            import tracemalloc

            tracemalloc.start()
        self._c0, self._t0 = time.process_time(), time.perf_counter()
        return self

    def lap(self) -> float:
        return time.perf_counter() - self._t0

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self._t0, time.process_time() - self._c0
        if self.trace_memory:
            import tracemalloc

            self.py_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()


def timed(fn: Callable[[], Any]) -> Tuple[Clock, Any]:
    """``(clock, result)`` of one call ``fn()`` (``clock.wall``, ``clock.cpu`` in seconds)."""
    with Clock() as c:
        out = fn()
    return c, out


def seconds(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call ``fn()``."""
    return timed(fn)[0].wall


def medians(fn: Callable[[], Sequence[float]], runs: int) -> List[float]:
    """Call ``fn()`` ``runs`` times; the median of each position of the tuples it returns."""
    results = [fn() for _ in range(runs)]
    return [statistics.median(r[k] for r in results) for k in range(len(results[0]))]


def clock(cpu: bool = False) -> Callable[[], float]:
    """The time function to read: the process's CPU time (``cpu=True``) or wall-clock time."""
    return time.process_time if cpu else time.perf_counter
