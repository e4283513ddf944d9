"""Data factories for tests and examples: rasters, items, dask guards, sample inputs.

Small georeferenced rasters, uneven dask chunkings and a guard against accidental
computation; and small but faithful sample inputs for catalogs (Sentinel-2 SAFE
products, COGs, Daymet-like netCDF) written with the libraries the real products are
read with.

Examples
--------
>>> from lazyraster.testing import synthetic_raster, raise_if_dask_computes
>>> da = synthetic_raster((20, 30), chunks={"y": 7, "x": 11})
>>> with raise_if_dask_computes():
...     doubled = da * 2
"""

from __future__ import annotations

from lazyraster.testing._arrays import (
    DAYMET_LCC,
    CountingScheduler,
    daymet_like,
    raise_if_dask_computes,
    raster_item,
    synthetic_raster,
    uneven_chunks,
    write_cog,
)
from lazyraster.testing._catalogs import write_daymet, write_safe, write_sample_cog

__all__ = [
    "DAYMET_LCC",
    "CountingScheduler",
    "daymet_like",
    "raise_if_dask_computes",
    "raster_item",
    "synthetic_raster",
    "uneven_chunks",
    "write_cog",
    "write_daymet",
    "write_safe",
    "write_sample_cog",
]
