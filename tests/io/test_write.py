"""Zarr and GeoTIFF/COG writers: round trips, COG structure, safety, every scheduler."""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr
from dask.delayed import Delayed
from hypothesis import HealthCheck, given, settings
from rio_cogeo.cogeo import cog_validate
from tests.strategies import chunked_stack

import lazyraster
from lazyraster import OutputExistsError, write_geotiff, write_zarr
from lazyraster.errors import LazyrasterError, MissingCRSError
from lazyraster.testing import raise_if_dask_computes, synthetic_raster

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
SRC = Path(lazyraster.__file__).resolve().parent.parent


# ------------------------------------------------------------------ helpers


def snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file under ``path`` (or of the file itself)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def hidden_leftovers(folder: Path) -> list[str]:
    """Temporary or set-aside outputs (``.<name>.tmp-<id>``, ``.<name>.old-<id>``)."""
    names = (p.name for p in folder.iterdir() if p.name.startswith("."))
    return sorted(n for n in names if ".tmp-" in n or ".old-" in n)


def only_temporaries(folder: Path, name: str) -> bool:
    """True if ``folder`` holds nothing but output ``name`` and its hidden temporaries.

    After a task fails, tasks already running on other threads may still write a
    block into the temporary folder after the writer removed it.
    """
    return all(p.name == name or p.name.startswith(f".{name}.tmp-") for p in folder.iterdir())


def failing(da: xr.DataArray, bad_block: int = 1) -> xr.DataArray:
    """Same as ``da`` but the dask task of one block raises, after the others ran."""

    def boom(block, block_info=None):
        if block_info[0]["chunk-location"][-1] == bad_block:
            raise RuntimeError("task failed midway")
        return block

    return da.copy(data=da.data.map_blocks(boom, dtype=da.dtype))


