"""Clusters: one factory for threads, processes, LocalCluster, SLURM and a scheduler.

The package is callable: ``lazyraster.cluster(kind, ...)`` is :func:`cluster`::

    import lazyraster
    with lazyraster.cluster("local", workers=2) as client:
        result = ndvi.compute()

Its private modules, by job: ``_resources`` (cores, memory, cgroup limits),
``_slurm`` (SLURM options, sbatch checks, job scripts), ``_jobs`` (why a worker job
did not start), ``_pools`` (threads, processes, LocalCluster) and ``_factory``
(:func:`cluster`).
"""

from __future__ import annotations

from lazyraster._imports import CallableModule as _CallableModule
from lazyraster.cluster._factory import cluster
from lazyraster.cluster._resources import available_cores, available_memory, default_workers
from lazyraster.cluster._slurm import SECRET_NAME, JobScript, slurm_job_script

__all__ = [
    "SECRET_NAME",
    "JobScript",
    "available_cores",
    "available_memory",
    "cluster",
    "default_workers",
    "slurm_job_script",
]

_CallableModule.install(__name__, cluster)
