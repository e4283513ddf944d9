"""Package configuration, layered the dask way.

Defaults ship in ``lazyraster.yaml`` beside this module and are merged into
``dask.config`` under ``lazyraster`` as soon as both the package and ``dask.config``
are imported (whichever comes first; see ``lazyraster/__init__.py``); nothing is
written to the user's home. This module imports dask only inside its functions, so
that merge can run while dask itself is being imported. A dask config file,
``DASK_LAZYRASTER__...`` environment variables and ``dask.config.set`` override them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["gdal_options", "load_defaults", "package_version"]

_DEFAULTS = Path(__file__).with_name("lazyraster.yaml")


def load_defaults() -> None:
    """Merge the packaged defaults under any user settings in ``dask.config``.

    dask-jobqueue's own defaults are merged too, without importing it (its import
    copies jobqueue.yaml into the user's home): then ``jobqueue.slurm.*`` keys exist
    before a ``dask.config.set`` block that would otherwise remove them again.

    Examples
    --------
    >>> import dask.config
    >>> load_defaults()
    >>> dask.config.get("lazyraster.cluster.kind")
    'threads'
    >>> dask.config.get("lazyraster.gdal.GDAL_NUM_THREADS")
    1
    >>> with dask.config.set({"lazyraster.gdal.GDAL_NUM_THREADS": 4}):
    ...     load_defaults()  # defaults go under what is set
    ...     dask.config.get("lazyraster.gdal.GDAL_NUM_THREADS")
    4
    """
    import dask.config
    import yaml

    with open(_DEFAULTS) as f:
        dask.config.update_defaults(yaml.safe_load(f))
    spec = importlib.util.find_spec("dask_jobqueue")
    if spec is not None and spec.origin is not None:
        jobqueue_yaml = Path(spec.origin).with_name("jobqueue.yaml")
        if jobqueue_yaml.exists():
            with open(jobqueue_yaml) as f:
                dask.config.update_defaults(yaml.safe_load(f))


def gdal_options(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The GDAL configuration options used for reads, with ``overrides`` on top.

    Examples
    --------
    >>> gdal_options({"GDAL_HTTP_MAX_RETRY": 5})["GDAL_HTTP_MAX_RETRY"]
    5
    >>> gdal_options()["GDAL_DISABLE_READDIR_ON_OPEN"]
    'EMPTY_DIR'
    """
    import dask.config

    options = dict(dask.config.get("lazyraster.gdal", default={}))
    options.update(overrides or {})
    return options


def package_version() -> str:
    """The installed lazyraster's version (``0+unknown`` from an uninstalled source tree).

    Examples
    --------
    >>> package_version() != ""
    True
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lazyraster")
    except PackageNotFoundError:
        return "0+unknown"
