"""Helpers for testing code that uses lazyraster.

Small georeferenced rasters, uneven dask chunkings and a guard against accidental
computation.

Examples
--------
>>> from lazyraster.testing import synthetic_raster, raise_if_dask_computes
>>> da = synthetic_raster((20, 30), chunks={"y": 7, "x": 11})
>>> with raise_if_dask_computes():
...     doubled = da * 2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

__all__ = ["CountingScheduler", "raise_if_dask_computes", "synthetic_raster", "uneven_chunks"]


class CountingScheduler:
    """A dask scheduler that counts ``compute`` calls and fails past a maximum.

    Examples
    --------
    >>> import dask
    >>> with dask.config.set(scheduler=CountingScheduler(1)):
    ...     pass
    """

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """Count one computation, then run it with the synchronous scheduler."""
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many dask computations were scheduled: {self.total_computes} "
                f"> {self.max_computes}"
            )
        return dask.get(dsk, keys, **kwargs)


def raise_if_dask_computes(max_computes: int = 0) -> Any:
    """Return a context manager in which more than ``max_computes`` computes raise.

    Examples
    --------
    >>> import dask.array as da
    >>> with raise_if_dask_computes():
    ...     lazy = da.ones(4) + 1  # building a graph is fine
    """
    return dask.config.set(scheduler=CountingScheduler(max_computes))


def uneven_chunks(n: int, parts: int = 3) -> tuple[int, ...]:
    """Split ``n`` into ``parts`` chunks of deliberately different sizes.

    Examples
    --------
    >>> uneven_chunks(10)
    (1, 3, 6)
    """
    parts = max(1, min(parts, n))
    weights = np.arange(1, parts + 1, dtype=float)
    sizes = np.floor(weights / weights.sum() * n).astype(int)
    sizes[sizes == 0] = 1
    sizes[-1] = n - sizes[:-1].sum()
    return tuple(int(s) for s in sizes)


def synthetic_raster(
    shape: Sequence[int] = (64, 96),
    *,
    crs: str = "EPSG:32631",
    resolution: float = 10.0,
    origin: tuple[float, float] = (600000.0, 5700000.0),
    seed: int = 0,
    dtype: Any = np.float32,
    nan_fraction: float = 0.0,
    chunks: Any = None,
    name: str = "band",
) -> xr.DataArray:
    """Make a random (y, x) raster with a real CRS and pixel-centre coordinates.

    Parameters
    ----------
    shape : (ny, nx)
        Raster size.
    crs : str
        Any CRS that rioxarray understands.
    resolution : float
        Pixel size in CRS units (square pixels, north up).
    origin : (x, y)
        Upper-left corner of the upper-left pixel.
    seed : int
        Seed of the random values (uniform in [0, 1)).
    dtype : numpy dtype
        Data type of the values.
    nan_fraction : float
        Share of pixels set to NaN (float dtypes only).
    chunks : optional
        Dask chunks; ``None`` keeps numpy.
    name : str
        Name of the DataArray.

    Returns
    -------
    xarray.DataArray
        With ``x``/``y`` coordinates and a ``spatial_ref`` coordinate.

    Examples
    --------
    >>> da = synthetic_raster((3, 4), resolution=30)
    >>> da.rio.resolution()
    (30.0, -30.0)
    """
    ny, nx = shape
    rng = np.random.default_rng(seed)
    values = rng.random((ny, nx)).astype(dtype)
    if nan_fraction:
        values[rng.random((ny, nx)) < nan_fraction] = np.nan
    x0, y0 = origin
    x = x0 + resolution * (np.arange(nx) + 0.5)
    y = y0 - resolution * (np.arange(ny) + 0.5)
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}, name=name)
    da = da.rio.write_crs(crs)
    if chunks is not None:
        da = da.chunk(chunks)
    return da
