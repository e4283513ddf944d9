"""JPEG2000 load + NDVI: lazyraster against the seed's Pool(2) script and a decode floor.

The job: one Sentinel-2-like scene, red and nir, ``size`` x ``size`` uint16 lossless
JPEG2000 at 10 m (``QUALITY=100, REVERSIBLE=YES``, GDAL's JP2OpenJPEG driver, no
nodata tag: nodata 0 is in the catalog, as ESA's files), made once under
``$LAZYRASTER_BENCH_DATA`` (default ``benchmarks/.data/``). Every case computes the
float32 NDVI (NaN where a band is nodata) into memory.

- ``seed Pool(2)`` (the baseline): the seed's approach, a ``multiprocessing.Pool(2)``
  in which each process reads one whole band with rasterio, then numpy NDVI. Its peak
  memory counts this process only (the two bands it receives and the NDVI), not the
  pool's processes, which hold a band each while they decode.
- ``lazyraster``: ``load(chunks=1024)`` + ``geo.ndvi()``, 2 dask threads, each with
  its own dataset of each JP2; ``... one JP2 dataset behind a lock`` is the same with
  JPEG2000 taken out of the per-thread drivers (as before), ``... GDAL_NUM_THREADS=2``
  with OpenJPEG's own decode threads (lazyraster's default is 1 per read).
- ``20 m average``: the same load at ``resolution=20, resampling="average"``: with
  nodata 0 in the catalog, decoding every 10 m pixel (a resolution level would blend
  the nodata into the valid pixels beside it), and with no nodata in the catalog (every
  pixel valid), decoding the JP2's 20 m resolution level.
- ``decode floor``: 2 threads, each decoding one whole band with rasterio, no NDVI.

Before timing, lazyraster's 10 m NDVI is checked against the seed's.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import multiprocessing
import os
from pathlib import Path
from unittest import mock

import dask
import numpy as np
import rasterio

import lazyraster
import lazyraster.testing
from harness import Case

DEFAULT_SIZE = 2048
CHUNK = 1024
THREADS = 2
HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("LAZYRASTER_BENCH_DATA", HERE / ".data"))


def _band(rng: np.random.Generator, size: int, low: int, high: int) -> np.ndarray:
    """A smooth field with texture and a nodata strip, as a real band."""
    rows, cols = np.mgrid[:size, :size].astype(np.float32) / size
    smooth = low + (high - low) * (0.5 + 0.5 * np.sin(7 * rows) * np.cos(5 * cols))
    noise = rng.normal(0, (high - low) * 0.05, (size, size)).astype(np.float32)
    band = np.clip(smooth + noise, 1, 65535).astype(np.uint16)
    band[: size // 20, :] = 0
    return band


def make_scene(size: int) -> dict[str, Path]:
    root = DATA / f"jp2_{size}"
    paths = {"red": root / "B04.jp2", "nir": root / "B08.jp2"}
    if all(p.exists() for p in paths.values()):
        return paths
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(18)
    for path, (low, high) in zip(paths.values(), ((200, 3000), (1500, 6000)), strict=True):
        partial = path.with_suffix(".part.jp2")
        with rasterio.open(
            partial,
            "w",
            driver="JP2OpenJPEG",
            width=size,
            height=size,
            count=1,
            dtype="uint16",
            crs="EPSG:32631",
            transform=rasterio.transform.from_origin(600000, 5800020, 10, 10),
            QUALITY=100,
            REVERSIBLE="YES",
            RESOLUTIONS=6,
        ) as dst:
            dst.write(_band(rng, size, low, high), 1)
        partial.rename(path)
    return paths


def _read_band(path: str) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    r = red.astype(np.float32) / 10000
    n = nir.astype(np.float32) / 10000
    r[red == 0] = np.nan
    n[nir == 0] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        return (n - r) / (n + r)


def setup(size: int) -> list[Case]:
    paths = make_scene(size)
    assets = {
        "B04": {"href": str(paths["red"]), "common_name": "red", "scale": 0.0001, "nodata": 0},
        "B08": {"href": str(paths["nir"]), "common_name": "nir", "scale": 0.0001, "nodata": 0},
    }
    items = [lazyraster.testing.raster_item("s", dt.datetime(2023, 5, 1), assets)]
    # the same scene with no nodata in its catalog: every pixel valid, so the levels apply
    valid = {band: {k: v for k, v in a.items() if k != "nodata"} for band, a in assets.items()}
    valid_items = [lazyraster.testing.raster_item("s", dt.datetime(2023, 5, 1), valid)]

    def seed() -> np.ndarray:
        with multiprocessing.Pool(2) as pool:
            red, nir = pool.map(_read_band, [str(paths["red"]), str(paths["nir"])])
        return _ndvi(red, nir)

    def ours(scene: list = items, **options) -> np.ndarray:
        ds = lazyraster.load(scene, bands=["red", "nir"], chunks=CHUNK, **options)
        with dask.config.set(scheduler="threads", num_workers=THREADS):
            return ds.geo.ndvi().values

    def locked() -> np.ndarray:
        with mock.patch("lazyraster.load._handles.PER_THREAD_DRIVERS", frozenset()):
            return ours()

    def floor() -> None:
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(_read_band, [str(paths["red"]), str(paths["nir"])]))

    # float32 rounding: an NDVI near 0 from close reflectances differs in relative terms
    # by more than its absolute error, two float32 steps at 1 (a 10980 scene has such pixels)
    np.testing.assert_allclose(ours()[0], seed(), rtol=2e-6, atol=2.4e-7, equal_nan=True)

    return [
        Case("seed Pool(2): rasterio reads + numpy NDVI", seed, baseline=True),
        Case("lazyraster load + ndvi, 10 m", ours),
        Case("lazyraster, one JP2 dataset behind a lock (before)", locked),
        Case(
            "lazyraster, GDAL_NUM_THREADS=2",
            lambda: ours(gdal={"GDAL_NUM_THREADS": 2}),
        ),
        Case(
            "lazyraster 20 m average, nodata 0 (every pixel)",
            lambda: ours(resolution=20, resampling="average"),
        ),
        Case(
            "lazyraster 20 m average, no nodata (resolution level)",
            lambda: ours(valid_items, resolution=20, resampling="average"),
        ),
        Case("decode floor: 2 threads, a band each", floor),
    ]
