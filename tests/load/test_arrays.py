"""Every ``load`` option on netCDF and Zarr assets: honoured as for rasters, or refused.

References are made outside the loader: ``xarray.open_dataset`` / ``open_zarr`` of the
same file (CF-decoded, or raw with ``mask_and_scale=False``) and numpy.
"""

import numpy as np
import pystac
import pytest
import xarray as xr

import lazyraster
from lazyraster.testing import daymet_like

YEARS = (2020, 2021)
FILL_DN = -32768
UNEVEN = {"time": 100, "y": 4, "x": 5}  # 365 x 6 x 8: every axis ends in a short chunk


def _item(year: int, ds: xr.Dataset) -> pystac.Item:
    w, e = float(ds.lon.min()), float(ds.lon.max())
    s, n = float(ds.lat.min()), float(ds.lat.max())
    return pystac.Item(
        f"packed_{year}",
        geometry={"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        bbox=[w, s, e, n],
        datetime=None,
        properties={
            "start_datetime": f"{year}-01-01T12:00:00Z",
            "end_datetime": f"{year}-12-31T12:00:00Z",
        },
    )


@pytest.fixture(scope="module", params=["netcdf", "zarr"])
def packed(request, tmp_path_factory):
    """Daymet-like items: tmax packed as int16 (scale, offset, _FillValue), tmin float.

    Both have holes (the file's nodata); the 2020 item has no tmin asset.
    """
    root = tmp_path_factory.mktemp(f"packed-{request.param}")
    items, paths = [], {}
    for year in YEARS:
        ds = daymet_like(year)
        ds["tmax"] = ds.tmax.where((ds.x != ds.x[1]) | (ds.y != ds.y[2]))  # a hole
        ds["tmin"] = ds.tmin.where(ds.x != ds.x[0])  # a hole: NaN, the default _FillValue
        item = _item(year, ds)
        encoding = {
            "tmax": {
                "dtype": "int16",
                "scale_factor": 0.01,
                "add_offset": 10.0,
                "_FillValue": FILL_DN,
            }
        }
        for var in ("tmax", "tmin") if year == 2021 else ("tmax",):
            one = ds[[var, "lambert_conformal_conic"]]
            enc = {k: v for k, v in encoding.items() if k == var}
            if request.param == "netcdf":
                path = root / f"{var}_{year}.nc"
                one.to_netcdf(path, engine="h5netcdf", encoding=enc)
                media_type = "application/x-netcdf"
            else:
                path = root / f"{var}_{year}.zarr"
                one.to_zarr(path, encoding=enc)
                media_type = "application/vnd+zarr"
            item.add_asset(var, pystac.Asset(str(path), media_type=media_type, roles=["data"]))
            paths[var, year] = path
        items.append(item)
    return request.param, items, paths


def _open(kind, path, **options):
    if kind == "zarr":
        return xr.open_zarr(path, **options)
    return xr.open_dataset(path, engine="h5netcdf", **options)


def _reference(kind, paths, var, years=YEARS):
    """CF-decoded (xarray) and raw stored values of ``var``, concatenated along time."""
    decoded = np.concatenate([_open(kind, paths[var, y])[var].values for y in years])
    raw = np.concatenate(
        [_open(kind, paths[var, y], mask_and_scale=False)[var].values for y in years]
    )
    return decoded, raw


@pytest.fixture(params=[None, UNEVEN], ids=["default-chunks", "uneven-chunks"])
def chunks(request):
    return request.param


def _load(items, chunks, **options):
    ds = lazyraster.load(items, bands=["tmax"], chunks=chunks, **options)
    if chunks is not None:
        assert ds.tmax.chunks[1:] == ((4, 2), (5, 3))
    return ds


def test_default_is_float32_cf_decoded(packed, chunks):
    kind, items, paths = packed
    decoded, raw = _reference(kind, paths, "tmax")
    assert np.isnan(decoded).any() and (raw == FILL_DN).any()
    ds = _load(items, chunks)
    assert ds.tmax.dtype == np.float32 and ds.tmax.values.dtype == np.float32
    np.testing.assert_array_equal(ds.tmax.values, decoded.astype(np.float32))
    assert not {"scale_factor", "add_offset", "_FillValue"} & set(ds.tmax.attrs)


def test_dtype_is_honoured(packed, chunks):
    kind, items, paths = packed
    decoded, _ = _reference(kind, paths, "tmax")
    ds = _load(items, chunks, dtype="float64")
    assert ds.tmax.dtype == np.float64 and ds.tmax.values.dtype == np.float64
    np.testing.assert_array_equal(ds.tmax.values, decoded)
    with pytest.raises(TypeError, match="floating dtype"):
        lazyraster.load(items, bands=["tmax"], dtype="int16")


def test_scale_false_gives_the_stored_values(packed, chunks):
    kind, items, paths = packed
    _, raw = _reference(kind, paths, "tmax")
    ds = _load(items, chunks, scale=False)
    expected = np.where(raw == FILL_DN, np.nan, raw.astype(np.float32))
    np.testing.assert_array_equal(ds.tmax.values, expected)


def test_fill_replaces_the_files_nodata(packed, chunks):
    kind, items, paths = packed
    decoded, _ = _reference(kind, paths, "tmax")
    ds = _load(items, chunks, fill=-9999.0)
    expected = np.where(np.isnan(decoded), -9999.0, decoded).astype(np.float32)
    np.testing.assert_array_equal(ds.tmax.values, expected)
    assert not np.isnan(ds.tmax.values).any()


def test_nodata_overrides_the_files_fill_value(packed, chunks):
    kind, items, paths = packed
    _, raw = _reference(kind, paths, "tmax")
    value = int(raw[0, 0, 0])
    ds = _load(items, chunks, nodata={"tmax": value})
    scaled = (raw * 0.01 + 10.0).astype(np.float32)
    expected = np.where(raw == value, np.nan, scaled)  # the file's -32768 is a value now
    np.testing.assert_array_equal(ds.tmax.values, expected)
    assert np.isclose(ds.tmax.values[raw == FILL_DN], FILL_DN * 0.01 + 10).all()


def test_missing_nan_fills_a_variable_an_item_lacks(packed):
    kind, items, paths = packed
    with pytest.raises(lazyraster.errors.MissingBandError, match="missing"):
        lazyraster.load(items, bands=["tmax", "tmin"])
    ds = lazyraster.load(items, bands=["tmax", "tmin"], missing="nan", fill=-1.0)
    tmin = _open(kind, paths["tmin", 2021]).tmin.values
    np.testing.assert_array_equal(ds.tmin.sel(time="2020").values, -1.0)
    np.testing.assert_array_equal(ds.tmin.sel(time="2021").values, np.nan_to_num(tmin, nan=-1.0))
    decoded, _ = _reference(kind, paths, "tmax")
    expected = np.nan_to_num(decoded, nan=-1.0).astype(np.float32)
    np.testing.assert_array_equal(ds.tmax.values, expected)


def test_chunks_are_checked_as_for_rasters(packed):
    _, items, _ = packed
    with pytest.raises(ValueError, match="chunks may name time, y and x"):
        lazyraster.load(items, bands=["tmax"], chunks={"band": 2})
    with pytest.raises(ValueError, match="whole number"):
        lazyraster.load(items, bands=["tmax"], chunks=0)


@pytest.mark.parametrize(
    "option",
    [
        {"groupby": "solar_day"},
        {"gdal": {"GDAL_CACHEMAX": 64}},
        {"resampling": "bilinear"},
        {"resolution": 2000.0},
    ],
)
def test_options_that_change_the_grid_or_gdal_are_refused(packed, option):
    _, items, _ = packed
    (name,) = option
    with pytest.raises(ValueError, match=rf"{name}=.*drop {name}="):
        lazyraster.load(items, bands=["tmax"], **option)


def test_unsigned_integers_stored_signed_decode_as_xarray_does(tmp_path):
    """netCDF-3's ``_Unsigned``: 200 stored as int8 -56 is 200, not -56."""
    values = np.array([[[200.0, 5.0], [np.nan, 250.0]]])
    ds = xr.Dataset(
        {"v": (("time", "y", "x"), values)},
        coords={
            "time": np.array(["2021-06-01"], "datetime64[ns]"),
            "y": [1.0, 0.0],
            "x": [0.0, 1.0],
        },
    )
    path = tmp_path / "v.nc"
    encoding = {"dtype": "i1", "_Unsigned": "true", "_FillValue": -1}
    ds.to_netcdf(path, engine="h5netcdf", encoding={"v": encoding})
    item = _item(2021, ds.assign_coords(lon=0.0, lat=0.0))
    item.add_asset("v", pystac.Asset(str(path), media_type="application/x-netcdf"))
    loaded = lazyraster.load([item], bands=["v"], crs="EPSG:32631")
    reference = xr.open_dataset(path, engine="h5netcdf").v.values
    assert reference[0, 0, 0] == 200.0
    np.testing.assert_array_equal(loaded.v.values, reference.astype(np.float32))
