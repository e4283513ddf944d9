"""The raster reader behind ``load``, checked window by window against plain rasterio.

:class:`lazyraster.load._reader.Reader` meets stackstac's public ``Reader`` protocol.
Expected pixels come from rasterio reads of the same files and windows made here
(``reference``), masked and scaled with numpy; the last tests compare whole
``stackstac.stack`` loads against stackstac's own reader.
"""

from __future__ import annotations

import ctypes
import gc
import inspect
import os
import pickle
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import stackstac
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from stackstac.raster_spec import RasterSpec
from stackstac.reader_protocol import Reader as ReaderProtocol
from tests.conftest import ROOT

from lazyraster.config import gdal_options
from lazyraster.errors import ReadError
from lazyraster.load._reader import Reader, source_url
from lazyraster.testing import write_safe

WEST, NORTH, PIXEL = 600000.0, 5700000.0, 10.0
HEIGHT, WIDTH = 300, 260
UTM = 32631


def write(path: Path, data: np.ndarray, *, nodata: float | None = 0, **options) -> Path:
    """A uint16 tiled deflate COG (256-pixel blocks) of ``data`` on the test grid."""
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype.name,
        crs=f"EPSG:{UTM}",
        transform=from_origin(WEST, NORTH, PIXEL, PIXEL),
        nodata=nodata,
        compress="deflate",
        blocksize=256,
        **options,
    ) as dst:
        dst.write(data, 1)
    return path


def grid(left: int = 0, top: int = 0, rows: int = HEIGHT, cols: int = WIDTH) -> RasterSpec:
    """The test grid widened by ``left`` columns and ``top`` rows (pixels), then cut."""
    x0, y0 = WEST - left * PIXEL, NORTH + top * PIXEL
    return RasterSpec(UTM, (x0, y0 - rows * PIXEL, x0 + cols * PIXEL, y0), (PIXEL, PIXEL))


def reader(url: str, spec: RasterSpec | None = None, **options) -> Reader:
    kwargs = {
        "spec": spec or grid(),
        "resampling": Resampling.nearest,
        "dtype": np.dtype("float32"),
        "fill_value": np.nan,
        "scale_offset": (1, 0),
        "gdal_env": None,
    }
    return Reader(url=str(url), **{**kwargs, **options})


def reference(path, window: Window, *, nodata=None, scale=1.0, offset=0.0, dtype="float32"):
    """rasterio's read of ``window``, * scale + offset in ``dtype``, NaN where DN == nodata."""
    with rasterio.open(path) as src:
        dn = src.read(1, window=window)
    kind = np.dtype(dtype).type
    out = dn.astype(dtype) * kind(scale) + kind(offset)
    if nodata is not None:
        out[dn == nodata] = np.nan
    return out


@pytest.fixture(scope="module")
def dn() -> np.ndarray:
    data = np.random.default_rng(16).integers(1, 10000, (HEIGHT, WIDTH), dtype=np.uint16)
    data[:40, :70] = 0  # the no-data corner of a tile edge
    data[150:160, 200:230] = 0
    return data


@pytest.fixture(scope="module")
def cog(tmp_path_factory, dn) -> Path:
    return write(tmp_path_factory.mktemp("cog") / "B04.tif", dn)


WINDOWS = [
    Window(0, 0, WIDTH, HEIGHT),
    Window(0, 0, 100, 50),  # in the nodata corner and out of it
    Window(250, 290, 10, 10),  # the last pixels
    Window(190, 140, 70, 30),  # across a block edge (256) and the nodata strip
    Window(3, 7, 1, 1),
]


def fds(path: Path) -> int:
    """Open file descriptors of this process on ``path``."""
    folder = Path("/proc/self/fd")
    return sum(os.path.realpath(folder / fd) == os.path.realpath(path) for fd in os.listdir(folder))


# --------------------------------------------------------------------------- the protocol


def test_the_reader_is_a_class_of_its_own_with_stackstacs_protocol():
    """No stackstac class underneath; the constructor takes the protocol's keywords.

    Its one keyword more (``stamp``, the file's version) is optional.
    """
    assert Reader.__mro__ == (Reader, object)
    ours = inspect.signature(Reader.__init__).parameters
    theirs = inspect.signature(ReaderProtocol.__init__).parameters
    assert list(ours) == [*theirs, "stamp"]
    assert ours["stamp"].default is None
    assert all(ours[name].kind is inspect.Parameter.KEYWORD_ONLY for name in list(ours)[1:])
    for method in ("read", "close", "__getstate__", "__setstate__"):
        assert method in vars(Reader)