def block_mean(values: np.ndarray, factor: int, nodata: float | None = None) -> np.ndarray:
    """Average of ``factor`` x ``factor`` windows ignoring NaN and nodata, by an explicit loop.

    The windows of the last row and column may be partial (``ceil(size / factor)`` a
    side, as GDAL's overviews): they average the pixels that are there.
    """
    ny, nx = -(-values.shape[0] // factor), -(-values.shape[1] // factor)
    out = np.full((ny, nx), np.nan)
    for i in range(ny):
        for j in range(nx):
            cell = values[i * factor : (i + 1) * factor, j * factor : (j + 1) * factor]
            cell = cell[~np.isnan(cell) & (cell != nodata)]
            if cell.size:
                out[i, j] = cell.astype(np.float64).sum() / cell.size
    return out


def assert_georef(back: xr.DataArray | xr.Dataset, ref: xr.DataArray) -> None:
    assert back.rio.crs == ref.rio.crs
    assert back.rio.transform() == ref.rio.transform(recalc=True)


@pytest.fixture
def raster() -> xr.DataArray:
    da = synthetic_raster((40, 56), nan_fraction=0.1, name="ndvi")
    return da.assign_attrs(units="1", long_name="NDVI")


# ------------------------------------------------------------------ Zarr


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


def _series(raster: xr.DataArray, n: int, start: str) -> xr.DataArray:
    times = xr.date_range(start, periods=n, freq="D")
    stack = xr.concat([raster + i for i in range(n)], dim=xr.Variable("time", times))
    return stack.transpose("time", "y", "x")


def test_zarr_append_along_time(tmp_path, raster):
    first, second = _series(raster, 3, "2021-01-01"), _series(raster, 2, "2021-01-04") + 10
    target = tmp_path / "series.zarr"
    write_zarr(first.chunk({"time": 2}), target, append_dim="time")
    write_zarr(second.chunk({"time": 1}), target, append_dim="time")
    back = xr.open_zarr(target)
    expected = xr.concat([first, second], dim="time")
    np.testing.assert_array_equal(back.ndvi.values, expected.values)
    np.testing.assert_array_equal(back.time.values, expected.time.values)
    assert_georef(back, raster)


def test_zarr_region_writes_resume(tmp_path, raster):
    series = _series(raster, 4, "2021-01-01").chunk({"time": 1})
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


# ------------------------------------------------------------------ GeoTIFF / COG


@pytest.mark.parametrize(
    ("dtype", "nodata"), [(np.float32, None), (np.uint16, 0), (np.int16, -9999)]
)
def test_cog_round_trip_values_dtype_nodata_crs(tmp_path, backend, dtype, nodata):
    base = synthetic_raster((300, 270), nan_fraction=0.05 if nodata is None else 0.0)
    if nodata is None:
        da = base
    else:
        values = (base.values * 1000).astype(dtype)
        values[:5, :7] = nodata
        da = base.copy(data=values).rio.write_nodata(nodata)
    path = tmp_path / "out.tif"
    assert write_geotiff(backend(da), path, blocksize=128) == str(path)
    assert cog_validate(path) == (True, [], [])
    with rasterio.open(path) as src:
        assert src.dtypes[0] == np.dtype(dtype).name
        assert src.crs == da.rio.crs
        assert src.transform == da.rio.transform()
        assert src.block_shapes == [(128, 128)]
        assert src.compression.value == "DEFLATE"
        if nodata is None:
            assert np.isnan(src.nodata)
        else:
            assert src.nodata == nodata
        np.testing.assert_array_equal(src.read(1), da.values)
        assert src.tags()["lazyraster_version"] == lazyraster.__version__
    back = rioxarray.open_rasterio(path).squeeze("band", drop=True)
    assert_georef(back, da)
    assert hidden_leftovers(tmp_path) == []


def test_cog_overviews_are_block_averages_not_zeros(tmp_path):
    clean = synthetic_raster((512, 512), seed=3).chunk({"y": 200, "x": 150})
    holes = synthetic_raster((512, 512), seed=4, nan_fraction=0.3).chunk({"y": 300})
    for name, da in (("clean", clean), ("holes", holes)):
        write_geotiff(da, tmp_path / f"{name}.tif", blocksize=128)
    values = clean.values
    with rasterio.open(tmp_path / "clean.tif") as src:
        assert src.overviews(1) == [2, 4]
        for factor in (2, 4):
            size = 512 // factor
            ov = src.read(1, out_shape=(size, size))
            np.testing.assert_allclose(ov, block_mean(values, factor), rtol=1e-6)
            assert ov.std() > 0.01  # real data, not a constant fill
    with rasterio.open(tmp_path / "holes.tif") as src:  # NaN (nodata) is left out
        ov = src.read(1, out_shape=(256, 256))
        np.testing.assert_allclose(ov, block_mean(holes.values, 2), rtol=1e-6)


def test_cog_options_overviews_and_plain_tiff(tmp_path):
    da = synthetic_raster((512, 512)).chunk({"y": 200})
    write_geotiff(da, tmp_path / "none.tif", overviews=False, blocksize=128)
    write_geotiff(da, tmp_path / "one.tif", overviews=1, blocksize=128, compress="zstd")
    write_geotiff(da, tmp_path / "plain.tif", cog=False, blocksize=128, predictor=1)
    with rasterio.open(tmp_path / "none.tif") as src:
        assert src.overviews(1) == []
    with rasterio.open(tmp_path / "one.tif") as src:
        assert src.overviews(1) == [2]
        assert src.compression.value == "ZSTD"
    with rasterio.open(tmp_path / "plain.tif") as src:
        assert src.is_tiled and src.block_shapes == [(128, 128)]
        assert src.overviews(1) == [2, 4]
        np.testing.assert_allclose(
            src.read(1, out_shape=(128, 128)), block_mean(da.values, 4), rtol=1e-6
        )
    with pytest.raises(ValueError, match="at least 128"):
        write_geotiff(da, tmp_path / "small.tif", blocksize=64)
        np.testing.assert_array_equal(src.read(1), da.values)


def test_cog_dataset_variables_become_bands(tmp_path):
    red = synthetic_raster((64, 80), seed=1)
    nir = synthetic_raster((64, 80), seed=2)
    ds = xr.Dataset({"red": red, "nir": nir}).chunk({"x": 30})
    path = tmp_path / "bands.tif"
    ds.geo.to_geotiff(path, blocksize=128)
    with rasterio.open(path) as src:
        assert src.count == 2
        assert src.descriptions == ("red", "nir")
        np.testing.assert_array_equal(src.read(1), red.values)
        np.testing.assert_array_equal(src.read(2), nir.values)
    assert cog_validate(path)[0]


def test_cog_one_file_per_time_step(tmp_path, raster):
    series = _series(raster, 3, "2021-05-01").chunk({"time": 2, "x": 30})
    paths = write_geotiff(series, tmp_path / "ndvi.tif", per="time", blocksize=128)
    assert [Path(p).name for p in paths] == [
        "ndvi_2021-05-01.tif",
        "ndvi_2021-05-02.tif",
        "ndvi_2021-05-03.tif",
    ]
    for i, p in enumerate(paths):
        with rasterio.open(p) as src:
            np.testing.assert_array_equal(src.read(1), raster.values + i)
            assert src.transform == raster.rio.transform()
    pattern = write_geotiff(series, tmp_path / "{}" / "ndvi.tif", per="time", blocksize=128)
    assert Path(pattern[0]).relative_to(tmp_path).parts == ("2021-05-01", "ndvi.tif")
    write_geotiff(series, tmp_path / "bands.tif", blocksize=128)  # without per: bands
    with rasterio.open(tmp_path / "bands.tif") as src:
        assert src.count == 3
        np.testing.assert_array_equal(src.read(3), raster.values + 2)
    before = snapshot(tmp_path / "ndvi_2021-05-02.tif")
    with pytest.raises(OutputExistsError, match="2021-05-02"):
        write_geotiff(series, tmp_path / "ndvi.tif", per="time", blocksize=128)
    assert snapshot(tmp_path / "ndvi_2021-05-02.tif") == before


def test_cog_south_up_input_is_flipped(tmp_path, raster):
    flipped = raster.isel(y=slice(None, None, -1))
    write_geotiff(flipped, tmp_path / "out.tif", blocksize=128)
    with rasterio.open(tmp_path / "out.tif") as src:
        assert src.transform == raster.rio.transform()
        np.testing.assert_array_equal(src.read(1), raster.values)


def test_geotiff_refuses_existing_and_changes_nothing(tmp_path, raster):
    path = tmp_path / "out.tif"
    raster.geo.to_geotiff(path, blocksize=128)
    before = snapshot(path)
    with pytest.raises(OutputExistsError, match=r"mode='w'.*--overwrite"):
        write_geotiff(raster * 2, path, blocksize=128)
    assert snapshot(path) == before
    write_geotiff(raster * 2, path, blocksize=128, mode="w")
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), raster.values * 2)
    assert hidden_leftovers(tmp_path) == []


