"""The writers' ``compute=False`` contract: checks at once, all outputs or none when
computed together (``commit_together``), nothing left behind (``discard_temporaries``)."""

from __future__ import annotations

import os
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import pytest
import rasterio
import xarray as xr

from lazyraster.errors import OutputExistsError
from lazyraster.io import commit_together, discard_temporaries, write_geotiff, write_zarr
from lazyraster.testing import raise_if_dask_computes, synthetic_raster


def _failing(block: np.ndarray, block_id: tuple[int, ...] | None = None) -> np.ndarray:
    if block_id == (1, 1):
        raise RuntimeError("a task fails")
    return block


def _raster(fail: bool) -> xr.DataArray:
    """A 2 x 2 chunk raster; with ``fail``, computing its last chunk raises."""
    da = synthetic_raster((64, 64), chunks={"y": 32, "x": 32}).rename("data")
    if not fail:
        return da
    meta = np.array((), da.dtype)
    return da.copy(data=da.data.map_blocks(_failing, dtype=da.dtype, meta=meta))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_delayed_writes_refuse_an_existing_output_before_computing(tmp_path):
    write_geotiff(_raster(False), tmp_path / "a.tif", blocksize=128)
    with raise_if_dask_computes(), pytest.raises(OutputExistsError, match=r"a\.tif"):
        write_geotiff(_raster(True), tmp_path / "a.tif", blocksize=128, compute=False)
    assert _hidden(tmp_path) == []


def test_discard_after_a_failed_delayed_compute_keeps_the_outputs_being_replaced(tmp_path):
    write_zarr(_raster(False), tmp_path / "a.zarr")
    write_geotiff(_raster(False), tmp_path / "a.tif", blocksize=128)
    before = _files(tmp_path)
    writes = [
        write_zarr(_raster(True) * 2, tmp_path / "a.zarr", mode="w", compute=False),
        write_geotiff(
            _raster(True) * 2, tmp_path / "a.tif", mode="w", blocksize=128, compute=False
        ),
    ]
    assert _hidden(tmp_path)  # the temporaries, held until discarded
    try:
        with pytest.raises(RuntimeError, match="a task fails"):
            dask.compute(*commit_together(*writes), scheduler="threads")
    finally:
        discard_temporaries(*writes)
    assert _hidden(tmp_path) == []
    assert _files(tmp_path) == before


def test_commit_together_of_a_per_step_geotiff_writes_no_file_when_a_step_fails(tmp_path):
    steps = xr.concat([_raster(False), _raster(True)], dim="step").assign_coords(step=[1, 2])
    write = write_geotiff(steps, tmp_path / "s.tif", per="step", blocksize=128, compute=False)
    try:
        with pytest.raises(RuntimeError, match="a task fails"):
            dask.compute(*commit_together(write), scheduler="threads")
    finally:
        discard_temporaries(write)
    assert sorted(os.listdir(tmp_path)) == []


def _held_temporaries(folder: Path) -> list[str]:
    """Files under a writer's temporary in ``folder`` that this process holds open (its locks).

    Only ``folder``'s: other tests of the session may hold temporaries of their own.
    """
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if ".tmp-" in target and target.startswith(f"{folder}{os.sep}"):
            held.append(target)
    return held


def test_discard_after_a_delayed_compute_in_worker_processes_releases_the_locks(tmp_path):
    da = _raster(False)
    writes = [
        write_zarr(da, tmp_path / "p.zarr", compute=False),
        write_geotiff(da, tmp_path / "p.tif", blocksize=128, compute=False),
    ]
    assert _held_temporaries(tmp_path)
    out = dask.compute(*commit_together(*writes), scheduler="processes", num_workers=2)
    assert out == (str(tmp_path / "p.zarr"), str(tmp_path / "p.tif"))
    discard_temporaries(*writes)
    assert _held_temporaries(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["p.tif", "p.zarr"]
    with rasterio.open(tmp_path / "p.tif") as src:
        np.testing.assert_array_equal(src.read(1), da.values)
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "p.zarr")[da.name].values, da.values)
    assert isinstance(da.data, dsa.Array)


@pytest.mark.parametrize("compute", [True, False])
def test_a_zarr_write_refusing_its_chunks_leaves_no_temporary(tmp_path, compute):
    with pytest.raises(ValueError, match="chunks names dimensions"):
        write_zarr(_raster(False), tmp_path / "out" / "a.zarr", chunks={"z": 8}, compute=compute)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("compute", [True, False])
def test_an_interrupt_while_a_geotiff_graph_is_built_leaves_no_temporary(
    tmp_path, monkeypatch, compute
):
    """Ctrl-C while ``write_geotiff`` builds its task graph (long for many chunks)."""
    da = _raster(False).expand_dims(time=2).assign_coords(time=[2020, 2021])

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(dsa.Array, "to_delayed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_geotiff(da, tmp_path / "out" / "a.tif", per="time", blocksize=128, compute=compute)
    assert list(tmp_path.iterdir()) == []


def test_an_output_appearing_during_the_compute_commits_no_other_output(tmp_path):
    zarr, tif = tmp_path / "a.zarr", tmp_path / "a.tif"
    writes = [
        write_zarr(_raster(False), zarr, compute=False),
        write_geotiff(_raster(False), tif, blocksize=128, compute=False),
    ]
    write_zarr(_raster(False), zarr)  # another run commits a.zarr meanwhile
    try:
        with pytest.raises(OutputExistsError, match=r"a\.zarr"):
            dask.compute(*commit_together(*writes), scheduler="sync")
    finally:
        discard_temporaries(*writes)
    assert not tif.exists()