def test_nothing_is_opened_before_the_first_read(tmp_path, dn):
    path = write(tmp_path / "b.tif", dn)
    r = reader(source_url(str(path), band=1, nodata=0))
    assert fds(path) == 0
    r.read(Window(0, 0, 8, 8))
    assert fds(path) == 1


# --------------------------------------------------------------------------- pixels


@pytest.mark.parametrize("window", WINDOWS, ids=str)
def test_uint16_deflate_cog_with_nodata_reads_as_rasterio(cog, window):
    r = reader(source_url(str(cog), band=1, nodata=None), scale_offset=(0.0001, -0.1))
    got = r.read(window)
    assert got.dtype == np.float32 and got.shape == (window.height, window.width)
    expected = reference(cog, window, nodata=0, scale=0.0001, offset=-0.1)
    np.testing.assert_array_equal(got, expected)


def test_catalog_nodata_comes_before_the_files_tag(cog, dn):
    value = int(dn[100, 100])
    r = reader(source_url(str(cog), band=1, nodata=value))
    got = r.read(WINDOWS[0])
    np.testing.assert_array_equal(got, reference(cog, WINDOWS[0], nodata=value))
    assert np.isnan(got[100, 100]) and (got[:40, :70] == 0).all()  # the tag's 0 is data now


@pytest.mark.parametrize("dtype,fill", [("uint16", 65535), ("float64", -1.0), ("int32", -9)])
def test_output_dtype_and_fill_value(cog, dn, dtype, fill):
    kind = np.dtype(dtype).type
    r = reader(str(cog), dtype=np.dtype(dtype), fill_value=kind(fill), scale_offset=(2, 1))
    got = r.read(WINDOWS[0])
    assert got.dtype == np.dtype(dtype)
    with rasterio.open(cog) as src:
        expected = src.read(1).astype(dtype) * kind(2) + kind(1)
    expected[dn == 0] = fill
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("nodata", [0, None], ids=["nodata tag", "no tag (alpha band)"])
def test_a_window_partly_outside_the_file_is_fill_there(tmp_path, dn, nodata):
    """The output grid starts 30 columns left of and 20 rows above the file (a warped VRT)."""
    path = write(tmp_path / "b.tif", dn, nodata=nodata)
    spec = grid(left=30, top=20, rows=HEIGHT + 40, cols=WIDTH + 60)
    r = reader(source_url(str(path), band=1, nodata=None), spec=spec, fill_value=np.float32(-5))
    got = r.read(Window(10, 5, 120, 60))  # file columns -20..100, rows -15..45
    expected = np.full((60, 120), -5, np.float32)
    inside = reference(path, Window(0, 0, 100, 45), nodata=nodata)
    expected[15:, 20:] = np.where(np.isnan(inside), -5, inside)
    np.testing.assert_array_equal(got, expected)
    assert (got[15:55, 20:90] == (-5 if nodata == 0 else 0)).all()  # the DN-0 corner


@pytest.mark.parametrize(
    "window", [Window(200, 250, 100, 60), Window(-10, 0, 20, 20)], ids=["past the end", "before"]
)
def test_a_window_beyond_the_grid_is_an_error_not_a_partly_written_array(cog, window):
    """GDAL reads only the part of such a window inside the grid: the reader refuses it
    rather than return an array part of which holds whatever the memory held."""
    with pytest.raises(ReadError, match="pixels read for a window of"):
        reader(cog).read(window)


@pytest.fixture(scope="module")
def safe(tmp_path_factory) -> Path:
    """A Sentinel-2-like SAFE with real JPEG2000 band files (no nodata tag, as ESA's)."""
    return write_safe(tmp_path_factory.mktemp("safe"), size_10m=240, seed=5)


def jp2(safe: Path, band: str, res: int) -> Path:
    return next(safe.glob(f"GRANULE/*/IMG_DATA/R{res}m/*_{band}_{res}m.jp2"))


