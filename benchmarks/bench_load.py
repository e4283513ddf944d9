"""Load + NDVI + write Zarr: lazyraster against its peers configured as their docs say.

The job: three dates of ``size`` x ``size`` Sentinel-2-like scenes, a red and a nir
band each, stored as uint16 tiled deflate COGs with overviews (reflectance x 10000,
nodata 0) in a static STAC catalog (made once, deterministically, under
``$LAZYRASTER_BENCH_DATA``, default ``benchmarks/.data/``; 10980 makes ~1.4 GB, so point
it at /tmp). Every case computes the float32 NDVI (NaN where a band is nodata) in
1024 x 1024 chunks with 2 threads and writes it to a Zarr v3 store (one array
``ndvi``, (time, y, x), chunks (1, 1024, 1024)) with Zarr's default compression, the
same codecs for everyone (checked). After the timed rounds every output is compared
with the naive script's NDVI on windows across the nodata edge and the far corner.

- ``lazyraster``: ``lazyraster.load`` + ``ds.geo.ndvi()`` + ``lazyraster.write_zarr``.
- ``stackstac``: ``stackstac.stack(dtype="uint16", rescale=False, fill_value=0,
  chunksize=1024)`` as its docs recommend for integer data, NDVI in float32 with xarray,
  ``to_zarr``.
- ``odc-stac``: ``odc.stac.load(chunks={"x": 1024, "y": 1024}, dtype="uint16")``, the
  same arithmetic, ``to_zarr``.
- ``rioxarray``: ``open_rasterio(lock=False, chunks=...)`` per file, concatenated along
  time, the same arithmetic, ``to_zarr``.
- ``naive per-file script``: what a first script does: rasterio reads each whole band,
  numpy computes NDVI, zarr writes it; one thread.
- floors, 2 threads over the same chunks, each thread with its own datasets:
  ``decode only`` (read both bands of every chunk), ``decode + write`` (read, a fused
  one-pass NDVI, write with the same codecs: the job with nothing else), and ``memory
  copy`` (copy the output's bytes once).

The peers compute ``(nir - red) / (nir + red)`` on float32 DNs (the scale cancels), one
multiply fewer than lazyraster's reflectances; the values agree to float32 rounding.
Needs the ``bench`` extra (odc-stac).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import itertools
import os
import shutil
import statistics
import threading
import warnings
from pathlib import Path

import dask
import numba
import numpy as np
import odc.stac
import pystac
import rasterio
import rioxarray
import stackstac
import xarray as xr
import zarr
from rasterio.enums import Resampling
from rasterio.windows import Window

import lazyraster
import lazyraster.testing
from harness import Case

DEFAULT_SIZE = 10980
SCENES = 3
CHUNK = 1024
THREADS = 2
HERE = Path(__file__).resolve().parent
#: where the input scenes and outputs go (10980 makes ~1.4 GB: point it at /tmp)
DATA = Path(os.environ.get("LAZYRASTER_BENCH_DATA", HERE / ".data"))
BANDS = ("B04", "B08")  # red, nir


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
    root = DATA / f"load_{size}"
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


@numba.njit(nogil=True, cache=True)
def _fused_ndvi(red, nir, out):  # pragma: no cover
    """NDVI of two uint16 DN blocks in one pass (the floor's arithmetic)."""
    for i in range(red.shape[0]):
        for j in range(red.shape[1]):
            r, n = red[i, j], nir[i, j]
            if r == 0 or n == 0:
                out[i, j] = np.nan
            else:
                fr, fn = np.float32(r), np.float32(n)
                out[i, j] = (fn - fr) / (fn + fr)
    return out


def _ndvi_of_dns(red: xr.DataArray, nir: xr.DataArray) -> xr.DataArray:
    """NDVI from uint16 DNs in float32, NaN where either is nodata: what a peer's user writes."""
    r, n = red.astype("float32"), nir.astype("float32")
    return ((n - r) / (n + r)).where((red != 0) & (nir != 0)).rename("ndvi")


def _to_zarr(ndvi: xr.DataArray, path: Path) -> None:
    """Write ``ndvi`` (time, y, x) as the peers do: ``to_zarr``, Zarr v3, default codecs."""
    keep = {"time", "y", "x"}
    ndvi = ndvi.drop_vars([c for c in ndvi.coords if c not in keep]).transpose("time", "y", "x")
    ndvi.attrs = {}  # stackstac's "spec" and odc's attributes are not JSON
    ndvi.to_dataset().to_zarr(path, mode="w", zarr_format=3, consolidated=False)


def _windows(size: int) -> list[tuple[int, int, Window]]:
    """(time, chunk index, window) of every output chunk."""
    offsets = range(0, size, CHUNK)
    return [
        (t, k, Window(x, y, min(CHUNK, size - x), min(CHUNK, size - y)))
        for t in range(SCENES)
        for k, (y, x) in enumerate(itertools.product(offsets, offsets))
    ]


class _ThreadFiles(threading.local):
    """Each thread's own open datasets (GDAL datasets are not thread-safe)."""

    def __init__(self) -> None:
        self.open: dict[str, rasterio.io.DatasetReader] = {}

    def read(self, href: str, window: Window) -> np.ndarray:
        ds = self.open.get(href)
        if ds is None:
            ds = self.open[href] = rasterio.open(href, sharing=False)
        return ds.read(1, window=window)

    def close(self) -> None:
        for ds in self.open.values():
            ds.close()
        self.open.clear()


def _empty_store(path: Path, size: int) -> zarr.Array:
    """The output array as xarray would make it: (time, y, x) float32, default codecs."""
    return zarr.create_array(
        zarr.storage.LocalStore(path),
        name="ndvi",
        shape=(SCENES, size, size),
        chunks=(1, CHUNK, CHUNK),
        dtype="float32",
        fill_value=np.nan,
        zarr_format=3,
        overwrite=True,
    )


def setup(size: int) -> list[Case]:
    catalog_path = make_catalog(size)
    items = sorted(
        pystac.read_file(str(catalog_path)).get_items(recursive=True), key=lambda i: i.datetime
    )
    for item in items:
        item.make_asset_hrefs_absolute()
    hrefs = [[item.assets[b].get_absolute_href() for b in BANDS] for item in items]
    with rasterio.open(hrefs[0][0]) as first:
        bounds = tuple(first.bounds)
    out = DATA / "out"
    out.mkdir(parents=True, exist_ok=True)

    def fresh(name: str) -> Path:
        path = out / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def ours() -> None:
        ds = lazyraster.load(catalog_path, bands=["red", "nir"], chunks=CHUNK)
        lazyraster.write_zarr(ds.geo.ndvi(), fresh("lazyraster.zarr"), mode="w")

    def with_stackstac() -> None:
        # pystac drops proj:epsg on read, so a stackstac user names the CRS, and the
        # tile's bounds (else stackstac's own, from the footprint, add a row and a column)
        data = stackstac.stack(
            items,
            assets=list(BANDS),
            epsg=32631,
            resolution=10,
            bounds=bounds,
            chunksize=CHUNK,
            dtype="uint16",
            rescale=False,
            fill_value=np.uint16(0),  # numpy 2 refuses to cast a Python 0 (stackstac's check)
        )
        ndvi = _ndvi_of_dns(data.sel(band="B04"), data.sel(band="B08"))
        _to_zarr(ndvi, fresh("stackstac.zarr"))

    def with_odc() -> None:
        data = odc.stac.load(
            items, bands=list(BANDS), chunks={"x": CHUNK, "y": CHUNK}, dtype="uint16"
        )
        _to_zarr(_ndvi_of_dns(data["B04"], data["B08"]), fresh("odc-stac.zarr"))

    def with_rioxarray() -> None:
        chunks = {"band": 1, "y": CHUNK, "x": CHUNK}
        bands = [
            xr.concat(
                [rioxarray.open_rasterio(h[b], lock=False, chunks=chunks) for h in hrefs],
                dim=xr.DataArray(
                    [np.datetime64(i.datetime.replace(tzinfo=None), "ns") for i in items],
                    dims="time",
                    name="time",
                ),
            ).squeeze("band", drop=True)
            for b in range(len(BANDS))
        ]
        _to_zarr(_ndvi_of_dns(*bands), fresh("rioxarray.zarr"))

    def naive() -> None:
        store = _empty_store(fresh("naive.zarr"), size)
        for t, (red_href, nir_href) in enumerate(hrefs):
            with rasterio.open(red_href) as r, rasterio.open(nir_href) as n:
                red = r.read(1).astype(np.float32) / 10000
                nir = n.read(1).astype(np.float32) / 10000
            red[red == 0] = np.nan
            nir[nir == 0] = np.nan
            with np.errstate(invalid="ignore", divide="ignore"):
                store[t] = (nir - red) / (nir + red)

    def chunked(work) -> None:
        files = _ThreadFiles()
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            for _ in pool.map(lambda job: work(files, *job), _windows(size)):
                pass

    def decode_only() -> None:
        chunked(lambda files, t, k, w: [files.read(h, w) for h in hrefs[t]])

    def decode_write() -> None:
        store = _empty_store(fresh("floor.zarr"), size)

        def work(files: _ThreadFiles, t: int, k: int, w: Window) -> None:
            red, nir = (files.read(h, w) for h in hrefs[t])
            ndvi = _fused_ndvi(red, nir, np.empty(red.shape, np.float32))
            store[t, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = ndvi

        chunked(work)

    copy_from = np.ones((16, CHUNK, CHUNK), np.float32)
    copy_to = np.empty_like(copy_from)

    def memory_copy() -> None:
        for _ in range(0, SCENES * size * size, copy_from.size):
            np.copyto(copy_to, copy_from)

    dask.config.set(scheduler="threads", num_workers=THREADS)
    # the peers' 0 / 0 in nodata pixels, masked right after
    warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
    return [
        Case("lazyraster", ours, baseline=True),
        Case("stackstac (uint16, rescale=False, fill_value=0)", with_stackstac),
        Case("odc-stac (chunks, dtype=uint16)", with_odc),
        Case("rioxarray (lock=False, chunks)", with_rioxarray),
        Case("naive per-file script (rasterio + numpy, 1 thread)", naive),
        Case("floor: decode only", decode_only),
        Case("floor: decode + write, same codecs", decode_write),
        Case("floor: memory copy of the output", memory_copy),
    ]


OUTPUTS = {  # case name prefix -> its output store
    "lazyraster": "lazyraster.zarr",
    "stackstac": "stackstac.zarr",
    "odc-stac": "odc-stac.zarr",
    "rioxarray": "rioxarray.zarr",
    "floor: decode + write": "floor.zarr",
}


def check_outputs() -> str:
    """Compare every output with the naive script's NDVI on a few windows; say how close.

    Windows: across the nodata strip's edge and the far corner of each date. Raises if
    a NaN mask differs, a value differs by more than float32 rounding, or an output's
    codecs are not the reference's.
    """
    out = DATA / "out"

    def array(name: str) -> zarr.Array:
        return zarr.open_array(zarr.storage.LocalStore(out / name, read_only=True), path="ndvi")

    reference = array("naive.zarr")
    size = reference.shape[-1]
    edge = size // 20
    rows = [slice(max(edge - 40, 0), edge + 200), slice(size - 300, size)]
    cols = [slice(0, 300), slice(size - 300, size)]
    codecs = (reference.serializer, reference.compressors, reference.filters)
    worst: dict[str, float] = {}
    for case, store in OUTPUTS.items():
        got = array(store)
        if got.shape != reference.shape:
            raise AssertionError(f"{case}: shape {got.shape}, expected {reference.shape}")
        if (got.serializer, got.compressors, got.filters) != codecs:
            raise AssertionError(f"{case}: codecs {got.compressors}, expected {codecs[1]}")
        diff = 0.0
        for t, r, c in itertools.product(range(SCENES), rows, cols):
            a, b = got[t, r, c], reference[t, r, c]
            if not np.array_equal(np.isnan(a), np.isnan(b)):
                raise AssertionError(f"{case}: NaN mask differs from the naive script's")
            diff = max(diff, float(np.nanmax(np.abs(a - b), initial=0)))
        if diff > 1e-6:
            raise AssertionError(f"{case}: NDVI differs by {diff:.2e} from the naive script's")
        worst[case] = diff
    text = ", ".join(f"{case} {diff:.1e}" for case, diff in worst.items())
    return (
        f"Outputs checked against the naive script's NDVI (same NaN mask; largest difference: "
        f"{text}); codecs {[type(c).__name__ for c in codecs[1]]} for all."
    )


def _row(case: Case, ours: float) -> str:
    median, peak = statistics.median(case.times), max(case.peaks) / 2**20
    spread = f"{min(case.times):.2f}-{max(case.times):.2f}"
    return f"| {case.name} | {median:.2f} | {spread} | {median / ours:.2f}x | {peak:.0f} |"


def table(cases: list[Case]) -> str:
    """Median, range, time relative to lazyraster and peak memory of each case."""
    ours = statistics.median(next(c for c in cases if c.baseline).times)
    head = (
        "| case | median s | range s | time / lazyraster | peak MiB |\n| --- " + "| ---: " * 4 + "|"
    )
    body = "\n".join(_row(c, ours) for c in cases)
    return f"{head}\n{body}\n\n{check_outputs()}"
