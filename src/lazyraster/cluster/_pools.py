"""Pools on this machine: dask's threads, one process pool per block, a LocalCluster.

Sizes come from :mod:`lazyraster.cluster._resources` (cores by affinity, memory by
cgroup and SLURM job limit), looked up when a block starts.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from typing import Any

import dask
import dask.config
from dask.utils import format_bytes

from lazyraster.cluster import _resources
from lazyraster.cluster._resources import _config, _positive_int, _positive_memory
from lazyraster.errors import ClusterConfigError

#: Hash seed of the worker processes when this process has none (or ``0``): the number
#: dask's own process pools and distributed's nannies give theirs.
_HASH_SEED = "6640"


def _announce(client: Any) -> None:
    link = None
    with contextlib.suppress(Exception):
        if "dashboard" in client.scheduler_info(n_workers=0).get("services", {}):
            link = client.dashboard_link
    where = link or "none (install bokeh>=3.1 for the dashboard)"
    print(f"lazyraster: scheduler {client.scheduler.address}, dashboard {where}", file=sys.stderr)


def _start_worker() -> None:
    """Nothing: submitted once per worker to start the pool's processes together."""


class _PoolScheduler:
    """dask's ``processes`` scheduler bound to one block's pool (``__wrapped__`` says which).

    It is the block's ``scheduler`` in dask's config, which distributed's nanny pickles
    to start a worker process: there it arrives as dask's own ``"processes"``.
    """

    def __init__(self, pool: _ProcessPool) -> None:
        import dask.multiprocessing

        self.pool = pool
        self.__wrapped__ = dask.multiprocessing.get

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        if self.pool.closed:  # left in dask's config by blocks that overlapped in threads
            return self.__wrapped__(dsk, keys, **kwargs)
        # the pool's processes ran the initializer: dask need not warn that it cannot
        try:
            with dask.config.set({"multiprocessing.initializer": None}):
                return self.__wrapped__(dsk, keys, pool=self.pool, **kwargs)
        except concurrent.futures.process.BrokenProcessPool as err:
            # loky explains over several lines; a caller's one-line error quotes it
            one_line = " ".join(str(err).split())
            raise concurrent.futures.process.BrokenProcessPool(one_line) from err

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return (str, ("processes",))


class _ProcessPool(concurrent.futures.Executor):
    """One process pool for a ``cluster("processes")`` block, shared by its computations.

    dask's ``processes`` scheduler starts a pool for every ``compute``/``persist`` and
    shuts it down after, so each one pays the start of its worker processes again
    (each a fresh interpreter). One pool for the block pays it once. The processes are
    started at once, together, when the block is entered.

    The pool is loky's ``ProcessPoolExecutor``, which starts each worker as a fresh
    interpreter with an environment of its own (``env=``): the workers get
    ``PYTHONHASHSEED`` (:data:`_HASH_SEED` unless this process sets one other than
    ``0``), so that they all hash alike (``dask.bag`` groups by ``hash``), as dask
    gives the workers of its own pools, while this process's ``os.environ`` is left as
    it is. loky's replacement of a worker whose memory grew by 300 MB is off: a GDAL
    block cache grows that much by design, and every replacement would pay the start
    of a worker again.

    A pool whose worker died is broken for good (``BrokenProcessPool``); the next
    computation then gets a new one, as it would from dask.

    The block's scheduler is :attr:`get`, dask's ``processes`` scheduler bound to this
    pool, rather than dask config ``pool=``, which dask's threaded scheduler would use
    too: a ``compute(scheduler="threads")`` inside the block still runs on threads.
    """

    def __init__(self, workers: int) -> None:
        self._max_workers = workers  # read by dask.multiprocessing.get
        self.closed = False
        self.env = {"LOKY_MAX_MEMORY_LEAK_SIZE": str(2**62)}
        if os.environ.get("PYTHONHASHSEED") in (None, "0"):
            self.env["PYTHONHASHSEED"] = _HASH_SEED
        self._pool = self._new()
        #: dask's ``processes`` scheduler on this pool
        self.get = _PoolScheduler(self)
        for _ in range(workers):
            self._pool.submit(_start_worker)

    def _new(self) -> concurrent.futures.Executor:
        from dask.multiprocessing import initialize_worker_process
        from loky import ProcessPoolExecutor

        initializer = functools.partial(
            initialize_worker_process,
            user_initializer=dask.config.get("multiprocessing.initializer", None),
        )
        return ProcessPoolExecutor(self._max_workers, initializer=initializer, env=self.env)

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        try:
            return self._pool.submit(fn, *args, **kwargs)
        except concurrent.futures.process.BrokenProcessPool:
            self._pool.shutdown(wait=False, kill_workers=True)
            self._pool = self._new()
            return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the workers; with ``cancel_futures``, without finishing their tasks."""
        self.closed = True
        self._pool.shutdown(wait=wait, kill_workers=cancel_futures)


@contextlib.contextmanager
def _local_scheduler(kind: str, workers: int | None, options: dict[str, Any]) -> Iterator[None]:
    if options:
        raise TypeError(f"kind={kind!r} takes only workers=; got {', '.join(sorted(options))}")
    if workers is not None:
        _positive_int("workers", workers, "workers=4")
    n = _resources.available_cores() if workers is None else workers
    if kind == "threads":
        with dask.config.set(scheduler=kind, num_workers=n):
            yield None
        return
    pool = _ProcessPool(n)
    try:
        with dask.config.set(scheduler=pool.get, num_workers=n):
            yield None
    finally:
        pool.shutdown(cancel_futures=True)


@contextlib.contextmanager
def _local_cluster(
    workers: int | None,
    threads_per_worker: int | None,
    memory: str | int | None,
    options: dict[str, Any],
) -> Iterator[Any]:
    from distributed import Client, LocalCluster
    from distributed.deploy.utils import nprocesses_nthreads

    from lazyraster.cluster._plugins import FreezeHeapOnClose

    for name in ("n_workers", "memory_limit"):
        if name in options:
            raise TypeError(
                f"kind='local' sizes the cluster with workers= and memory= (all workers "
                f"together), not {name}="
            )
    if workers is not None:
        _positive_int("workers", workers, "workers=4")
    if threads_per_worker is not None:
        _positive_int("threads_per_worker", threads_per_worker, "threads_per_worker=2")
    cores = _resources.available_cores()
    if workers is None and threads_per_worker is None:
        workers, threads_per_worker = nprocesses_nthreads(cores)
    elif workers is None:
        workers = max(1, cores // threads_per_worker)  # type: ignore[operator]
    elif threads_per_worker is None:
        threads_per_worker = max(1, cores // workers)
    limit = _resources.available_memory()
    total = limit if memory is None else _positive_memory("memory", memory)
    if total > limit:
        raise ClusterConfigError(
            f"memory={memory!r} is more than this process may use ({format_bytes(limit)}, "
            "from the cgroup or SLURM job limit and the RAM); ask for less."
        )
    options.setdefault("dashboard_address", _config("dashboard-address"))
    if options.get("processes", True):  # workers in this process talk inproc://, no host
        options.setdefault("host", "127.0.0.1")
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            memory_limit=total // workers,
            **options,
        ) as local,
        Client(local, set_as_default=True) as client,
    ):
        if options.get("processes", True):
            client.register_plugin(FreezeHeapOnClose())
        _announce(client)
        yield client
