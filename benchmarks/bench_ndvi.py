"""NDVI from two uint16 bands: lazyraster against the plain numpy expression.

Input: two Sentinel-2-like uint16 bands (reflectance x 10000, 0 = nodata on 5 % of the
pixels), generated from a fixed seed. Every case turns them into a float32 NDVI with
nodata as NaN.

- ``numpy expression`` (baseline): the course script's steps, to float32, divide by
  10000, mask nodata, ``(nir - red) / (nir + red)``.
- ``lazyraster.ndvi (numpy)``: ``ds.geo.ndvi()`` on numpy-backed DataArrays of the
  same integer bands, nodata masked through NaN-free integer zeros (0 + 0 -> NaN).
- ``lazyraster.ndvi (dask, 2048 chunks)``: the same on dask, computed with threads.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import lazyraster  # noqa: F401  (registers .geo)
from harness import Case

DEFAULT_SIZE = 10980


def make_bands(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (red, nir) uint16 arrays of ``size`` x ``size`` with 5 % nodata (0)."""
    rng = np.random.default_rng(seed)
    red = rng.integers(200, 3000, size=(size, size), dtype=np.uint16)
    nir = rng.integers(1500, 6000, size=(size, size), dtype=np.uint16)
    nodata = rng.random((size, size)) < 0.05
    red[nodata] = 0
    nir[nodata] = 0
    return red, nir


def numpy_script(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    r = red.astype(np.float32) / 10000
    n = nir.astype(np.float32) / 10000
    r[red == 0] = np.nan
    n[nir == 0] = np.nan
    return (n - r) / (n + r)


def setup(size: int) -> list[Case]:
    red, nir = make_bands(size)
    ds = xr.Dataset({"red": (("y", "x"), red), "nir": (("y", "x"), nir)})
    lazy = ds.chunk({"y": 2048, "x": 2048})

    def run_numpy_script() -> None:
        with np.errstate(invalid="ignore"):
            numpy_script(red, nir)

    return [
        Case("numpy expression", run_numpy_script, baseline=True),
        Case("lazyraster.ndvi (numpy)", lambda: ds.geo.ndvi()),
        Case("lazyraster.ndvi (dask, 2048 chunks)", lambda: lazy.geo.ndvi().compute()),
    ]
