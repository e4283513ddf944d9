"""What this process may use: cores (affinity), memory (RAM, cgroup, SLURM job), workers.

Also the checks of sizes the user gives (``workers=``, ``memory=``) and the factory's
own defaults in dask config ``lazyraster.cluster``, which every kind reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.config
from dask.utils import parse_bytes

from lazyraster.errors import ClusterConfigError

__all__ = ["available_cores", "available_memory", "default_workers"]


def _config(key: str) -> Any:
    """The factory's default ``key`` from dask config ``lazyraster.cluster``."""
    return dask.config.get(f"lazyraster.cluster.{key}")


def _positive_int(name: str, value: Any, example: str) -> None:
    """Refuse anything but a whole number of at least 1 (``True`` too), naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ClusterConfigError(
            f"{name}={value!r} must be a whole number of at least 1, e.g. {example}"
        )


def _positive_memory(name: str, value: Any) -> int:
    """Bytes of a positive amount of memory (``"8GiB"``, ``2**30``), else an error."""
    try:
        size = parse_bytes(value)
    except (ValueError, TypeError):
        size = 0
    if isinstance(value, bool) or size <= 0:
        raise ClusterConfigError(
            f"{name}={value!r} is not a positive amount of memory; write e.g. {name}='8GiB'"
        )
    return size


def available_cores() -> int:
    """Return how many cores this process may run on.

    ``len(os.sched_getaffinity(0))``: inside a batch job or under ``taskset`` this is
    the allocation, where ``os.cpu_count()`` would be the whole node. SLURM binds a
    job to its CPUs when the site runs ``TaskPlugin=task/affinity`` or ``task/cgroup``
    (the usual set-up); under ``task/none`` a job sees the whole node.

    Examples
    --------
    >>> 1 <= available_cores() <= os.cpu_count()
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():  # "max" (cgroup v2 without limit)
        return None
    value = int(text)
    return value if value < 2**60 else None  # cgroup v1 writes "no limit" as ~2**63


def _cgroup_memory_limit(
    root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """Smallest memory limit of this process's cgroup (v2, else v1), or None."""
    candidates = [root / "memory.max", root / "memory" / "memory.limit_in_bytes"]
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":  # v2 unified hierarchy
            candidates.append(root / rel / "memory.max")
        elif "memory" in controllers.split(","):
            candidates.append(root / "memory" / rel / "memory.limit_in_bytes")
    limits = [v for v in map(_read_int, candidates) if v is not None]
    return min(limits) if limits else None


def _slurm_memory_limit(environ: Mapping[str, str]) -> int | None:
    """Memory of the current SLURM job on this node from its environment, or None."""
    if environ.get("SLURM_MEM_PER_NODE", "").isdigit():
        return int(environ["SLURM_MEM_PER_NODE"]) * 2**20
    if environ.get("SLURM_MEM_PER_CPU", "").isdigit():
        cpus = environ.get("SLURM_CPUS_ON_NODE", "")
        ncpu = int(cpus) if cpus.isdigit() else available_cores()
        return int(environ["SLURM_MEM_PER_CPU"]) * 2**20 * ncpu
    return None


def available_memory() -> int:
    """Return how many bytes of memory this process may use.

    The smallest of the machine's RAM, the memory limit of the process's cgroup
    (``memory.max`` of cgroup v2, ``memory.limit_in_bytes`` of v1) and the memory of
    the SLURM job it runs in (``SLURM_MEM_PER_NODE``, or ``SLURM_MEM_PER_CPU`` times
    the job's CPUs on this node).

    Examples
    --------
    >>> available_memory() <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    True
    """
    limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    for limit in (_cgroup_memory_limit(), _slurm_memory_limit(os.environ)):
        if limit is not None:
            limits.append(limit)
    return min(limits)


def default_workers(kind: str) -> int:
    """How many worker processes ``cluster(kind)`` starts when ``workers=`` is not given.

    ``processes``: one per core this process may use; ``local``: distributed's split of
    those cores into processes and threads (all processes up to 4 cores, then about
    the square root of the cores, each with several threads); other kinds: 1.

    Examples
    --------
    >>> default_workers("processes") == available_cores()
    True
    """
    cores = available_cores()
    if kind == "processes":
        return cores
    if kind == "local":
        from distributed.deploy.utils import nprocesses_nthreads

        return int(nprocesses_nthreads(cores)[0])
    return 1
