"""Sentinel-2 SAFE products through the catalog builder and the loader, end to end."""

import datetime as dt

import numpy as np
import pytest
import rasterio

import lazyraster
from lazyraster.testing import write_safe


@pytest.fixture(scope="module")
def safe_catalog(tmp_path_factory):
    src = tmp_path_factory.mktemp("safe")
    old = write_safe(src, baseline="02.12", start=dt.datetime(2021, 4, 30, 10, 46, 21), seed=1)
    new = write_safe(src, baseline="04.00", start=dt.datetime(2023, 4, 30, 10, 46, 21), seed=2)
    out = tmp_path_factory.mktemp("catalog") / "s2"
    lazyraster.build_catalog([src], out)
    return out / "catalog.json", {"02.12": old, "04.00": new}


def jp2(safe, band, res):
    return next(safe.glob(f"GRANULE/*/IMG_DATA/R{res}m/*_{band}_{res}m.jp2"))


def test_common_names_pick_the_finest_resolution_and_baselines_agree(safe_catalog):
    catalog, products = safe_catalog
    ds = lazyraster.load(catalog, bands=["red", "nir", "SCL"])
    assert ds.rio.resolution() == (10.0, -10.0)
    assert ds.red.attrs["stac_asset"].startswith("B04") and "10m" in ds.red.attrs["stac_asset"]
    for t, baseline in enumerate(("02.12", "04.00")):
        with rasterio.open(jp2(products[baseline], "B04", 10)) as src:
            dn = src.read(1).astype(np.float64)
        offset = -1000 if baseline == "04.00" else 0
        expected = (dn + offset) / 10000
        expected[dn == 0] = np.nan
        np.testing.assert_allclose(ds.red.isel(time=t).values, expected, atol=1e-6)
    # SCL (20 m) comes on the 10 m grid: each SCL pixel covers 2 x 2 output pixels
    scl = ds.SCL.isel(time=0).values
    with rasterio.open(jp2(products["02.12"], "SCL", 20)) as src:
        native = src.read(1).astype(np.float64)
    native[native == 0] = np.nan
    np.testing.assert_array_equal(scl[::2, ::2], native)
    np.testing.assert_array_equal(scl[1::2, 1::2], native)


def test_default_bands_skip_multi_band_assets_and_name_duplicates_by_key(safe_catalog):
    catalog, _ = safe_catalog
    ds = lazyraster.load(catalog, datetime="2023")
    names = set(ds.data_vars)
    assert {"red", "nir", "blue", "green"} <= names
    assert not any(name.startswith("TCI") for name in names)
    assert any(name.startswith("B04_") and name.endswith("20m") for name in names)
    ndvi = ds.geo.ndvi()
    assert np.isfinite(ndvi.values).any()


def test_mask_clouds_on_loaded_scl(safe_catalog):
    catalog, _ = safe_catalog
    ds = lazyraster.load(catalog, bands=["red", "SCL"])
    masked = ds.geo.mask_clouds()
    scl = ds.SCL.values
    bad = np.isin(scl, lazyraster.masking.SCL_INVALID) | np.isnan(scl)
    assert bad.any() and (~bad).any()
    assert np.isnan(masked.red.values[bad]).all()
    np.testing.assert_array_equal(masked.red.values[~bad], ds.red.values[~bad])