def test_geotiff_failing_task_keeps_old_output_or_nothing(tmp_path, raster):
    path = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="midway"):
        write_geotiff(failing(raster.chunk({"x": 14})), path, blocksize=128)
    assert only_temporaries(tmp_path, "out.tif") and not path.exists()
    write_geotiff(raster, path, blocksize=128)
    before = snapshot(path)
    with pytest.raises(RuntimeError, match="midway"):
        write_geotiff(failing(raster.chunk({"x": 14}) + 1), path, blocksize=128, mode="w")
    assert snapshot(path) == before
    assert only_temporaries(tmp_path, "out.tif") and path.exists()


def test_geotiff_compute_false_is_lazy(tmp_path, raster):
    path = tmp_path / "out.tif"
    with raise_if_dask_computes():
        delayed = write_geotiff(raster.chunk({"x": 14}) * 2, path, compute=False, blocksize=128)
    assert isinstance(delayed, Delayed)
    assert not path.exists()
    assert delayed.compute() == str(path)
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), raster.values * 2)


def test_geotiff_errors_name_the_fix(tmp_path, raster):
    with pytest.raises(MissingCRSError, match="write_crs"):
        write_geotiff(raster.drop_vars("spatial_ref"), tmp_path / "a.tif")
    with pytest.raises(ValueError, match="local"):
        write_geotiff(raster, "s3://bucket/a.tif")
    with pytest.raises(ValueError, match="cannot be stored"):
        write_geotiff(raster.fillna(0).astype(np.uint8), tmp_path / "a.tif", nodata=-1)
    with pytest.raises(ValueError, match="extra dims"):
        write_geotiff(raster.expand_dims(a=2, b=2), tmp_path / "a.tif")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ COG assembly