def test_a_sentinel2_jp2_reads_as_rasterio_with_the_catalogs_nodata(safe):
    path = jp2(safe, "B04", 10)
    with rasterio.open(path) as src:
        assert src.driver == "JP2OpenJPEG" and src.nodata is None
        value = int(src.read(1)[0, 0])  # the catalog's nodata: a DN that the file holds
        spec = RasterSpec(UTM, tuple(src.bounds), (10, 10))
    r = reader(source_url(str(path), band=1, nodata=value), spec=spec, scale_offset=(1e-4, -0.1))
    for window in (Window(0, 0, 240, 240), Window(100, 37, 64, 90)):
        expected = reference(path, window, nodata=value, scale=1e-4, offset=-0.1)
        np.testing.assert_array_equal(r.read(window), expected)


def test_a_20m_jp2_on_the_10m_grid_repeats_each_pixel(safe):
    """Warped onto 10 m pixels with nearest resampling: each 20 m pixel becomes 2 x 2."""
    path = jp2(safe, "B05", 20)
    with rasterio.open(path) as src:
        spec = RasterSpec(UTM, tuple(src.bounds), (10, 10))
        native = src.read(1).astype(np.float32)
    got = reader(str(path), spec=spec).read(Window(0, 0, 240, 240))
    np.testing.assert_array_equal(got, np.repeat(np.repeat(native, 2, axis=0), 2, axis=1))


# --------------------------------------------------------------------------- over HTTP


def test_a_remote_cog_reads_with_range_requests_and_the_gdal_env(nginx, tmp_path):
    """Over nginx: the same pixels as the local file, fetched by ranges (a small part of
    the file for a window in one block); the options of ``gdal_env`` reach GDAL
    (GDAL_INGESTED_BYTES_AT_OPEN makes the first range longer than GDAL's default)."""
    data = np.random.default_rng(3).integers(0, 10000, (1024, 1024), dtype=np.uint16)
    path = write(tmp_path / "big.tif", data)
    spec = grid(rows=1024, cols=1024)
    window = Window(300, 520, 150, 100)  # inside the block at (256, 512)
    expected = reference(path, window, nodata=0)
    first = {}
    for name, options in (("default", {}), ("ingest", {"GDAL_INGESTED_BYTES_AT_OPEN": 100000})):
        url = nginx.publish(path, f"{name}.tif")
        env = stackstac.DEFAULT_GDAL_ENV.updated(always=options)
        r = reader(source_url(url, band=1, nodata=None), spec=spec, gdal_env=env)
        np.testing.assert_array_equal(r.read(window), expected)
        gets = [e for e in nginx.requests() if e.uri.endswith(f"/{name}.tif") and e.method == "GET"]
        assert gets and all(e.status == 206 and e.range for e in gets), gets
        first[name] = int(gets[0].range.rpartition("-")[2]) + 1
        if name == "default":
            assert sum(e.bytes for e in gets) < path.stat().st_size / 4
            with ThreadPoolExecutor(4) as pool:  # each thread opens the URL again
                windows = _windows(16, 1024, 1024)
                for w, array in zip(windows, pool.map(r.read, windows), strict=True):
                    np.testing.assert_array_equal(array, reference(path, w, nodata=0))
    assert first["default"] < 100000 <= first["ingest"], first


def test_errors_as_nodata_as_stackstac_means_it(nginx):
    """A 404 that matches a pattern is warned about and read as fill (stackstac's default
    reader does the same); without the pattern it is a ReadError naming the URL."""
    url = nginx.url_for("gone.tif")
    pattern = (RasterioIOError("HTTP response code: 404"),)
    window = Window(0, 0, 5, 4)
    with pytest.raises(ReadError, match=rf"cannot open {url}: .*404"):
        reader(url).read(window)
    ours = reader(url, errors_as_nodata=pattern, fill_value=np.float32(-1))
    with pytest.warns(UserWarning, match=r"cannot open .*gone\.tif.*404"):
        got = ours.read(window)
    np.testing.assert_array_equal(got, np.full((4, 5), -1, np.float32))
    kwargs = {"spec": grid(), "resampling": Resampling.nearest, "scale_offset": (1, 0)}
    theirs = stackstac.rio_reader.AutoParallelRioReader(
        url=url, dtype=np.dtype("float32"), fill_value=-1, errors_as_nodata=pattern, **kwargs
    )
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(theirs.read(window), got)
    before = len(nginx.requests())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.read(window)
    assert len(nginx.requests()) == before  # the failed open is not retried


# --------------------------------------------------------------------------- workers


