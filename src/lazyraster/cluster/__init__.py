"""Clusters: one factory for threads, processes, LocalCluster, SLURM and a scheduler.

The package is callable: ``lazyraster.cluster(kind, ...)`` is :func:`cluster`::

    import lazyraster
    with lazyraster.cluster("local", workers=2) as client:
        result = ndvi.compute()
"""

from __future__ import annotations

from lazyraster._imports import CallableModule as _CallableModule
from lazyraster.cluster._factory import (
    SECRET_NAME,
    available_cores,
    available_memory,
    cluster,
    default_workers,
    slurm_job_script,
)

__all__ = [
    "SECRET_NAME",
    "available_cores",
    "available_memory",
    "cluster",
    "default_workers",
    "slurm_job_script",
]

_CallableModule.install(__name__, cluster)
