"""Spectral indices from uint16 bands: the course script's numpy steps, the fused kernel, a copy.

Input: Sentinel-2-like uint16 bands (reflectance x 10000, 0 = nodata on 5 % of the
pixels) from a fixed seed. Every NDVI case turns red and nir into a float32 NDVI with
nodata as NaN.

- ``numpy course script`` (baseline): to float32, divide by 10000, mask nodata with
  NaN, ``(nir - red) / (nir + red)``.
- ``copy of the input bytes (floor)``: ``red.copy()`` and ``nir.copy()``, the cost of
  touching the same bytes once and writing as many new ones.
- ``index NDVI (numpy)`` / ``(dask 2048)``: ``ds.geo.index("NDVI", scale=1e-4,
  nodata=0)``, the same steps fused in one kernel that reads each band once.
- ``5 indices, one call`` / ``5 indices, 5 calls``: NDVI, GNDVI, SAVI, EVI2 and
  OSAVI from the same DN bands (red, green, nir), with ``ds.geo.indices`` against
  five ``ds.geo.index`` calls; on numpy, and on dask (2048 chunks) computed at once.
"""

from __future__ import annotations

import dask
import numpy as np
import xarray as xr

import lazyraster  # noqa: F401  (registers .geo)
from harness import Case

DEFAULT_SIZE = 10980
FIVE = ["NDVI", "GNDVI", "SAVI", "EVI2", "OSAVI"]
DN = {"scale": 1e-4, "nodata": 0}


def make_bands(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Return red, green, nir uint16 arrays of ``size`` x ``size`` with 5 % nodata (0)."""
    rng = np.random.default_rng(seed)
    bands = {
        "red": rng.integers(200, 3000, size=(size, size), dtype=np.uint16),
        "green": rng.integers(300, 2500, size=(size, size), dtype=np.uint16),
        "nir": rng.integers(1500, 6000, size=(size, size), dtype=np.uint16),
    }
    nodata = rng.random((size, size)) < 0.05
    for band in bands.values():
        band[nodata] = 0
    return bands


def numpy_script(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    r = red.astype(np.float32) / 10000
    n = nir.astype(np.float32) / 10000
    r[red == 0] = np.nan
    n[nir == 0] = np.nan
    return (n - r) / (n + r)


def setup(size: int) -> list[Case]:
    bands = make_bands(size)
    red, nir = bands["red"], bands["nir"]
    ds = xr.Dataset({k: (("y", "x"), v) for k, v in bands.items()})
    lazy = ds.chunk({"y": 2048, "x": 2048})

    def run_numpy_script() -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            numpy_script(red, nir)

    def copy_floor() -> None:
        red.copy()
        nir.copy()

    def five_separate(obj: xr.Dataset) -> None:
        results = [obj.geo.index(name, **DN) for name in FIVE]
        dask.compute(*results)

    def five_fused(obj: xr.Dataset) -> None:
        obj.geo.indices(FIVE, **DN).compute()

    return [
        Case("numpy course script", run_numpy_script, baseline=True),
        Case("copy of the input bytes (floor)", copy_floor),
        Case("index NDVI (numpy)", lambda: ds.geo.index("NDVI", **DN)),
        Case("index NDVI (dask 2048)", lambda: lazy.geo.index("NDVI", **DN).compute()),
        Case("5 indices, 5 calls (numpy)", lambda: five_separate(ds)),
        Case("5 indices, one call (numpy)", lambda: five_fused(ds)),
        Case("5 indices, 5 calls (dask 2048)", lambda: five_separate(lazy)),
        Case("5 indices, one call (dask 2048)", lambda: five_fused(lazy)),
    ]
