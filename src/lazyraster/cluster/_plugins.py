"""Worker plugins registered by :func:`lazyraster.cluster` on the clusters it starts.

A worker process of a process-based ``LocalCluster`` ends with a heap of dask, numpy and
numba objects; the garbage collector's passes over them while the interpreter shuts down
made each worker take seconds to close. Freezing the heap when the worker closes
(:func:`gc.freeze`) leaves those objects out of every later collection, and the process
frees its memory on exit all the same.
"""

from __future__ import annotations

import gc
from typing import Any

from distributed import WorkerPlugin

__all__ = ["FreezeHeapOnClose"]


class FreezeHeapOnClose(WorkerPlugin):
    """Call :func:`gc.freeze` when the worker closes, so its process exits quickly.

    Examples
    --------
    >>> plugin = FreezeHeapOnClose()
    >>> plugin.name
    'lazyraster-freeze-heap-on-close'
    >>> plugin.teardown(worker=None)
    >>> gc.get_freeze_count() > 0
    True
    >>> gc.unfreeze()
    """

    name = "lazyraster-freeze-heap-on-close"

    def teardown(self, worker: Any) -> None:
        """Move every object the collector tracks to the permanent generation."""
        gc.freeze()