def test_a_pickled_reader_reads_in_another_process(tmp_path, cog):
    """Pickled after it has opened the file (as dask sends it to a worker)."""
    spec = grid(left=5, top=5, rows=HEIGHT, cols=WIDTH)
    r = reader(source_url(str(cog), band=1, nodata=0), spec=spec, scale_offset=(0.5, 2))
    window = Window(0, 0, 120, 80)
    here = r.read(window)
    (tmp_path / "reader.pkl").write_bytes(pickle.dumps(r))
    code = (
        "import pickle, sys, numpy as np\nfrom rasterio.windows import Window\n"
        "r = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "np.save(sys.argv[2], r.read(Window(0, 0, 120, 80)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = tmp_path / "there.npy"
    subprocess.run([sys.executable, "-c", code, tmp_path / "reader.pkl", out], check=True, env=env)
    there = np.load(out)
    expected = np.full((80, 120), np.nan, np.float32)
    expected[5:, 5:] = reference(cog, Window(0, 0, 115, 75), nodata=0, scale=0.5, offset=2)
    np.testing.assert_array_equal(there, expected)
    np.testing.assert_array_equal(here, expected)


def _windows(n: int, width: int, height: int) -> list[Window]:
    """``n`` random windows inside a ``width`` x ``height`` grid."""
    rng = np.random.default_rng(n)
    out = []
    for _ in range(n):
        col, row = int(rng.integers(0, width)), int(rng.integers(0, height))
        cols, rows = int(rng.integers(1, width - col + 1)), int(rng.integers(1, height - row + 1))
        out.append(Window(col, row, cols, rows))
    return out


def test_bands_of_one_file_read_at_once_decode_their_window_once(tmp_path, monkeypatch):
    """Four band readers of a 4-band file ask for one window at the same moment: one
    GDAL read serves them all (the others wait for it), and each band is rasterio's."""
    from lazyraster.load import _handles

    data = np.random.default_rng(3).integers(1, 255, (4, HEIGHT, WIDTH), dtype=np.uint8)
    path = tmp_path / "four.tif"
    profile = {"driver": "GTiff", "count": 4, "dtype": "uint8", "crs": f"EPSG:{UTM}"}
    transform = from_origin(WEST, NORTH, PIXEL, PIXEL)
    with rasterio.open(path, "w", width=WIDTH, height=HEIGHT, transform=transform, **profile) as f:
        f.write(data)
    reads, real_read = [], _handles.Handles.read

    def slow_read(self, window, indexes):
        reads.append(tuple(indexes))
        time.sleep(0.3)  # the other bands arrive while this read is under way
        return real_read(self, window, indexes)

    monkeypatch.setattr(_handles.Handles, "read", slow_read)
    group = [1, 2, 3, 4]
    readers = [reader(source_url(str(path), band=b, nodata=None, group=group)) for b in group]
    window, start = Window(10, 20, 64, 32), threading.Barrier(4)

    def job(r: Reader) -> np.ndarray:
        start.wait()
        return r.read(window)

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(job, readers))
    assert reads == [tuple(group)]
    with rasterio.open(path) as src:
        for band, out in zip(group, got, strict=True):
            np.testing.assert_array_equal(out, src.read(band, window=window).astype("float32"))


@pytest.mark.parametrize("kind", ["COG", "JP2"])
def test_eight_threads_share_one_reader(cog, safe, kind):
    """Eight threads at once, each reading windows of its own: each window is rasterio's.

    A GTiff and a JPEG2000 each get a dataset per thread (eight file descriptors), so
    the threads decode at once. ``close`` closes them all, while the threads still live.
    """
    path = cog if kind == "COG" else jp2(safe, "B04", 10)
    with rasterio.open(path) as src:
        spec = RasterSpec(UTM, tuple(src.bounds), (10, 10))
        width, height = src.width, src.height
    r = reader(source_url(str(path), band=1, nodata=0), spec=spec)
    windows = _windows(8 * 6, width, height)
    started, done = threading.Barrier(8), threading.Event()
    read = threading.Barrier(9)

    def job(part: list[Window]) -> list[np.ndarray]:
        started.wait()
        out = [r.read(w) for w in part]
        read.wait()
        done.wait()
        return out

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(job, windows[i::8]) for i in range(8)]
        read.wait(timeout=120)
        open_files = fds(path)
        r.close()
        gc.collect()
        after_close = fds(path)
        done.set()
        results = [f.result() for f in futures]
    assert open_files == 8
    assert after_close == 0
    for i, got in enumerate(results):
        for window, array in zip(windows[i::8], got, strict=True):
            np.testing.assert_array_equal(array, reference(path, window, nodata=0))


# --------------------------------------------------------------------------- in stackstac


def _item(item_id: str, href: Path, day: int) -> dict:
    with rasterio.open(href) as src:
        bbox = list(transform_bounds(src.crs, "EPSG:4326", *src.bounds))
        fields = {
            "proj:epsg": UTM,
            "proj:transform": list(src.transform)[:6],
            "proj:shape": [src.height, src.width],
        }
    asset = {"href": str(href), "type": "image/tiff; application=geotiff", **fields}
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "geometry": None,
        "bbox": bbox,
        "properties": {"datetime": f"2023-05-{day:02d}T10:30:00Z"},
        "links": [],
        "assets": {"B04": asset},
        "stac_extensions": [],
    }


