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
import os
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
    if options.get("GDAL_CACHEMAX") is not None:
        options["GDAL_CACHEMAX"] = cache_bytes(options["GDAL_CACHEMAX"])
    return options


def cache_bytes(value: int | float | str) -> int:
    """``GDAL_CACHEMAX`` in bytes, from GDAL's own spellings of it.

    GDAL reads a number below 100000 as megabytes, a larger one as bytes, ``"25%"`` as
    a share of the machine's memory and ``"512MB"`` with its unit; rasterio's ``Env``
    hands the value to ``GDALSetCacheMax64``, which takes bytes only, so ``256`` would
    leave a block cache of 256 bytes (every block decoded again each time it is read).

    Examples
    --------
    >>> cache_bytes(256), cache_bytes("256"), cache_bytes("1GB"), cache_bytes(268435456)
    (268435456, 268435456, 1073741824, 268435456)
    >>> cache_bytes("100%") == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    True
    """
    text = str(value).strip().upper()
    units = {"%": None, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}
    unit = next((u for u in units if text.endswith(u)), "")
    try:
        number = float(text.removesuffix(unit)) if unit else float(text)
    except ValueError:
        raise ValueError(
            f"GDAL_CACHEMAX={value!r}: give megabytes (256), bytes (268435456), a share of "
            'the memory ("10%") or a size with its unit ("512MB")'
        ) from None
    if unit == "%":
        return int(number / 100 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    if unit:
        return int(number * units[unit])
    return int(number * 2**20) if number < 100000 else int(number)


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
