"""Timing and memory harness shared by every benchmark in this folder.

A benchmark module ``bench_<name>.py`` defines ``DEFAULT_SIZE`` and
``setup(size: int) -> list[Case]``: it makes its input data deterministically and
returns the cases to time, one of them marked ``baseline=True``. The harness runs one
warm-up round (numba compilation, file-system caches), then ``repeat`` rounds in which
the cases are interleaved, so that a slow moment of the machine hits every case alike.

Peak memory is the largest resident set size seen while a case runs, minus the
resident size just before it, sampled every 2 ms from ``/proc/self/statm``. It counts
everything the process touches (numpy, numba, GDAL, dask workers in threads), not only
Python allocations. Before each case, memory freed by earlier cases is handed back to the
OS (``malloc_trim``), or a case could reuse it unseen and read near zero.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Case:
    """One thing to time: a name, a zero-argument callable, and whether it is the baseline."""

    name: str
    func: Callable[[], object]
    baseline: bool = False
    times: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class _PeakRSS:
    """Context manager sampling the resident set size in a background thread."""

    def __enter__(self) -> _PeakRSS:
        self.start = _rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def increase(self) -> int:
        return self.peak - self.start


def _release_freed_memory() -> None:
    """Hand memory freed by earlier cases back to the OS (glibc's ``malloc_trim``).

    Otherwise the next case could reuse it unseen, and its peak would read low.
    Elsewhere than glibc this does nothing.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure(case: Case) -> None:
    """Run ``case`` once, appending its wall time and peak memory increase."""
    gc.collect()
    _release_freed_memory()
    with _PeakRSS() as mem:
        t0 = time.perf_counter()
        case.func()
        elapsed = time.perf_counter() - t0
    case.times.append(elapsed)
    case.peaks.append(mem.increase)


def run(cases: list[Case], *, repeat: int = 5, warmup: bool = True) -> list[Case]:
    """Time ``cases`` interleaved over ``repeat`` rounds, after one warm-up round."""
    baselines = [c for c in cases if c.baseline]
    if len(baselines) != 1:
        raise ValueError("exactly one case must be marked baseline=True")
    if warmup:
        for case in cases:
            case.func()
    for _ in range(repeat):
        for case in cases:
            measure(case)
    return cases


def table(cases: list[Case]) -> str:
    """Markdown table: median and best time, speed-up against the baseline, peak memory."""
    base = statistics.median(next(c for c in cases if c.baseline).times)
    rows = [
        "| case | median s | best s | speed-up vs baseline | peak MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for c in cases:
        med = statistics.median(c.times)
        tag = " (baseline)" if c.baseline else ""
        rows.append(
            f"| {c.name}{tag} | {med:.3f} | {min(c.times):.3f} | "
            f"{base / med:.2f}x | {max(c.peaks) / 2**20:.0f} |"
        )
    return "\n".join(rows)
