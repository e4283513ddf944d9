"""A write computed with ``compute=False`` keeps no data alive once its caller drops it.

The writes' registry (what :func:`~lazyraster.io.discard_temporaries` removes) records
paths and task keys, never a graph: a write computed but never discarded must not keep
its task graph, nor the numpy data captured in it, alive. Measured by ``tracemalloc``
on numpy's own allocation domain (array buffers only, none of Python's objects).
"""

from __future__ import annotations

import gc
import tracemalloc

import dask
import numpy as np
import pytest
import xarray as xr

from lazyraster.io import commit_together, write_geotiff, write_zarr
from lazyraster.testing import synthetic_raster

MiB = 1 << 20


def _numpy_bytes() -> int:
    """Bytes of numpy buffers allocated since tracing started and still alive."""
    domain = tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)
    return sum(t.size for t in tracemalloc.take_snapshot().filter_traces([domain]).traces)


def _write(kind: str, da: xr.DataArray, folder, name: str) -> dask.delayed.Delayed:
    if kind == "zarr":
        return write_zarr(da.chunk({"y": 256}), folder / f"{name}.zarr", compute=False)
    per = "step" if kind == "per-step geotiff" else None
    return write_geotiff(da, folder / f"{name}.tif", per=per, compute=False)


@pytest.fixture
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


@pytest.mark.parametrize(
    ("kind", "together"),
    [("zarr", False), ("geotiff", True), ("per-step geotiff", False), ("per-step geotiff", True)],
)
def test_a_computed_write_never_discarded_keeps_no_data_once_dropped(
    tmp_path, traced, kind, together
):
    gc.collect()
    before = _numpy_bytes()
    template = synthetic_raster((1024, 1024), chunks=None)
    steps = xr.concat([template, template + 1], dim="step").assign_coords(step=[1, 2])
    da = steps.isel(step=0) if kind == "geotiff" else steps  # numpy-backed, 4 or 8 MiB
    size = da.nbytes
    del template, steps
    write = _write(kind, da, tmp_path, "m")
    del da
    dask.compute(*(commit_together(write) if together else [write]), scheduler="threads")
    gc.collect()
    assert _numpy_bytes() - before >= size  # the caller still holds the write: it can fail
    del write
    gc.collect()
    held = _numpy_bytes() - before
    assert held < size / 4, f"{held / MiB:.1f} MiB still held by a dropped write"
