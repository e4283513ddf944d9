"""Writing a float32 NDVI from dask as a COG with overviews: lazyraster against rioxarray.

Input: a ``size`` x ``size`` float32 NDVI computed lazily (``ds.geo.ndvi()``) from two
random uint16 bands with 5 % nodata (NaN in the NDVI), 2048 x 2048 dask chunks, UTM
CRS. Every case ends with a DEFLATE, floating-point-predictor COG with 512 x 512 tiles
and average overviews, written with the threaded dask scheduler.

- ``rioxarray to_raster + rio-cogeo`` (baseline): the usual recipe,
  ``to_raster(tiled=True, lock=threading.Lock())`` to an intermediate tiled GeoTIFF,
  then ``rio_cogeo.cog_translate`` to a COG with overviews.
- ``rioxarray + rio-cogeo, GDAL threads``: the same, with ``NUM_THREADS=ALL_CPUS`` for
  GDAL's compression in the translation step (a tuned baseline).
- ``lazyraster.write_geotiff``: each dask task compresses its block's tiles (and the
  overview tiles inside it); a final task copies them into GDAL's COG layout.

Outputs go to a temporary folder and are deleted after each run. The machine's load
(other jobs on shared cores) makes absolute times noisy: compare the ratios measured in
the same run.
"""

from __future__ import annotations

import os
import tempfile
import threading

import dask
import dask.array as dsa
import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

import lazyraster
from harness import Case

DEFAULT_SIZE = 10980
CHUNK = 2048


def make_ndvi(size: int, seed: int = 0) -> xr.DataArray:
    """A lazy float32 NDVI of ``size`` x ``size`` with a CRS and 10 m pixels."""
    rng = dsa.random.default_rng(seed)
    shape, chunks = (size, size), (CHUNK, CHUNK)
    red = rng.integers(200, 3000, size=shape, chunks=chunks, dtype=np.uint16)
    nir = rng.integers(1500, 6000, size=shape, chunks=chunks, dtype=np.uint16)
    nodata = rng.random(shape, chunks=chunks) < 0.05
    red = dsa.where(nodata, 0, red).astype(np.uint16)
    nir = dsa.where(nodata, 0, nir).astype(np.uint16)
    x = 600000.0 + 10.0 * (np.arange(size) + 0.5)
    y = 5700000.0 - 10.0 * (np.arange(size) + 0.5)
    coords = {"y": y, "x": x}
    ds = xr.Dataset({"red": (("y", "x"), red), "nir": (("y", "x"), nir)}, coords=coords)
    ds = ds.rio.write_crs("EPSG:32631")
    return ds.geo.ndvi(scale=1e-4, nodata=0)  # NaN where the bands are nodata


def setup(size: int) -> list[Case]:
    ndvi = make_ndvi(size)
    folder = tempfile.mkdtemp(prefix="bench_write_cog-")
    profile = {**cog_profiles.get("deflate"), "predictor": 3}

    def rioxarray_then_cog(threads: bool) -> None:
        tmp = os.path.join(folder, "intermediate.tif")
        out = os.path.join(folder, f"rioxarray{'-threads' if threads else ''}.tif")
        ndvi.rio.to_raster(tmp, tiled=True, lock=threading.Lock())
        config = {"GDAL_NUM_THREADS": "ALL_CPUS"} if threads else {}
        dst = {**profile, "num_threads": "ALL_CPUS"} if threads else profile
        cog_translate(
            tmp, out, dst, overview_resampling="average", quiet=True, config=config or None
        )
        os.remove(tmp)
        os.remove(out)

    def ours() -> None:
        out = lazyraster.write_geotiff(ndvi, os.path.join(folder, "lazyraster.tif"))
        os.remove(out)

    def threaded(func):
        def run() -> None:
            with dask.config.set(scheduler="threads"):
                func()

        return run

    return [
        Case(
            "rioxarray to_raster + rio-cogeo",
            threaded(lambda: rioxarray_then_cog(False)),
            baseline=True,
        ),
        Case("rioxarray + rio-cogeo, GDAL threads", threaded(lambda: rioxarray_then_cog(True))),
        Case("lazyraster.write_geotiff", threaded(ours)),
    ]