@pytest.mark.parametrize(
    "dtype,fill",
    [("float64", np.nan), ("float32", np.float32(np.nan)), ("uint16", np.uint16(0))],
)
@pytest.mark.parametrize(
    "target",
    [
        {"resolution": 10},  # the files' own grid: no warp
        {"resolution": 15},  # resampled
        {"epsg": 32632, "resolution": 20},  # reprojected
    ],
    ids=["native", "resampled", "reprojected"],
)
def test_stackstac_loads_alike_with_our_reader_and_its_own(tmp_path, dn, dtype, fill, target):
    """Two items, one with a nodata tag and one without, covering different extents."""
    tagged = write(tmp_path / "tagged.tif", dn)
    bare = write(tmp_path / "bare.tif", dn[:200, :150], nodata=None)
    items = [_item("tagged", tagged, 1), _item("bare", bare, 2)]
    options = {
        "assets": ["B04"],
        "epsg": UTM,
        "chunksize": 128,
        "dtype": np.dtype(dtype),
        "fill_value": fill,
        "rescale": False,
        "resampling": Resampling.nearest,
        **target,
    }
    if target.get("epsg", UTM) == UTM:  # else the union of the items' bbox
        options["bounds"] = (WEST, NORTH - HEIGHT * PIXEL, WEST + WIDTH * PIXEL, NORTH)
    theirs = stackstac.stack(items, **options).values
    ours = stackstac.stack(items, reader=Reader, **options).values
    assert ours.dtype == theirs.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(ours, theirs)
    valid = ~np.isnan(ours) if np.dtype(dtype).kind == "f" else ours != 0
    assert valid[0].mean() > 0.5 and valid[1].any()


def test_a_read_error_is_nodata_only_when_it_matches(tmp_path):
    """A file cut short opens but fails to read: a ReadError, or fill with the pattern."""
    data = np.random.default_rng(4).integers(0, 10000, (512, 512), dtype=np.uint16)
    path = write(tmp_path / "cut.tif", data)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 3 // 4])
    spec, window = grid(rows=512, cols=512), Window(256, 256, 256, 256)
    with pytest.raises(ReadError, match=r"cannot read .*cut\.tif: "):
        reader(str(path), spec=spec).read(window)
    pattern = (RasterioIOError(".*"),)
    with pytest.warns(UserWarning, match=r"cannot read .*cut\.tif"):
        got = reader(str(path), spec=spec, errors_as_nodata=pattern).read(window)
    np.testing.assert_array_equal(got, np.full((256, 256), np.nan, np.float32))


def _gdal_cache_max() -> int:
    """GDAL's block cache size now, in bytes, from the libgdal rasterio loaded."""
    with open("/proc/self/maps") as maps:
        path = next(line.split()[-1] for line in maps if "libgdal" in line.split()[-1])
    lib = ctypes.CDLL(path)
    lib.GDALGetCacheMax64.restype = ctypes.c_int64
    return lib.GDALGetCacheMax64()


@pytest.mark.parametrize(
    "setting,expected",
    [(None, 256 * 2**20), (512, 512 * 2**20), ("1GB", 2**30), (300_000_000, 300_000_000)],
)
def test_reads_run_with_a_block_cache_of_the_configured_megabytes(setting, expected):
    """GDAL reads GDAL_CACHEMAX=256 as megabytes, rasterio's Env hands it on as bytes: the
    reads of a load ran with a block cache of 256 bytes, and a JPEG2000 level read
    decoded its tiles again for every block (4x the time of a read with the cache)."""
    overrides = {} if setting is None else {"lazyraster.gdal.GDAL_CACHEMAX": setting}
    with dask.config.set(overrides), stackstac.LayeredEnv(always=gdal_options()).read:
        assert _gdal_cache_max() == expected