def overview(path: Path | str, level: int) -> np.ndarray:
    """Band 1 of overview ``level`` (0: the first overview), read by GDAL."""
    with rasterio.open(path, overview_level=level) as src:
        return src.read(1)


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param({"y": 512, "x": 512}, id="blocks-hold-two-levels"),
        pytest.param({"y": 128, "x": 128}, id="blocks-of-one-tile"),
        pytest.param({"y": (300, 500, 300), "x": (70, 930)}, id="uneven-rechunked"),
        pytest.param(None, id="numpy"),
    ],
)
@pytest.mark.parametrize("nan_fraction", [0.0, 0.3])
def test_cog_every_overview_level_is_the_window_mean(tmp_path, chunks, nan_fraction):
    """All four levels, whatever the chunks: inside blocks, across blocks, partial windows.

    NaN (nodata) is left out at every level: each overview pixel is the mean of the
    valid full-resolution pixels it covers, even where it is made from other levels.
    """
    da = synthetic_raster((1100, 1000), seed=5, nan_fraction=nan_fraction)
    lazy = da if chunks is None else da.chunk(chunks)
    path = write_geotiff(lazy, tmp_path / "a.tif", blocksize=128)
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2, 4, 8, 16]
        np.testing.assert_array_equal(src.read(1), da.values)
    for level, factor in enumerate([2, 4, 8, 16]):
        np.testing.assert_allclose(overview(path, level), block_mean(da.values, factor), rtol=1e-5)


def test_cog_overviews_leave_out_nodata_and_round_integers(tmp_path):
    values = (synthetic_raster((300, 260), seed=6).values * 1000).astype(np.int16)
    values[:3, :] = -9999  # whole windows of nodata at the top, partial ones below
    da = synthetic_raster((300, 260)).copy(data=values).rio.write_nodata(-9999)
    path = write_geotiff(da.chunk({"y": 256, "x": 128}), tmp_path / "i.tif", blocksize=128)
    expected = np.floor(block_mean(values.astype(np.float64), 2, nodata=-9999) + 0.5)
    np.testing.assert_array_equal(overview(path, 0), np.nan_to_num(expected, nan=-9999))
    assert (overview(path, 0)[0] == -9999).all() and (overview(path, 0)[1] != -9999).all()


def test_cog_matches_gdals_cog_driver(tmp_path):
    """A peer on the same input: GDAL's COG driver gives the same pixels at every level."""
    da = synthetic_raster((1024, 768), seed=7)
    ours = write_geotiff(da.chunk({"y": 512, "x": 256}), tmp_path / "ours.tif", blocksize=128)
    plain = tmp_path / "plain.tif"
    da.rio.write_nodata(np.nan).rio.to_raster(plain)
    gdal = tmp_path / "gdal.tif"
    rasterio.shutil.copy(
        plain,
        gdal,
        driver="COG",
        BLOCKSIZE=128,
        COMPRESS="DEFLATE",
        PREDICTOR="FLOATING_POINT",
        OVERVIEW_RESAMPLING="AVERAGE",
    )
    with rasterio.open(ours) as a, rasterio.open(gdal) as b:
        assert a.overviews(1) == b.overviews(1) == [2, 4, 8]
        assert np.isnan(a.nodata) and np.isnan(b.nodata)
        assert {**a.profile, "nodata": 0} == {**b.profile, "nodata": 0}
        assert a.tags(ns="IMAGE_STRUCTURE") == b.tags(ns="IMAGE_STRUCTURE")
        np.testing.assert_array_equal(a.read(), b.read())
    for level in range(3):
        np.testing.assert_allclose(overview(ours, level), overview(gdal, level), rtol=1e-6)


