"""A GeoTIFF write of persisted data under ``cluster("processes")`` imports nothing heavy.

Under dask's ``processes`` scheduler the client never runs a task before the write, so
whatever the write imports it pays during the write: ``distributed`` (imported by dask
to resolve the scheduler name ``"threads"`` and to choose a rechunk method) and numba
(the TIFF predictors; numba's first call in a process). Neither is needed to compress
tiles. Each check runs in a fresh Python process; the file written is compared with
the data through rasterio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from lazyraster.testing import synthetic_raster

_CHILD = """
import json, sys
import numpy as np
import lazyraster
from lazyraster.testing import synthetic_raster

path, dtype, blocksize, overviews = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
da = synthetic_raster((300, 200), dtype="float32", chunks={"y": 64, "x": 64}, nan_fraction=0.1)
if dtype != "float32":
    da = (da * 1000).fillna(0).astype(dtype).rio.write_nodata(0)
with lazyraster.cluster("processes", workers=1):
    da = da.persist()
    before = set(sys.modules)
    lazyraster.write_geotiff(da, path, blocksize=blocksize, overviews=overviews == "yes")
    after = set(sys.modules)
print(json.dumps({"before": sorted(before), "new": sorted(after - before)}))
"""


def _write_in_child(path: Path, dtype: str, blocksize: int, overviews: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [str(path), dtype, str(blocksize), "yes" if overviews else ""]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_a_persisted_geotiff_write_under_processes_imports_neither_distributed_nor_numba(
    tmp_path, dtype
):
    path = tmp_path / "out.tif"
    modules = _write_in_child(path, dtype, blocksize=128, overviews=False)
    assert "numba" not in modules["before"] and "distributed" not in modules["before"]
    assert "distributed" not in modules["new"]
    assert "numba" not in modules["new"]
    expected = synthetic_raster((300, 200), dtype="float32", nan_fraction=0.1).values
    with rasterio.open(path) as src:
        got = src.read(1)
        if dtype == "float32":
            np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
            np.testing.assert_array_equal(got[~np.isnan(got)], expected[~np.isnan(expected)])
        else:
            want = np.nan_to_num(expected * 1000, nan=0).astype(dtype)
            np.testing.assert_array_equal(got, want)
        assert src.block_shapes == [(128, 128)]


def test_overviews_of_a_persisted_write_under_processes_still_load_numba_and_are_right(tmp_path):
    path = tmp_path / "out.tif"
    modules = _write_in_child(path, "float32", blocksize=128, overviews=True)
    assert "distributed" not in modules["new"]
    assert "numba" in modules["new"]  # the overviews' average is a numba kernel
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2, 4]
        full = src.read(1)
        half = src.read(1, out_shape=(150, 100))
    windows = full.reshape(150, 2, 100, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows: NaN
        np.testing.assert_allclose(half, np.nanmean(windows, axis=(1, 3)), rtol=1e-6)
