"""One factory for every place the same analysis runs: threads to a SLURM cluster.

``cluster(kind, ...)`` is a context manager. Inside the ``with`` block dask computes
on the chosen scheduler; on leaving it (also on an error) workers, jobs and
connections are closed again::

    with lazyraster.cluster("slurm", jobs=4, cores=8, memory="32GiB") as client:
        ndvi.to_zarr("ndvi.zarr")

Kinds
-----
``"threads"``, ``"processes"``
    dask's local schedulers, with as many workers as this process may use cores
    (``len(os.sched_getaffinity(0))``, which respects a batch job's allocation).
    ``processes`` keeps one pool of worker processes for the whole block, started on
    entering it, instead of one per computation; its workers all hash alike
    (``PYTHONHASHSEED`` in their own environment, not in this process's).
``"local"``
    a ``distributed.LocalCluster`` sized from those cores and from the memory this
    process may really use (cgroup or SLURM job limit, and the machine's RAM).
``"slurm"``
    a ``dask_jobqueue.SLURMCluster`` submitting worker jobs, or, with
    ``allocation=True`` inside ``srun``, dask-jobqueue's ``SLURMRunner`` running the
    scheduler and workers on the ranks of the current allocation.
``"tcp://host:port"``
    a scheduler that is already running.

SLURM options come from the arguments, the environment and dask config
``jobqueue.slurm`` (see :mod:`lazyraster.cluster._slurm`). Defaults of the factory
itself (kind, dashboard addresses, timeouts) live in the ``lazyraster.cluster``
section of dask's config, shipped in ``lazyraster.yaml``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config

from lazyraster.cluster import _resources
from lazyraster.cluster._jobs import _wait_for_slurm_workers
from lazyraster.cluster._pools import _announce, _local_cluster, _local_scheduler
from lazyraster.cluster._resources import _config
from lazyraster.cluster._slurm import (
    JobScript,
    _check_with_sbatch,
    _job_class,
    _resolve_slurm_options,
    _slurm_cluster_kwargs,
    _validate_slurm,
)
from lazyraster.errors import ClusterConfigError, ClusterStartError

__all__ = ["cluster"]


@contextlib.contextmanager
def _slurm_cluster(
    jobs: int | None,
    adapt: tuple[int, int] | None,
    timeout: float | None,
    options: dict[str, Any],
) -> Iterator[Any]:
    from distributed import Client

    if jobs is not None and adapt is not None:
        raise TypeError("pass either jobs=N or adapt=(minimum, maximum), not both")
    if jobs is None and adapt is None:
        jobs = 1
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs={jobs} must be at least 1")
    if adapt is not None:
        low, high = adapt
        if not 0 <= low <= high or high < 1:
            raise ValueError(f"adapt={adapt!r} must be (minimum, maximum) with 0 <= min <= max")
    resolved = _resolve_slurm_options(options, os.environ)
    _validate_slurm(resolved)
    _check_with_sbatch(resolved)
    from dask_jobqueue import SLURMCluster

    kwargs = _slurm_cluster_kwargs(resolved)
    wait = float(_config("timeout") if timeout is None else timeout)
    with (
        _job_class(resolved) as job_cls,
        SLURMCluster(job_cls=job_cls, **kwargs) as slurm,
        Client(slurm, set_as_default=True) as client,
    ):
        try:
            # dask-jobqueue picks the worker processes per job when processes= is unset
            job = getattr(slurm, "_dummy_job", None)
            processes = int(getattr(job, "worker_processes", 0) or kwargs.get("processes") or 1)
            if adapt is not None:
                slurm.adapt(minimum_jobs=adapt[0], maximum_jobs=adapt[1])
                first = adapt[0] * processes  # from zero: jobs come with the first tasks
            else:
                slurm.scale(jobs=jobs)
                first = jobs * processes  # type: ignore[operator]
            _announce(client)
            if first:
                _wait_for_slurm_workers(client, slurm, first, wait)
            yield client
        finally:
            # Jobs go before the scheduler, so that none is left running or pending.
            with contextlib.suppress(Exception):
                slurm.scale(0)


@contextlib.contextmanager
def _slurm_runner(options: dict[str, Any]) -> Iterator[Any]:
    if not os.environ.get("SLURM_JOB_ID") or not os.environ.get("SLURM_PROCID"):
        raise ClusterConfigError(
            "allocation=True runs the scheduler and workers on the ranks of the current "
            "allocation: start the script with `srun -n <3 or more> python script.py` "
            "inside `sbatch`/`salloc`."
        )
    from dask_jobqueue.slurm import SLURMRunner
    from distributed import Client

    scheduler_file = str(
        options.pop("scheduler_file", None) or Path.cwd() / "dask-scheduler-{job_id}.json"
    )
    interface = (
        options.pop("interface", None)
        or os.environ.get("LAZYRASTER_SLURM_INTERFACE")
        or dask.config.get("jobqueue.slurm.interface", None)
    )
    scheduler_options = dict(options.pop("scheduler_options", None) or {})
    worker_options = dict(options.pop("worker_options", None) or {})
    scheduler_options.setdefault("dashboard_address", _config("dashboard-address"))
    worker_options.setdefault("dashboard_address", _config("worker-dashboard-address"))
    # this rank's CPUs, not the node's
    worker_options.setdefault("nthreads", _resources.available_cores())
    if interface is not None:
        scheduler_options.setdefault("interface", interface)
        worker_options.setdefault("interface", interface)
    # Ranks 0 (scheduler) and >= 2 (workers) serve inside __enter__ and end their
    # process when the client rank leaves; only rank 1 runs the body of the block.
    runner = SLURMRunner(
        scheduler_file=scheduler_file,
        scheduler_options=scheduler_options,
        worker_options=worker_options,
        **options,
    )
    try:
        with runner, Client(runner, set_as_default=True) as client:
            client.wait_for_workers(runner.n_workers, timeout=_config("timeout"))
            _announce(client)
            yield client
    finally:
        with contextlib.suppress(OSError):
            if os.environ.get("SLURM_PROCID") == "1":
                Path(runner.scheduler_file).unlink()


def cluster(
    kind: str | None = None,
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory: str | int | None = None,
    jobs: int | None = None,
    adapt: tuple[int, int] | None = None,
    timeout: float | None = None,
    allocation: bool | None = None,
    dry_run: bool = False,
    **options: Any,
) -> contextlib.AbstractContextManager[Any]:
    """Run the dask computations of a ``with`` block on threads, processes or a cluster.

    Parameters
    ----------
    kind : {"threads", "processes", "local", "slurm"} or "tcp://host:port", optional
        Where to compute; default from dask config ``lazyraster.cluster.kind``
        (``"threads"``).
    workers : int, optional
        ``threads``/``processes``: number of workers; ``local``: number of worker
        processes. Default from the cores this process may use (affinity).
    threads_per_worker : int, optional
        ``local`` only.
    memory : str or int, optional
        ``local``: memory of the whole cluster, split over the workers (default: what
        this process may use, see :func:`available_memory`). ``slurm``: memory of each
        job, e.g. ``"32GiB"``.
    jobs : int, optional
        ``slurm``: number of worker jobs (default 1).
    adapt : (int, int), optional
        ``slurm``: adapt between ``minimum`` and ``maximum`` jobs instead of ``jobs``.
    timeout : float, optional
        ``slurm``: seconds to wait for the first workers (default from config
        ``lazyraster.cluster.timeout``); ``tcp://``: seconds to connect.
    allocation : bool, optional
        ``slurm``: instead of submitting jobs, run the scheduler and the workers on the
        ranks of the current allocation (dask-jobqueue's ``SLURMRunner``). Start the
        script with ``srun -n N python script.py``: rank 0 is the scheduler, rank 1
        runs the block, the others are workers. Default from dask config
        ``lazyraster.cluster.allocation`` (false).
    dry_run : bool
        ``slurm``: yield the worker job, a :class:`JobScript` (``.script``,
        ``.options``; ``str()`` of it is the script), and print nothing; nothing is
        submitted and the default scheduler is left as it is.
    **options
        Passed on to ``LocalCluster`` or ``SLURMCluster`` (``account``,
        ``partition``/``queue``, ``cores``, ``processes``, ``walltime``,
        ``interface``, ``local_directory``, ``log_directory``,
        ``job_extra_directives``, ``job_script_prologue``, ``python``, ...). SLURM
        options fall back to the environment, then to dask config ``jobqueue.slurm``
        (see the module documentation for the variable names).

    Yields
    ------
    distributed.Client or None or JobScript
        A client set as the default for the block (``local``, ``slurm``, ``tcp://``),
        ``None`` for ``threads``/``processes``, the worker job with ``dry_run``.

    Raises
    ------
    lazyraster.errors.ClusterConfigError
        An option is wrong (no such partition, more memory or cores than a node has,
        cores/memory missing); raised before anything is submitted.
    lazyraster.errors.ClusterStartError
        SLURM worker jobs ended or could not start, or did not connect in time; the
        message shows each job's state and the end of its log.

    Examples
    --------
    >>> import dask.array as da
    >>> with cluster("threads", workers=2) as client:
    ...     total = da.ones((100, 100), chunks=30).sum().compute()
    >>> client is None, float(total)
    (True, 10000.0)
    """
    kind = str(_config("kind") if kind is None else kind)
    if allocation is None:
        allocation = bool(_config("allocation")) and kind == "slurm"
    if (dry_run or allocation) and kind != "slurm":
        raise TypeError(f"dry_run= and allocation= go with kind='slurm', not kind={kind!r}")
    if kind in ("threads", "processes"):
        if jobs is not None or adapt is not None or memory is not None:
            raise TypeError(f"kind={kind!r} takes workers= only, not jobs/adapt/memory")
        return _local_scheduler(kind, workers, options)
    if kind == "local":
        return _local_cluster(workers, threads_per_worker, memory, options)
    if kind == "slurm":
        if memory is not None:
            options["memory"] = memory
        if dry_run:
            return _dry_run(options)
        if allocation:
            return _slurm_runner(options)
        return _slurm_cluster(jobs, adapt, timeout, options)
    if "://" in kind:
        return _existing_scheduler(kind, timeout, options)
    raise ValueError(
        f"kind={kind!r} is not one of 'threads', 'processes', 'local', 'slurm' or a "
        "scheduler address such as 'tcp://10.0.0.5:8786'."
    )


@contextlib.contextmanager
def _dry_run(options: dict[str, Any]) -> Iterator[JobScript]:
    yield JobScript.from_options(**options)


@contextlib.contextmanager
def _existing_scheduler(
    address: str, timeout: float | None, options: dict[str, Any]
) -> Iterator[Any]:
    from distributed import Client

    wait = float(_config("connect-timeout") if timeout is None else timeout)
    try:
        client = Client(address, timeout=wait, set_as_default=True, **options)
    except OSError as err:  # refused, unreachable, timed out: distributed says OSError
        raise ClusterStartError(
            f"cannot reach the dask scheduler at {address} within {wait:g} s ({err}); "
            "check the address and that the scheduler runs (dask scheduler), or compute "
            "here with kind='local' (CLI: --cluster local)"
        ) from None
    with client:
        _announce(client)
        yield client