def test_cog_layout_ifds_first_then_tiles_smallest_overview_first(tmp_path):
    da = synthetic_raster((1100, 1000), seed=8).chunk({"y": 512, "x": 512})
    path = write_geotiff(da, tmp_path / "a.tif", blocksize=128)
    assert cog_validate(path, strict=True) == (True, [], [])
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"  # GDAL's own verdict
        ifds = [int(src.get_tag_item("IFD_OFFSET", "TIFF", bidx=1, ovr=i)) for i in range(4)]
        first_tiles = [int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))] + [
            int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1, ovr=i)) for i in range(4)
        ]
    with open(path, "rb") as f:
        main_ifd = int.from_bytes(f.read(8)[4:], "little")  # classic TIFF header
    assert main_ifd < ifds[0] < ifds[1] < ifds[2] < ifds[3] < min(first_tiles)
    assert first_tiles == sorted(first_tiles, reverse=True)


def test_bigtiff_assembly_reads_back_like_classic(tmp_path):
    from lazyraster.io.cog import _tiff

    da = synthetic_raster((300, 200), seed=9, nan_fraction=0.1)
    classic = write_geotiff(da, tmp_path / "classic.tif", blocksize=128)
    levels = []
    for i, ifd in enumerate(_tiff.read_ifds(classic)):
        tiles = [(classic, int(o), int(n)) for o, n in zip(*ifd.tiles, strict=True)]
        levels.append(_tiff.Image(ifd, tiles))
        assert ifd.shape == ((300, 200), (150, 100), (75, 50))[i]
    big = tmp_path / "big.tif"
    _tiff.write_tiff(big, levels, bigtiff=True)
    assert big.read_bytes()[:4] == b"II+\x00"
    assert cog_validate(big) == (True, [], [])
    with rasterio.open(classic) as a, rasterio.open(big) as b:
        assert a.crs == b.crs and a.transform == b.transform and a.tags() == b.tags()
        np.testing.assert_array_equal(a.read(), b.read())
    np.testing.assert_array_equal(overview(big, 0), overview(classic, 0))


@pytest.mark.parametrize(
    ("dtype", "predictor", "bands"),
    [
        (np.float32, 3, 1),
        (np.float64, 3, 2),
        (np.uint16, 2, 1),
        (np.int16, 2, 3),
        (np.uint8, 1, 2),
    ],
)
def test_deflate_tiles_hold_the_bytes_gdal_compresses(tmp_path, dtype, predictor, bands):
    """Decompressed, each of our tiles is the predictor output libtiff gives GDAL, to the byte."""
    from lazyraster.io.cog import _tiff

    rng = np.random.default_rng(11)
    data = (rng.random((bands, 40, 56)) * 200 - 50).astype(dtype)
    path = tmp_path / "gdal.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=56,
        height=40,
        count=bands,
        dtype=data.dtype,
        tiled=True,
        blockxsize=16,
        blockysize=16,
        compress="deflate",
        predictor=predictor,
        interleave="pixel",
        transform=rasterio.Affine(10, 0, 0, 0, -10, 0),
    ) as dst:
        dst.write(data)
    (ifd,) = _tiff.read_ifds(path)
    raw = path.read_bytes()
    gdal = [zlib.decompress(raw[o : o + n]) for o, n in zip(*ifd.tiles, strict=True)]
    ours = [zlib.decompress(t) for t in _tiff.encode_tiles(data, 16, predictor)]
    assert len(ours) == len(gdal) == 3 * 4
    assert ours == gdal


def test_overview_pyramid_against_loops():
    from lazyraster.io.cog import _overviews as _overview

    rng = np.random.default_rng(10)
    values = rng.random((2, 9, 7)).astype(np.float32)
    values[0, :2, :2] = np.nan  # one window all NaN
    values[1, 4:7, 3] = np.nan
    level = values
    for factor in (2, 4, 8):  # each level from the one before, exact from the full resolution
        level = _overview.halve(level, "average", None)
        for b in range(2):
            np.testing.assert_allclose(level.values[b], block_mean(values[b], factor), rtol=1e-6)
        assert level.values.dtype == np.float32
    assert np.isnan(_overview.halve(values, "average", None).values[0, 0, 0])
    rms = _overview.halve(values[:, 2:, :], "rms", None).values  # GDAL's resampling, not ours
    for i, j in itertools.product(range(3), range(3)):
        window = values[0, 2 + 2 * i : 4 + 2 * i, 2 * j : 2 * j + 2].astype(np.float64)
        np.testing.assert_allclose(rms[0, i, j], np.sqrt((window**2).mean()), rtol=1e-6)
    near = _overview.halve(values, "nearest", None).values  # the first pixel, as GDAL
    np.testing.assert_array_equal(near, values[:, ::2, ::2])


