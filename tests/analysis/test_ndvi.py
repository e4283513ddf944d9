from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

import lazyraster
from lazyraster.errors import MissingBandError
from lazyraster.testing import raise_if_dask_computes, synthetic_raster

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "catalogs" / "sample" / "catalog.json"
ITEM_DIR = SAMPLE.parent / "sentinel-2-l2a-composite" / "S2_L3B_21JXN_20210319"


def numpy_ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """The course script's arithmetic, in float64, as an independent reference."""
    red = red.astype(np.float64)
    nir = nir.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (nir - red) / (nir + red)
    out[(nir + red) == 0] = np.nan
    return out


def test_ndvi_on_sample_equals_plain_numpy_from_rasterio():
    ds = lazyraster.load(SAMPLE, bands=["red", "nir"])
    result = ds.geo.ndvi()
    with rasterio.open(ITEM_DIR / "B04.tif") as r, rasterio.open(ITEM_DIR / "B08.tif") as n:
        red, nir = r.read(1), n.read(1)
    expected = numpy_ndvi(red / 10000, nir / 10000)
    expected[(red == 0) | (nir == 0)] = np.nan
    values = result.isel(time=0).values
    np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert np.isfinite(values).sum() > 2000
    assert result.rio.crs == ds.rio.crs and result.rio.transform() == ds.rio.transform()


def make_bands(backend) -> xr.Dataset:
    red = synthetic_raster((37, 53), seed=1, nan_fraction=0.1, name="red")
    nir = synthetic_raster((37, 53), seed=2, nan_fraction=0.1, name="nir")
    red[0, :5] = 0.0
    nir[0, :5] = 0.0  # red + nir == 0
    red[1, :5] = 0.3
    nir[1, :5] = 0.3  # equal bands
    ds = xr.Dataset({"red": red, "nir": nir}, attrs={"title": "test scene"})
    return backend(ds)


def test_ndvi_backends_agree_and_match_reference(backend):
    ds = make_bands(backend)
    with raise_if_dask_computes():
        result = ds.geo.ndvi()
    assert result.dtype == np.float32
    values = result.values  # compute
    assert values.dtype == np.float32
    expected = numpy_ndvi(ds.red.values, ds.nir.values)
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert np.isnan(values[0, :5]).all()
    assert (values[1, :5] == 0).all()
    assert np.isnan(values[np.isnan(ds.red.values) | np.isnan(ds.nir.values)]).all()
    assert result.attrs["title"] == "test scene"
    assert result.rio.crs == ds.rio.crs


def test_dask_result_equals_numpy_result_bit_for_bit(backend):
    ds = make_bands(backend)
    eager = lazyraster.ndvi(ds.compute())
    xr.testing.assert_identical(ds.geo.ndvi().compute(), eager)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.int16, np.float64])
def test_integer_and_double_inputs_give_float32(dtype):
    red = xr.DataArray(np.array([[10, 0, 7]], dtype=dtype), dims=("y", "x"))
    nir = xr.DataArray(np.array([[30, 0, 7]], dtype=dtype), dims=("y", "x"))
    out = lazyraster.normalized_difference(nir, red)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.values, np.array([[0.5, np.nan, 0.0]], dtype=np.float32))


def test_missing_band_error_names_band_and_what_exists():
    ds = xr.Dataset({"red": ("x", [0.1]), "swir16": ("x", [0.2])})
    with pytest.raises(MissingBandError, match=r"'nir'.*red, swir16.*nir="):
        ds.geo.ndvi()
    # the accessor is the same call as the function
    ds = ds.rename({"swir16": "nir"})
    xr.testing.assert_identical(ds.geo.ndvi(), lazyraster.indices.ndvi(ds))
