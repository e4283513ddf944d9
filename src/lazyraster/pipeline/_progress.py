"""Computing a run's writes together, with progress on the ``lazyraster`` logger.

One dask compute of every output's write (:func:`compute_writes`), on the scheduler
that ``lazyraster.cluster`` made active: dask's local schedulers (threads, processes)
report through a :class:`dask.callbacks.Callback`, a distributed client through its
scheduler's task states. Either way "write: x/y tasks done (s)" is logged every
``interval`` seconds, and once at the end.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import dask
from dask.callbacks import Callback
from dask.delayed import Delayed

from lazyraster.errors import WorkerLostError

__all__ = ["compute_writes"]

logger = logging.getLogger("lazyraster")

_MESSAGE = "write: %d/%d tasks done (%.1f s)"
#: States of a task of the distributed scheduler that has not run yet.
_PENDING_STATES = frozenset({"released", "waiting", "queued", "processing", "no-worker"})


class _LogProgress(Callback):
    """Log "x/y tasks done" for dask's local schedulers (threads, processes)."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval

    def _start(self, dsk: Any) -> None:
        self._started = self._last = time.monotonic()

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            done = len(state["finished"])
            total = done + sum(len(state[k]) for k in ("ready", "waiting", "running"))
            logger.info(_MESSAGE, done, total, now - self._started)

    def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
        if not errored:
            done = len(state["finished"])
            logger.info(_MESSAGE, done, done, time.monotonic() - self._started)


def _not_run(keys: Sequence[Any], dask_scheduler: Any = None) -> int:
    """On the scheduler: how many of ``keys`` have not run (a finished task is forgotten)."""
    tasks = dask_scheduler.tasks
    return sum(1 for key in keys if key in tasks and tasks[key].state in _PENDING_STATES)


def _compute_distributed(writes: Sequence[Delayed], client: Any, interval: float) -> list[Any]:
    from distributed import KilledWorker, wait

    optimized = dask.optimize(*writes)
    keys = list({key for write in optimized for key in write.__dask_graph__()})
    futures = client.compute(list(optimized), optimize_graph=False)
    start = time.monotonic()
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                wait(futures, timeout=max(interval, 0.05))
            finished = all(f.done() for f in futures)
            left = 0 if finished else client.run_on_scheduler(_not_run, keys)
            elapsed = time.monotonic() - start
            logger.info(_MESSAGE, len(keys) - left, len(keys), elapsed)
            if finished:
                break
        try:
            return list(client.gather(futures))
        except KilledWorker as err:
            raise WorkerLostError(
                f"the workers running a task died too often ({err}); they were killed "
                "or ran out of memory: give each worker more memory (cluster: memory=) "
                "or make the chunks smaller (load: chunks=)"
            ) from None
    finally:
        client.cancel(futures)


def compute_writes(writes: Sequence[Delayed], client: Any, interval: float) -> list[Any]:
    """Compute ``writes`` in one dask compute; return what each computes to.

    Parameters
    ----------
    writes : sequence of dask.delayed.Delayed
        The writers' ``compute=False`` results.
    client : distributed.Client or None
        The client ``lazyraster.cluster`` yielded, or ``None`` for dask's local schedulers.
    interval : float
        Seconds between progress lines.

    Raises
    ------
    WorkerLostError
        If a distributed cluster's workers died too often running a task.
    concurrent.futures.process.BrokenProcessPool
        If a worker process of the ``processes`` scheduler died (the caller decides
        whether to compute once more).
    """
    if client is not None:
        return _compute_distributed(writes, client, interval)
    with _LogProgress(interval):
        return list(dask.compute(*writes))
