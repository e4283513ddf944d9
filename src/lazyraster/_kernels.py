"""The numba kernels: which there are, where numba caches them, and filling that cache.

Every kernel is compiled with ``cache=True``. numba writes the machine code into the
``__pycache__`` folder beside the module when it may, and otherwise (a wheel in a
read-only site-packages) into ``$XDG_CACHE_HOME/numba`` (``~/.cache/numba``); a set
``NUMBA_CACHE_DIR`` takes precedence over both. :func:`warmup` compiles, or loads, every
kernel for the common dtypes once, so that the processes which run the work later
(dask workers, array jobs) load machine code instead of compiling it.
"""

from __future__ import annotations

import datetime as dt
import importlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ANALYSIS_PACKAGES",
    "DTYPES",
    "KERNEL_MODULES",
    "WarmupReport",
    "kernel_modules",
    "kernels",
    "warmup",
]

#: Modules that define numba kernels: the stages' own, then each analysis package's
#: ``KERNELS`` (read in :func:`kernels`, so listing them imports nothing).
KERNEL_MODULES = (
    "lazyraster.io.cog._overviews",
    "lazyraster.load._reader",
)

#: Analysis packages that list their kernel modules in a public ``KERNELS`` tuple.
ANALYSIS_PACKAGES = ("lazyraster.focal", "lazyraster.indices", "lazyraster.phenology")

#: Input dtypes :func:`warmup` prepares the kernels for.
DTYPES = ("float32", "float64", "uint16", "int16", "uint8")


def kernel_modules() -> tuple[str, ...]:
    """Every module that defines numba kernels (importing the analysis packages' inits).

    Examples
    --------
    >>> "lazyraster.focal._kernels" in kernel_modules()
    True
    """
    found = list(KERNEL_MODULES)
    for package in ANALYSIS_PACKAGES:
        found += importlib.import_module(package).KERNELS
    return tuple(found)


def kernels() -> dict[str, Any]:
    """Every numba kernel of the package, by ``module.name`` (importing the modules).

    Names are relative to ``lazyraster.``, e.g. ``focal._kernels._span_order``.

    Examples
    --------
    >>> "focal._kernels._box_moments_finite" in kernels()
    True
    """
    from numba.core.dispatcher import Dispatcher

    found = {}
    for name in kernel_modules():
        module = importlib.import_module(name)
        short = name.removeprefix("lazyraster.")
        for attr, value in vars(module).items():
            if isinstance(value, Dispatcher):
                found[f"{short}.{attr}"] = value
    return found


@dataclass
class WarmupReport:
    """What :func:`warmup` did: signatures loaded from the cache and compiled, per kernel."""

    loaded: dict[str, int]
    compiled: dict[str, int]
    cache_dirs: list[str]

    def summary(self) -> str:
        """Two lines for the command line."""
        used = sorted(set(self.loaded) | set(self.compiled))
        return (
            f"{len(used)} kernels run: {sum(self.loaded.values())} signatures loaded from the "
            f"cache, {sum(self.compiled.values())} compiled and cached\n"
            f"cache: {', '.join(self.cache_dirs)}"
        )


def _counts(found: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {
        name: (sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values()))
        for name, d in found.items()
    }


def warmup(dtypes: Sequence[str] = DTYPES) -> WarmupReport:
    """Compile or load every numba kernel for ``dtypes``, so later processes only load them.

    Runs reads, NDVI and a multi-band index, the six focal statistics (square and
    circular windows, with and without infinities), a COG write and the spring index on
    tiny inputs of each dtype, eagerly and on dask, on the synchronous scheduler.

    Parameters
    ----------
    dtypes : sequence of str
        Input dtypes to prepare; default :data:`DTYPES`.

    Returns
    -------
    WarmupReport
        Per kernel, the signatures loaded from the cache and those compiled, and the
        cache folders in use.

    Examples
    --------
    ``warmup()`` (``lazyraster warmup``) compiles every kernel for every dtype in about
    a minute when nothing is cached yet; with no dtype it prepares only the dtype-free
    kernels (the reads) and says where the cache is:

    >>> report = warmup([])
    >>> report.summary().splitlines()[1].startswith("cache: ")
    True
    """
    import dask

    found = kernels()
    before = _counts(found)
    with tempfile.TemporaryDirectory() as tmp, dask.config.set(scheduler="sync"):
        for dtype in dtypes:
            _exercise(Path(tmp), dtype)
        _spring_index()
    after = _counts(found)
    loaded = {n: after[n][0] - before[n][0] for n in found if after[n][0] > before[n][0]}
    compiled = {n: after[n][1] - before[n][1] for n in found if after[n][1] > before[n][1]}
    dirs = sorted({d._cache._cache_path for d in found.values()})
    return WarmupReport(loaded=loaded, compiled=compiled, cache_dirs=dirs)


def _exercise(folder: Path, dtype: str) -> None:
    """Read, index, filter and write tiny rasters of ``dtype``."""
    import numpy as np
    import xarray as xr

    from lazyraster import focal, testing
    from lazyraster.io import write_geotiff
    from lazyraster.load import load

    bands = {}
    for i, band in enumerate(("blue", "red", "nir")):
        values = testing.synthetic_raster((40, 48), seed=i).values * 100 + 1
        bands[band] = testing.write_cog(folder / f"{band}-{dtype}.tif", values.astype(dtype))
    assets = {b: {"href": str(p), "common_name": b} for b, p in bands.items()}
    item = testing.raster_item(f"warmup-{dtype}", dt.datetime(2024, 5, 1), assets)
    for out in (None, "float64"):
        loaded = load([item], chunks=24, dtype=out)
        loaded.geo.ndvi().compute()
        loaded.geo.index("EVI").compute()
    first = loaded.isel(time=0)
    eager = xr.Dataset({b: (("y", "x"), first[b].values.astype(dtype)) for b in bands})
    reflectance = {"scale": 1e-4, "nodata": 0} if np.dtype(dtype).kind in "iu" else {}
    eager.geo.ndvi(**reflectance)
    eager.geo.index("EVI", **reflectance)
    raster = testing.synthetic_raster((40, 48)).astype(dtype)
    planes = [raster, raster.chunk(24)]
    if np.dtype(dtype).kind == "f":
        planes.append(raster.where(raster.x != raster.x[3], np.inf))
    for plane in planes:
        for stat in ("mean", "sum", "std", "min", "max", "median"):
            for shape in ("square", "circle"):
                getattr(focal, f"focal_{stat}")(plane, size=3, shape=shape).compute()
    tiles = testing.synthetic_raster((260, 260)).astype(dtype).chunk(128)  # with an overview
    write_geotiff(tiles, folder / f"{dtype}.tif", blocksize=128)


def _spring_index() -> None:
    from lazyraster import testing

    ds = testing.daymet_like(2021)
    ds.geo.spring_index_dataset().compute()
    ds.chunk({"y": 3}).geo.spring_index_dataset().compute()
