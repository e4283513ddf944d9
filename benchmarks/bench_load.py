"""Load + NDVI + write Zarr for three Sentinel-2-like scenes from a static catalog.

Input (made once, deterministically, under ``benchmarks/.data/``): three scenes of
``size`` x ``size`` pixels, each a red and a nir band stored as uint16 tiled deflate
COGs with overviews (reflectance x 10000, nodata 0), in a static STAC catalog.

- ``per-file script`` (baseline): the course script, per scene: rasterio reads both
  whole bands, numpy computes NDVI (float32, / 10000, nodata masked), rasterio writes
  a float32 GeoTIFF.
- ``plain stackstac``: ``stackstac.stack`` with its defaults, xarray arithmetic,
  ``to_zarr``.
- ``lazyraster``: ``lazyraster.load`` + ``ds.geo.ndvi()`` + ``lazyraster.write_zarr``.
- ``I/O floor``: decode both bands with GDAL's multi-threaded decoding and write the
  output array to Zarr, nothing else.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import dask
import numpy as np
import pystac
import rasterio
import stackstac
import zarr
from rasterio.enums import Resampling

import lazyraster
import lazyraster.testing
from harness import Case

DEFAULT_SIZE = 10980
SCENES = 3
HERE = Path(__file__).resolve().parent
CHUNK = 2048


def _band(rng: np.random.Generator, size: int, low: int, high: int) -> np.ndarray:
    """A smooth field with texture, like a real band (compresses like one, too)."""
    coarse = rng.uniform(low, high, size=(size // 256 + 2, size // 256 + 2)).astype(np.float32)
    rows = np.linspace(0, coarse.shape[0] - 1.001, size)
    cols = np.linspace(0, coarse.shape[1] - 1.001, size)
    r0, c0 = rows.astype(int), cols.astype(int)
    smooth = coarse[r0][:, c0]
    noise = rng.normal(0, (high - low) * 0.05, size=(size, size)).astype(np.float32)
    band = np.clip(smooth + noise, 1, 65535).astype(np.uint16)
    band[: size // 20, :] = 0  # a strip of nodata, as at a swath edge
    return band


def make_catalog(size: int) -> Path:
    root = HERE / ".data" / f"load_{size}"
    catalog_path = root / "catalog.json"
    if catalog_path.exists():
        return catalog_path
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(2024)
    catalog = pystac.Catalog("bench", "benchmark scenes")
    for i in range(SCENES):
        item_dir = root / f"scene{i}"
        item_dir.mkdir(parents=True)
        assets = {}
        for key, common, (low, high) in (("B04", "red", (200, 3000)), ("B08", "nir", (1500, 6000))):
            path = item_dir / f"{key}.tif"
            profile = {
                "driver": "GTiff",
                "width": size,
                "height": size,
                "count": 1,
                "dtype": "uint16",
                "crs": "EPSG:32631",
                "nodata": 0,
                "transform": rasterio.transform.from_origin(600000, 5800020, 10, 10),
                "tiled": True,
                "blockxsize": 512,
                "blockysize": 512,
                "compress": "deflate",
                "predictor": 2,
            }
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(_band(rng, size, low, high), 1)
                dst.build_overviews([2, 4, 8, 16], Resampling.average)
            assets[key] = {"href": str(path), "common_name": common, "scale": 0.0001, "nodata": 0}
        item = lazyraster.testing.raster_item(
            f"scene{i}", dt.datetime(2023, 5, 1 + 5 * i, 10, 30), assets, collection="bench"
        )
        catalog.add_item(item)
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return catalog_path


def setup(size: int) -> list[Case]:
    catalog_path = make_catalog(size)
    items = list(pystac.read_file(str(catalog_path)).get_items(recursive=True))
    out = HERE / ".data" / "out"
    out.mkdir(parents=True, exist_ok=True)

    def fresh(name: str) -> Path:
        path = out / name
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            path.unlink()
        return path

    def script() -> None:
        for item in items:
            red_href = item.assets["B04"].get_absolute_href()
            nir_href = item.assets["B08"].get_absolute_href()
            with rasterio.open(red_href) as r, rasterio.open(nir_href) as n:
                red = r.read(1).astype(np.float32) / 10000
                nir = n.read(1).astype(np.float32) / 10000
                profile = r.profile
            red[red == 0] = np.nan
            nir[nir == 0] = np.nan
            with np.errstate(invalid="ignore", divide="ignore"):
                ndvi = (nir - red) / (nir + red)
            profile.update(dtype="float32", nodata=np.nan, predictor=1)
            with rasterio.open(fresh(f"script_{item.id}.tif"), "w", **profile) as dst:
                dst.write(ndvi, 1)

    def plain_stackstac() -> None:
        hrefs_absolute = [i.clone() for i in items]
        for item in hrefs_absolute:
            item.make_asset_hrefs_absolute()
        # pystac drops proj:epsg on read, so a plain stackstac user must name the CRS
        data = stackstac.stack(hrefs_absolute, assets=["B04", "B08"], chunksize=CHUNK, epsg=32631)
        red, nir = data.sel(band="B04"), data.sel(band="B08")
        ndvi = ((nir - red) / (nir + red)).rename("ndvi")
        ndvi.attrs = {}  # stackstac's "spec" attribute cannot be stored in Zarr
        ndvi.to_dataset().drop_vars(
            [c for c in ndvi.coords if c not in ("time", "x", "y")]
        ).to_zarr(fresh("plain.zarr"), mode="w", consolidated=False)

    def ours() -> None:
        ds = lazyraster.load(catalog_path, bands=["red", "nir"], chunks=CHUNK)
        lazyraster.write_zarr(ds.geo.ndvi().to_dataset(), fresh("ours.zarr"), mode="w")

    def io_floor() -> None:
        store = zarr.open_array(
            fresh("floor.zarr"),
            mode="w",
            shape=(SCENES, size, size),
            dtype="float32",
            chunks=(1, CHUNK, CHUNK),
        )
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
            for t, item in enumerate(items):
                with rasterio.open(item.assets["B04"].get_absolute_href()) as r:
                    red = r.read(1)
                with rasterio.open(item.assets["B08"].get_absolute_href()) as n:
                    n.read(1)
                store[t] = red.astype(np.float32)  # an output-sized float32 array

    cores = len(os.sched_getaffinity(0))
    dask.config.set(scheduler="threads", num_workers=cores)
    return [
        Case("per-file script", script, baseline=True),
        Case("plain stackstac", plain_stackstac),
        Case("lazyraster", ours),
        Case("I/O floor", io_floor),
    ]
