"""Both writers: every block in place whatever the chunks, SIGKILL, every scheduler, leftovers."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr
from hypothesis import HealthCheck, given, settings
from rio_cogeo.cogeo import cog_validate
from tests.io._support import (
    assert_georef,
    block_mean,
    hidden_leftovers,
    only_temporaries,
    snapshot,
)
from tests.strategies import chunked_stack

import lazyraster
from lazyraster import write_geotiff, write_zarr
from lazyraster.testing import synthetic_raster

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
SRC = Path(lazyraster.__file__).resolve().parent.parent


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(da=chunked_stack())
def test_geotiff_and_zarr_put_every_block_in_place(da):
    """Whatever the chunking, every block lands where it belongs, in both formats."""
    with tempfile.TemporaryDirectory() as tmp:
        tif = write_geotiff(da, os.path.join(tmp, "a.tif"), blocksize=128)
        with rasterio.open(tif) as src:
            assert src.dtypes[0] == np.dtype(da.dtype).name
            np.testing.assert_array_equal(src.read(), da.values)
            assert src.transform == da.rio.transform()
        back = xr.open_zarr(write_zarr(da, os.path.join(tmp, "a.zarr")))
        assert back.value.dtype == da.dtype
        np.testing.assert_array_equal(back.value.values, da.values)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from lazyraster import write_geotiff, write_zarr
    from lazyraster.testing import synthetic_raster

    kind, target = sys.argv[1], sys.argv[2]
    da = synthetic_raster((64, 64)).chunk({"x": 8})

    def slow(block):
        time.sleep(0.5)
        return block + 1

    da = da.copy(data=da.data.map_blocks(slow, dtype=da.dtype))
    with __import__("dask").config.set(scheduler="synchronous"):
        if kind == "zarr":
            write_zarr(da, target, mode="w")
        else:
            write_geotiff(da, target, mode="w", blocksize=128)
    """
)


@pytest.mark.parametrize("kind", ["zarr", "cog"])
def test_write_killed_with_sigkill_leaves_previous_output(tmp_path, raster, kind):
    target = tmp_path / ("out.zarr" if kind == "zarr" else "out.tif")
    if kind == "zarr":
        write_zarr(raster, target)
    else:
        write_geotiff(raster, target, blocksize=128)
    before = snapshot(target)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, kind, str(target)], env=env)
    deadline = time.monotonic() + 60
    while not any(".tmp-" in p.name for p in tmp_path.iterdir()):  # the write has started
        assert proc.poll() is None, "the writer finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.6)  # a block or two is written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert snapshot(target) == before
    assert only_temporaries(tmp_path, target.name)


@pytest.fixture(scope="module")
def process_pool():
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        yield pool


@pytest.fixture(scope="module")
def local_cluster():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(params=["threads", "processes", "distributed"])
def scheduler(request):
    if request.param == "threads":
        return {"scheduler": "threads"}
    if request.param == "processes":
        return {"scheduler": "processes", "pool": request.getfixturevalue("process_pool")}
    return {"scheduler": request.getfixturevalue("local_cluster")}


def test_round_trips_under_every_scheduler(tmp_path, scheduler):
    da = synthetic_raster((200, 300), nan_fraction=0.05, name="ndvi")
    lazy = da.chunk({"y": (50, 150), "x": (100, 100, 100)}) * 2
    expected = da.values * 2
    with dask.config.set(**scheduler):
        zarr_out = write_zarr(lazy, tmp_path / "out.zarr")
        cog_out = write_geotiff(lazy, tmp_path / "out.tif", blocksize=128)
        delayed = write_geotiff(lazy, tmp_path / "later.tif", blocksize=128, compute=False)
        later = delayed.compute()
    back = xr.open_zarr(zarr_out)
    np.testing.assert_array_equal(back.ndvi.values, expected)
    assert_georef(back, da)
    for path in (cog_out, later):
        assert cog_validate(path) == (True, [], [])
        with rasterio.open(path) as src:
            np.testing.assert_array_equal(src.read(1), expected)
            assert src.crs == da.rio.crs and src.transform == da.rio.transform()
            ov = src.read(1, out_shape=(100, 150))
        np.testing.assert_allclose(ov, block_mean(expected, 2), rtol=1e-6)
    assert hidden_leftovers(tmp_path) == []


def test_a_successful_write_removes_temporaries_of_earlier_failed_writes(tmp_path, raster):
    stale = tmp_path / ".out.zarr.tmp-straggler" / "ndvi" / "c"
    stale.mkdir(parents=True)  # as a block written after a failed write cleaned up
    (stale / "0").write_bytes(b"late block")
    kept = tmp_path / ".out.zarr.old-killed"  # a previous output set aside: never removed
    kept.mkdir()
    other = tmp_path / ".other.zarr.tmp-x"  # another output's temporary: not ours
    other.mkdir()
    write_zarr(raster, tmp_path / "out.zarr")
    assert hidden_leftovers(tmp_path) == [".other.zarr.tmp-x", ".out.zarr.old-killed"]
    tif = tmp_path / ".out.tif.tmp-straggler"
    tif.mkdir()
    write_geotiff(raster, tmp_path / "out.tif")
    assert not tif.exists()
