"""Tasks the cluster tests run in worker processes, in a module that imports little.

A worker process unpickles a task function by importing its module: a function of a
test module makes every worker import that module and all it imports (xarray,
rasterio, distributed, the package, other tests' helpers). From here a worker imports
numpy and the standard library only, so starting one costs what it costs a user.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np

#: Environment variable naming the folder where each started worker process leaves a file.
STARTED = "LAZYRASTER_TEST_STARTED_DIR"


def pid_block(block: np.ndarray) -> np.ndarray:
    """The block filled with the pid of the process that computed it."""
    return np.full(block.shape, os.getpid(), dtype=np.int64)


def note_start() -> None:
    """Worker initializer: leave a file named by this process's pid."""
    Path(os.environ[STARTED], str(os.getpid())).touch()


def kill_me(block: np.ndarray) -> np.ndarray:
    """SIGKILL the process computing this block."""
    os.kill(os.getpid(), signal.SIGKILL)
    return block


def hash_in_a_worker(rendezvous: str) -> tuple[int, int, str | None]:
    """``hash("lazyraster")`` in this process, once another task runs beside it."""
    Path(rendezvous, str(os.getpid())).touch()
    waited = 0
    while len(os.listdir(rendezvous)) < 2 and waited < 6000:  # both tasks at once
        time.sleep(0.01)
        waited += 1
    return os.getpid(), hash("lazyraster"), os.environ.get("PYTHONHASHSEED")


def mean3x3_block(block: np.ndarray) -> np.ndarray:
    """3x3 mean of a block's inner pixels (``map_overlap`` trims its halo of 1)."""
    out = np.zeros_like(block)
    ny, nx = block.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out[1:-1, 1:-1] += block[1 + dy : ny - 1 + dy, 1 + dx : nx - 1 + dx]
    return out / np.float32(9)
