"""write_zarr: round trips, chunks, groups, appends and regions, remote stores, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr
from dask.delayed import Delayed
from tests.io._support import (
    assert_georef,
    failing,
    hidden_leftovers,
    only_temporaries,
    snapshot,
    time_series,
    tree,
)

import lazyraster
from lazyraster import OutputExistsError, write_zarr
from lazyraster.errors import LazyrasterError
from lazyraster.testing import raise_if_dask_computes

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_zarr_round_trip_values_crs_attrs(tmp_path, backend, raster, zarr_format):
    data = backend(raster)
    out = write_zarr(data, tmp_path / "out.zarr", zarr_format=zarr_format, inputs=["a.tif"])
    back = xr.open_zarr(out)
    assert set(back.data_vars) == {"ndvi"}  # spatial_ref comes back as a coordinate
    assert back.ndvi.dtype == np.float32
    np.testing.assert_array_equal(back.ndvi.values, raster.values)  # NaN in the same places
    assert_georef(back, raster)
    assert_georef(back.ndvi, raster)
    assert back.ndvi.attrs["long_name"] == "NDVI"
    assert back.attrs["lazyraster_version"] == lazyraster.__version__
    assert back.attrs["lazyraster_inputs"] == ["a.tif"]
    assert f'"zarr_format": {zarr_format}' in back.attrs["lazyraster_parameters"]
    if backend.name == "dask":  # uneven dask chunks are evened out to their largest size
        assert back.ndvi.encoding["chunks"] == tuple(max(c) for c in data.chunks)
    assert hidden_leftovers(tmp_path) == []


def test_zarr_chunks_follow_dask_chunks_or_request(tmp_path, raster):
    write_zarr(raster.chunk({"y": 16, "x": 28}), tmp_path / "a.zarr")
    assert xr.open_zarr(tmp_path / "a.zarr").ndvi.encoding["chunks"] == (16, 28)
    write_zarr(raster.chunk({"y": 16, "x": 28}), tmp_path / "b.zarr", chunks={"y": 8})
    assert xr.open_zarr(tmp_path / "b.zarr").ndvi.encoding["chunks"] == (8, 28)
    write_zarr(raster, tmp_path / "c.zarr", chunks={"x": 20})  # numpy: chunked as asked
    assert xr.open_zarr(tmp_path / "c.zarr").ndvi.encoding["chunks"] == (40, 20)
    with pytest.raises(ValueError, match="dimensions"):
        write_zarr(raster, tmp_path / "d.zarr", chunks={"time": 1})


def test_zarr_v2_opens_georeferenced_in_gdal(tmp_path, raster):
    write_zarr(raster.chunk({"y": 20, "x": 28}), tmp_path / "v2.zarr", zarr_format=2)
    with rasterio.open(f'ZARR:"{tmp_path / "v2.zarr"}":/ndvi') as src:
        assert src.crs == raster.rio.crs
        assert src.transform == raster.rio.transform()
        np.testing.assert_array_equal(src.read(1), raster.values)


def test_zarr_refuses_existing_and_changes_nothing(tmp_path, raster):
    target = tmp_path / "out.zarr"
    write_zarr(raster, target)
    before = snapshot(target)
    with pytest.raises(OutputExistsError, match=r"mode='w'.*--overwrite") as err:
        write_zarr(raster * 2, target)
    assert isinstance(err.value, LazyrasterError | FileExistsError)
    assert snapshot(target) == before
    assert hidden_leftovers(tmp_path) == []


def test_zarr_overwrite_keeps_old_until_new_is_complete(tmp_path, raster):
    target = tmp_path / "out.zarr"
    write_zarr(raster, target)
    before = snapshot(target)
    with pytest.raises(RuntimeError, match="midway"):
        write_zarr(failing(raster.chunk({"x": 14})), target, mode="w")
    assert snapshot(target) == before
    assert only_temporaries(tmp_path, "out.zarr") and target.exists()
    write_zarr(raster + 1, target, mode="w")
    np.testing.assert_array_equal(xr.open_zarr(target).ndvi.values, raster.values + 1)
    assert hidden_leftovers(tmp_path) == []


def test_zarr_failed_first_write_leaves_nothing(tmp_path, raster):
    with pytest.raises(RuntimeError, match="midway"):
        write_zarr(failing(raster.chunk({"x": 14})), tmp_path / "out.zarr")
    assert only_temporaries(tmp_path, "out.zarr")
    assert not (tmp_path / "out.zarr").exists()


def test_zarr_compute_false_is_lazy_and_moves_on_compute(tmp_path, raster):
    target = tmp_path / "out.zarr"
    with raise_if_dask_computes():
        delayed = write_zarr(raster.chunk({"x": 14}), target, compute=False)
    assert isinstance(delayed, Delayed)
    assert not target.exists()
    assert delayed.compute() == str(target)
    np.testing.assert_array_equal(xr.open_zarr(target).ndvi.values, raster.values)


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_zarr_one_group_per_year(tmp_path, raster, zarr_format):
    store = tmp_path / "spring.zarr"
    write_zarr(raster, store, group="2020", zarr_format=zarr_format)
    first = snapshot(store / "2020")
    write_zarr(raster + 1, store, group="2021", zarr_format=zarr_format)
    write_zarr(raster + 2, store, group="tiles/2022", zarr_format=zarr_format)
    assert snapshot(store / "2020") == first
    with pytest.raises(OutputExistsError, match="2021"):
        write_zarr(raster, store, group="2021", zarr_format=zarr_format)
    write_zarr(raster + 3, store, group="2020", zarr_format=zarr_format, mode="w")
    for year, offset in (("2020", 3), ("2021", 1), ("tiles/2022", 2)):
        back = xr.open_zarr(store, group=year)
        np.testing.assert_array_equal(back.ndvi.values, raster.values + offset)
        assert_georef(back, raster)
    assert hidden_leftovers(store) == []


@pytest.mark.parametrize("group", ["2020/..", "../other.zarr", "a//b", "./2020"])
def test_a_zarr_group_must_be_names_inside_the_store(tmp_path, raster, group):
    """``group="2020/.."`` named the store itself: mode="w" replaced every group."""
    store = tmp_path / "store.zarr"
    write_zarr(raster, store, group="2020")
    write_zarr(raster, store, group="2021")
    before = tree(store)
    with pytest.raises(ValueError, match="must be names separated by '/'"):
        write_zarr(raster + 1, store, group=group, mode="w")
    assert tree(store) == before


def test_zarr_append_along_time(tmp_path, raster):
    first, second = time_series(raster, 3, "2021-01-01"), time_series(raster, 2, "2021-01-04") + 10
    target = tmp_path / "series.zarr"
    write_zarr(first.chunk({"time": 2}), target, append_dim="time")
    write_zarr(second.chunk({"time": 1}), target, append_dim="time")
    back = xr.open_zarr(target)
    expected = xr.concat([first, second], dim="time")
    np.testing.assert_array_equal(back.ndvi.values, expected.values)
    np.testing.assert_array_equal(back.time.values, expected.time.values)
    assert_georef(back, raster)


def test_zarr_region_writes_resume(tmp_path, raster):
    series = time_series(raster, 4, "2021-01-01").chunk({"time": 1})
    target = tmp_path / "series.zarr"
    write_zarr(series, target, metadata_only=True)
    assert np.isnan(xr.open_zarr(target).ndvi.values).all()  # template only, no data
    write_zarr(series.isel(time=slice(0, 2)), target, region={"time": slice(0, 2)})
    # "crash", then resume with the remaining region, found by its index values
    write_zarr(series.isel(time=slice(2, 4)), target, region="auto")
    back = xr.open_zarr(target)
    np.testing.assert_array_equal(back.ndvi.values, series.values)
    assert_georef(back, raster)
    with pytest.raises(FileNotFoundError, match="metadata_only=True"):
        write_zarr(series, tmp_path / "none.zarr", region="auto")


def test_zarr_fsspec_memory_store(raster):
    url = "memory://test-write/remote.zarr"
    write_zarr(raster.chunk({"x": 28}), url)
    back = xr.open_zarr(url)
    np.testing.assert_array_equal(back.ndvi.values, raster.values)
    assert_georef(back, raster)
    with pytest.raises(OutputExistsError):
        write_zarr(raster, url)
    write_zarr(raster + 1, url, mode="w")
    np.testing.assert_array_equal(xr.open_zarr(url).ndvi.values, raster.values + 1)
    fs = __import__("fsspec").filesystem("memory")
    assert [p for p in fs.ls("/test-write", detail=False) if ".tmp-" in p or ".old-" in p] == []


def test_zarr_rejects_bad_mode(tmp_path, raster):
    with pytest.raises(ValueError, match="append_dim"):
        write_zarr(raster, tmp_path / "x.zarr", mode="a")


def test_fixed_width_string_coordinates_round_trip_without_unstable_dtype(tmp_path):
    import warnings

    ds = xr.Dataset(
        {"v": (("time", "x"), np.arange(4.0).reshape(2, 2))},
        coords={"time": [0, 1], "id": ("time", np.array(["scene_a", "scene_bb"]))},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lazyraster.write_zarr(ds, tmp_path / "s.zarr")
    back = xr.open_zarr(tmp_path / "s.zarr")
    assert back.id.values.tolist() == ["scene_a", "scene_bb"]
