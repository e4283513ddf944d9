from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.windows import from_bounds

import lazyraster
from lazyraster.errors import EmptyResultError, MissingBandError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "catalogs" / "sample" / "catalog.json"
ITEM_DIR = SAMPLE.parent / "sentinel-2-l2a-composite" / "S2_L3B_21JXN_20210319"
COMMON = {
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B08": "nir",
    "B11": "swir16",
    "B12": "swir22",
}


def rasterio_reflectance(key: str, window=None) -> np.ndarray:
    """Independent read: uint16 DN, 0 = nodata, x 0.0001, as float32."""
    with rasterio.open(ITEM_DIR / f"{key}.tif") as src:
        dn = src.read(1, window=window)
    out = dn.astype(np.float32) * np.float32(1e-4)
    out[dn == 0] = np.nan
    return out


def test_sample_loads_with_common_names_and_native_grid():
    ds = lazyraster.load(SAMPLE)
    assert list(ds.data_vars) == list(COMMON.values())
    assert dict(ds.sizes) == {"time": 1, "y": 80, "x": 152}
    with rasterio.open(ITEM_DIR / "B04.tif") as src:
        assert ds.rio.crs == src.crs
        assert ds.rio.transform() == src.transform
    # coordinates are pixel centres
    assert ds.x.values[0] == pytest.approx(ds.rio.transform().c + 15)
    assert ds.y.values[0] == pytest.approx(ds.rio.transform().f - 15)
    assert str(ds.time.values[0])[:10] == "2021-03-19"
    assert ds.id.values.tolist() == ["S2_L3B_21JXN_20210319"]


@pytest.mark.parametrize("key", list(COMMON))
def test_pixels_equal_rasterio_read_with_scale_and_nodata(key):
    ds = lazyraster.load(SAMPLE)
    loaded = ds[COMMON[key]].isel(time=0)
    assert loaded.chunks is not None, "load must be lazy (dask-backed)"
    expected = rasterio_reflectance(key)
    np.testing.assert_array_equal(np.isnan(loaded.values), np.isnan(expected))
    np.testing.assert_array_equal(loaded.values, expected)
    assert 0 < np.isnan(expected).mean() < 1  # the sample really has nodata and data


def test_bands_by_common_name_or_asset_key_and_chunks():
    ds = lazyraster.load(SAMPLE, bands=["nir", "B04"], chunks={"y": 32, "x": 50})
    assert list(ds.data_vars) == ["nir", "red"]
    assert ds.red.chunks == ((1,), (32, 32, 16), (50, 50, 50, 2))


def test_bbox_subset_equals_window_read():
    bbox = (-55.98, -25.40, -55.95, -25.39)
    ds = lazyraster.load(SAMPLE, bands=["red"], bbox=bbox)
    left, bottom, right, top = ds.rio.bounds()
    with rasterio.open(ITEM_DIR / "B04.tif") as src:
        window = from_bounds(left, bottom, right, top, src.transform)
        assert window.col_off == int(window.col_off) and window.row_off == int(window.row_off)
        window = window.round_offsets().round_lengths()
    expected = rasterio_reflectance("B04", window)
    np.testing.assert_array_equal(ds.red.isel(time=0).values, expected)
    # the subset covers the requested box (transformed to the CRS) and not much more
    assert ds.sizes["x"] < 152 and ds.sizes["y"] < 80


def test_reprojection_to_requested_crs_and_resolution():
    ds = lazyraster.load(SAMPLE, bands=["red"], crs="EPSG:32721", resolution=60)
    assert ds.rio.crs.to_epsg() == 32721
    assert ds.rio.resolution() == (60.0, -60.0)
    values = ds.red.values
    native = rasterio_reflectance("B04")
    # nearest resampling only picks existing values
    picked = values[np.isfinite(values)]
    assert picked.size > 0
    assert np.isin(picked, native[np.isfinite(native)]).all()


def test_items_and_item_collection_inputs_match_catalog_path():
    items = list(pystac.read_file(str(SAMPLE)).get_items(recursive=True))
    a = lazyraster.load(items, bands=["red"]).red.values
    b = lazyraster.load(pystac.ItemCollection(items), bands=["red"]).red.values
    np.testing.assert_array_equal(a, b)


def test_empty_and_missing_band_errors_name_the_fix():
    with pytest.raises(EmptyResultError, match="collection"):
        lazyraster.load(SAMPLE, collections=["no-such-collection"])
    with pytest.raises(MissingBandError, match=r"'rededge'.*red \(B04\)"):
        lazyraster.load(SAMPLE, bands=["rededge"])
    with pytest.raises(TypeError, match="floating"):
        lazyraster.load(SAMPLE, dtype="uint16")


def test_reprojection_equals_rasterio_warp_on_the_same_grid():
    from rasterio.warp import Resampling, reproject

    ds = lazyraster.load(SAMPLE, bands=["red"], crs="EPSG:32721", resolution=60)
    loaded = ds.red.isel(time=0).values
    expected = np.full(loaded.shape, np.nan, dtype=np.float32)
    with rasterio.open(ITEM_DIR / "B04.tif") as src:
        reproject(
            rasterio_reflectance("B04"),
            expected,
            src_transform=src.transform,
            src_crs=src.crs,
            src_nodata=np.nan,
            dst_transform=ds.rio.transform(),
            dst_crs="EPSG:32721",
            dst_nodata=np.nan,
            resampling=Resampling.nearest,
        )
    # nearest resampling through GDAL's warper on both sides: the same pixels, exactly
    assert np.isfinite(expected).sum() > 400
    np.testing.assert_array_equal(loaded, expected)