def test_overview_integers_round_half_up_stay_in_range_and_keep_clear_of_nodata():
    from lazyraster.io.cog import _overviews as _overview

    halves = np.array([[[1, 2, 2, 3], [1, 2, 2, 3]]], dtype=np.int16)  # means 1.5, 2.5
    assert _overview.halve(halves, "average", None).values.tolist() == [[[2, 3]]]
    # a valid mean equal to nodata becomes its neighbour, as in GDAL; all-nodata stays
    data = np.array([[[-2, 0, -1, -1], [0, -2, -1, -1]]], dtype=np.int16)
    assert _overview.halve(data, "average", -1).values.tolist() == [[[0, -1]]]
    for dtype in (np.int64, np.uint64, np.uint32):
        top = np.iinfo(dtype).max
        mean = _overview.halve(np.full((1, 2, 2), top, dtype), "average", None).values
        assert top - 2048 < mean[0, 0, 0] <= top  # no wrap-around (float64 sums)


def test_cog_overviews_leave_out_float_nodata_that_float32_rounds(tmp_path):
    values = np.full((256, 256), 5.0, np.float32)
    values[::2, ::2] = 1e20  # stored as float32(1e20), which is not 1e20
    da = synthetic_raster((256, 256)).copy(data=values).rio.write_nodata(1e20)
    path = write_geotiff(da.chunk({"y": 128}), tmp_path / "f.tif", blocksize=128)
    np.testing.assert_array_equal(overview(path, 0), 5.0)


def test_dataset_bands_keep_their_common_nodata(tmp_path):
    red = synthetic_raster((256, 256), seed=13)
    values = (red.values * 1000).astype(np.uint16)
    values[:2, :] = 0
    red = red.copy(data=values).rio.write_nodata(0)
    nir = red.copy(data=values + 7).rio.write_nodata(0)
    nir.values[:2, :] = 0
    path = write_geotiff(xr.Dataset({"red": red, "nir": nir}), tmp_path / "b.tif", blocksize=128)
    with rasterio.open(path) as src:
        assert src.nodata == 0
    expected = np.floor(block_mean(values.astype(np.float64), 2, nodata=0) + 0.5)
    np.testing.assert_array_equal(overview(path, 0), np.nan_to_num(expected, nan=0))
    other = xr.Dataset({"red": red, "nir": nir.rio.write_nodata(65535)})
    with pytest.raises(ValueError, match=r"different nodata.*pass nodata="):
        write_geotiff(other, tmp_path / "c.tif", blocksize=128)
    assert not (tmp_path / "c.tif").exists()
    write_geotiff(other, tmp_path / "c.tif", blocksize=128, nodata=0)


def test_cog_assembly_keeps_few_files_open(tmp_path):
    """Hundreds of block files, a soft limit of 64 more descriptors than are open."""
    import resource

    da = synthetic_raster((2048, 2048), seed=12).chunk({"y": 128, "x": 128})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 64, hard))
    try:
        with dask.config.set(scheduler="synchronous"):
            path = write_geotiff(da, tmp_path / "many.tif", blocksize=128)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), da.values)


def test_geotiff_refuses_compressions_with_shared_tables_and_bad_predictors(tmp_path, raster):
    with pytest.raises(ValueError, match="deflate"):
        write_geotiff(
            (raster * 100).fillna(0).astype(np.uint8), tmp_path / "a.tif", compress="jpeg"
        )
    with pytest.raises(ValueError, match="predictor 3 is for floating-point"):
        write_geotiff((raster * 100).fillna(0).astype(np.int16), tmp_path / "a.tif", predictor=3)
    assert list(tmp_path.iterdir()) == []


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


# ------------------------------------------------------------------ every scheduler


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
