"""Loading synthetic multi-item catalogs: mosaics, offsets, filters, errors, graph size."""

import datetime as dt
import time

import dask
import numpy as np
import pystac
import pytest
import xarray as xr
from rasterio.transform import from_origin

import lazyraster
from lazyraster.errors import ReadError
from lazyraster.testing import raise_if_dask_computes, raster_item, write_cog

RES = 10.0
X0, Y0 = 600000.0, 5700000.0


@pytest.fixture(scope="module")
def scene():
    """A 40 x 60 scene split into two tiles (left and right) on one day, plus a later day
    processed with a -1000 DN offset (like Sentinel-2 baseline 04.00)."""
    rng = np.random.default_rng(42)
    red = rng.integers(100, 3000, size=(40, 60), dtype=np.uint16)
    nir = rng.integers(2000, 6000, size=(40, 60), dtype=np.uint16)
    red[5:8, 10:20] = 0  # nodata
    scl = np.full((40, 60), 4, dtype=np.uint8)
    scl[20:30, 40:50] = 9  # a cloud
    scl[0:4, 0:4] = 3  # a shadow
    return {"red": red, "nir": nir, "scl": scl}


@pytest.fixture(scope="module")
def items(scene, tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    out = []
    halves = {"left": slice(0, 30), "right": slice(30, 60)}
    day1 = dt.datetime(2023, 4, 30, 10, 46)
    for name, cols in halves.items():
        transform = from_origin(X0 + cols.start * RES, Y0, RES, RES)
        assets = {}
        for key, common, data in (("B04", "red", scene["red"]), ("B08", "nir", scene["nir"])):
            path = write_cog(root / f"{name}_{key}.tif", data[:, cols], transform=transform)
            assets[key] = {"href": str(path), "common_name": common, "scale": 0.0001, "nodata": 0}
        path = write_cog(root / f"{name}_SCL.tif", scene["scl"][:, cols], transform=transform)
        assets["SCL"] = {"href": str(path), "nodata": 0}
        out.append(
            raster_item(
                f"T31UFU_{name}_20230430",
                day1,
                assets,
                collection="s2",
                properties={"eo:cloud_cover": 12.0 if name == "left" else 40.0},
            )
        )
    # the same full scene 10 days later with DN + 1000 and offset -0.1
    transform = from_origin(X0, Y0, RES, RES)
    assets = {}
    for key, common, data in (("B04", "red", scene["red"]), ("B08", "nir", scene["nir"])):
        shifted = np.where(data == 0, 0, data + 1000).astype(np.uint16)
        path = write_cog(root / f"late_{key}.tif", shifted, transform=transform)
        assets[key] = {
            "href": str(path),
            "common_name": common,
            "scale": 0.0001,
            "offset": -0.1,
            "nodata": 0,
        }
    out.append(
        raster_item(
            "T31UFU_20230510",
            day1 + dt.timedelta(days=10),
            assets,
            collection="s2",
            properties={"eo:cloud_cover": 3.0},
        )
    )
    return out


def reflectance(dn: np.ndarray) -> np.ndarray:
    out = dn.astype(np.float32) * np.float32(1e-4)
    out[dn == 0] = np.nan
    return out


def test_tiles_of_one_day_are_separate_steps_without_groupby(items, scene):
    ds = lazyraster.load(items[:2], bands=["red"])
    assert ds.sizes == {"time": 2, "y": 40, "x": 60}
    expected = reflectance(scene["red"])
    left, right = ds.red.values
    np.testing.assert_array_equal(left[:, :30], expected[:, :30])
    assert np.isnan(left[:, 30:]).all() and np.isnan(right[:, :30]).all()
    np.testing.assert_array_equal(right[:, 30:], expected[:, 30:])


def test_solar_day_mosaic_equals_the_whole_scene(items, scene):
    ds = lazyraster.load(items, bands=["red", "nir"], groupby="solar_day", chunks=16)
    assert ds.sizes["time"] == 2
    assert ds.id.values[0] == "T31UFU_left_20230430+T31UFU_right_20230430"
    np.testing.assert_array_equal(ds.red.isel(time=0).values, reflectance(scene["red"]))
    np.testing.assert_array_equal(ds.nir.isel(time=0).values, reflectance(scene["nir"]))


def test_offsets_per_item_make_baselines_agree(items, scene):
    ds = lazyraster.load(items, bands=["red", "nir"], groupby="solar_day")
    early, late = ds.red.values
    np.testing.assert_array_equal(np.isnan(early), np.isnan(late))
    # DN + 1000 with offset -0.1 gives the same reflectance within float32 rounding
    np.testing.assert_allclose(late, early, atol=2e-7, equal_nan=True)


def test_filters_select_items(items):
    catalog_items = pystac.ItemCollection(items)
    assert lazyraster.load(catalog_items, datetime="2023-05").sizes["time"] == 1
    assert lazyraster.load(catalog_items, query={"eo:cloud_cover": {"lt": 20}}).sizes["time"] == 2
    assert lazyraster.load(catalog_items, filter='"eo:cloud_cover" > 20').id.values.tolist() == [
        "T31UFU_right_20230430"
    ]
    with pytest.raises(lazyraster.EmptyResultError, match=r"datetime='2020'.*widen"):
        lazyraster.load(catalog_items, datetime="2020")


def test_mask_clouds_masks_scl_classes_lazily(items, scene):
    ds = lazyraster.load(items[:2], bands=["red", "SCL"], groupby="solar_day")
    with raise_if_dask_computes():
        masked = ds.geo.mask_clouds()
    red = masked.red.isel(time=0).values
    expected = reflectance(scene["red"])
    expected[scene["scl"] == 9] = np.nan
    expected[scene["scl"] == 3] = np.nan
    np.testing.assert_array_equal(red, expected)
    keep_shadows = lazyraster.masking.mask_clouds(ds, classes=[9]).red.isel(time=0).values
    assert np.isfinite(keep_shadows[0:4, 0:4]).all()


def test_missing_file_raises_an_error_naming_it(items, tmp_path):
    broken = items[2].clone()
    broken.assets["B04"].href = str(tmp_path / "gone.tif")
    ds = lazyraster.load([broken], bands=["red"])
    with pytest.raises(ReadError, match=r"^cannot open \S*gone\.tif: No such file"):
        ds.red.compute()


def test_gdal_options_reach_process_workers(items):
    ds = lazyraster.load(items[2:], bands=["red"], gdal={"GDAL_SKIP": "GTiff,COG"})
    with (
        dask.config.set(scheduler="processes", num_workers=2),
        pytest.raises(ReadError, match=r"late_B04\.tif"),
    ):
        ds.red.compute()  # GTiff is skipped in the worker process: the option arrived
    ok = lazyraster.load(items[2:], bands=["red"])
    with dask.config.set(scheduler="processes", num_workers=2):
        assert np.isfinite(ok.red.values).any()


def test_loading_builds_no_computation(items):
    with raise_if_dask_computes():
        ds = lazyraster.load(items, groupby="solar_day", chunks=16)
    assert isinstance(ds, xr.Dataset)


def test_a_thousand_items_give_a_small_graph_quickly(items):
    template = items[2]
    many = []
    for i in range(1000):
        item = template.clone()
        item.id = f"scene_{i:04d}"
        item.datetime = template.datetime + dt.timedelta(days=i)
        many.append(item)
    start = time.perf_counter()
    ds = lazyraster.load(many, bands=["red", "nir"])
    elapsed = time.perf_counter() - start
    tasks = len(dict(ds.__dask_graph__()))
    assert ds.sizes["time"] == 1000
    assert elapsed < 10, f"building the lazy Dataset took {elapsed:.1f} s"
    assert tasks < 200_000, f"{tasks} tasks"


def test_load_leaves_the_items_unchanged(items):
    before = [item.to_dict() for item in items]
    lazyraster.load(items, bands=["red", "nir"], groupby="solar_day").red.compute()
    assert [item.to_dict() for item in items] == before


def test_file_without_nodata_is_masked_outside_its_footprint_when_warped(tmp_path):
    data = np.arange(1, 401, dtype=np.uint16).reshape(20, 20)
    path = write_cog(tmp_path / "b.tif", data, nodata=None, transform=from_origin(X0, Y0, RES, RES))
    item = raster_item("a", dt.datetime(2022, 1, 1), {"B04": {"href": str(path)}})
    ds = lazyraster.load([item], crs=32631, resolution=5.0, bbox=item.bbox)
    values = ds.B04.isel(time=0).values
    # upsampled 2x with nearest: every source pixel appears as a 2 x 2 block
    inside = values[np.isfinite(values)]
    assert set(np.unique(inside).astype(int)) <= set(data.ravel().tolist())
    assert np.isnan(values).any(), "pixels outside the file's footprint must be NaN, not 0"
    assert (inside > 0).all()
