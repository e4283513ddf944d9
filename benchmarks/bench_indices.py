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
  OSAVI from the same DN bands (red, green, nir), with ``ds.geo.compute_indices`` against
  five ``ds.geo.index`` calls; on numpy (the five full-size results kept), and on
  dask (2048 chunks) streamed block by block into a sink that keeps nothing, as a
  write to Zarr would, so that the cost of gathering 5 full-size results in memory
  does not hide the cost of computing them.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

import lazyraster  # noqa: F401  (registers .geo)
from harness import Case

DEFAULT_SIZE = 10980
FIVE = ["NDVI", "GNDVI", "SAVI", "EVI2", "OSAVI"]
DN = {"scale": 1e-4, "nodata": 0}


class Discard:
    """A ``dask.array.store`` target that drops every block it receives."""

    def __setitem__(self, key: object, value: np.ndarray) -> None:
        pass


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

    def five_separate() -> list[xr.DataArray]:
        return [ds.geo.index(name, **DN) for name in FIVE]  # all five kept, as a user would

    def five_fused() -> xr.Dataset:
        return ds.geo.compute_indices(FIVE, **DN)

    def five_separate_streamed() -> None:
        for name in FIVE:
            da.store(lazy.geo.index(name, **DN).data, Discard(), lock=False)

    def five_fused_streamed() -> None:
        out = lazy.geo.compute_indices(FIVE, **DN)
        da.store([v.data for v in out.data_vars.values()], [Discard()] * len(FIVE), lock=False)

    return [
        Case("numpy course script", run_numpy_script, baseline=True),
        Case("copy of the input bytes (floor)", copy_floor),
        Case("index NDVI (numpy)", lambda: ds.geo.index("NDVI", **DN)),
        Case("index NDVI (dask 2048)", lambda: lazy.geo.index("NDVI", **DN).compute()),
        Case("5 indices, 5 calls (numpy)", five_separate),
        Case("5 indices, one call (numpy)", five_fused),
        Case("5 indices, 5 calls (dask 2048, streamed)", five_separate_streamed),
        Case("5 indices, one call (dask 2048, streamed)", five_fused_streamed),
    ]
