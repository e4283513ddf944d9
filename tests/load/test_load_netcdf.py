"""netCDF assets (Daymet-like region-year items) through xarray + fsspec."""

import numpy as np
import pystac
import pytest
import xarray as xr
from pyproj import CRS

import lazyraster
from lazyraster.testing import DAYMET_LCC, daymet_like

YEARS = (2020, 2021)


@pytest.fixture(scope="module")
def daymet(tmp_path_factory):
    """Two region-year items, one netCDF file per variable, as the Daymet archive has them."""
    root = tmp_path_factory.mktemp("daymet")
    items, truth = [], {}
    for year in YEARS:
        ds = daymet_like(year)
        truth[year] = ds
        w, s, e, n = (
            float(ds.lon.min()),
            float(ds.lat.min()),
            float(ds.lon.max()),
            float(ds.lat.max()),
        )
        item = pystac.Item(
            f"daymet_na_{year}",
            geometry={
                "type": "Polygon",
                "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
            },
            bbox=[w, s, e, n],
            datetime=None,
            properties={
                "start_datetime": f"{year}-01-01T12:00:00Z",
                "end_datetime": f"{year}-12-31T12:00:00Z",
                "region": "na",
            },
            collection="daymet-daily",
        )
        for var in ("tmin", "tmax", "dayl"):
            path = root / f"daymet_v4_daily_na_{var}_{year}.nc"
            ds[[var, "lambert_conformal_conic"]].to_netcdf(path, engine="h5netcdf")
            item.add_asset(
                var, pystac.Asset(str(path), media_type="application/x-netcdf", roles=["data"])
            )
        items.append(item)
    return items[::-1], truth  # unsorted on purpose


def test_netcdf_items_concatenate_along_time_with_crs(daymet):
    items, truth = daymet
    ds = lazyraster.load(items, bands=["tmin", "tmax", "dayl"])
    assert list(ds.data_vars) == ["tmin", "tmax", "dayl"]
    assert ds.sizes == {"time": 730, "y": 6, "x": 8}
    expected = xr.concat([truth[y] for y in YEARS], dim="time", data_vars="all")
    for var in ("tmin", "tmax", "dayl"):
        np.testing.assert_array_equal(ds[var].values, expected[var].values)
    assert ds.rio.crs == CRS.from_cf(DAYMET_LCC)
    assert ds.rio.transform().a == 1000.0
    # one chunk per file, so one per year: what the spring index wants
    assert ds.tmin.chunks[0] == (365, 365)
    assert "lambert_conformal_conic" not in ds.variables
    assert "lat" in ds.coords


def test_netcdf_datetime_filter_picks_one_year(daymet):
    items, _ = daymet
    ds = lazyraster.load(items, bands=["tmin"], datetime="2021-06")
    assert ds.sizes["time"] == 365
    assert str(ds.time.values[0])[:10] == "2021-01-01"


def test_netcdf_bbox_clips_in_lonlat(daymet):
    items, _ = daymet
    full = lazyraster.load(items, bands=["tmax"])
    lon, lat = float(full.lon[2, 3]), float(full.lat[2, 3])
    clipped = lazyraster.load(
        items, bands=["tmax"], bbox=[lon - 0.001, lat - 0.001, lon + 0.001, lat + 0.001]
    )
    assert 1 <= clipped.sizes["x"] < 8 and 1 <= clipped.sizes["y"] < 6
    np.testing.assert_array_equal(
        clipped.tmax.sel(x=full.x[3], y=full.y[2]).values, full.tmax[:, 2, 3].values
    )


def test_netcdf_refuses_reprojection_with_advice(daymet):
    items, _ = daymet
    with pytest.raises(ValueError, match="own grid"):
        lazyraster.load(items, bands=["tmin"], crs=4326)


def test_mixed_raster_and_netcdf_assets_are_refused(daymet, tmp_path):
    items, _ = daymet
    item = items[0].clone()
    item.add_asset("B04", pystac.Asset(str(tmp_path / "x.tif"), media_type=pystac.MediaType.COG))
    with pytest.raises(ValueError, match="together"):
        lazyraster.load([item], bands=["tmin", "B04"])


@pytest.fixture(scope="module")
def no_grid_mapping(tmp_path_factory):
    """A Daymet-like netCDF without its CF grid mapping, in an item without proj fields."""
    root = tmp_path_factory.mktemp("nogm")
    ds = daymet_like(2021)
    plain = ds[["tmin"]].drop_vars("lambert_conformal_conic", errors="ignore")
    plain["tmin"].attrs.pop("grid_mapping")
    path = root / "tmin_2021.nc"
    plain.to_netcdf(path, engine="h5netcdf")
    item = pystac.Item(
        "nogm_2021",
        geometry={"type": "Point", "coordinates": [-100, 45]},
        bbox=[-101, 44, -99, 46],
        datetime=None,
        properties={
            "start_datetime": "2021-01-01T12:00:00Z",
            "end_datetime": "2021-12-31T12:00:00Z",
        },
    )
    item.add_asset("tmin", pystac.Asset(str(path), media_type="application/x-netcdf"))
    return item, ds, path


def test_netcdf_without_grid_mapping_takes_crs_from_load(no_grid_mapping):
    item, truth, path = no_grid_mapping
    with pytest.raises(lazyraster.errors.MissingCRSError, match=r"tmin_2021\.nc.*pass crs=") as e:
        lazyraster.load([item], bands=["tmin"])
    assert str(path) in str(e.value)  # the whole path of every file of the item
    lcc = CRS.from_cf(DAYMET_LCC)
    ds = lazyraster.load([item], bands=["tmin"], crs=lcc.to_wkt())
    assert CRS(ds.rio.crs.to_wkt()).equals(lcc)
    np.testing.assert_array_equal(ds.tmin.values, truth.tmin.values)
    assert ds.rio.transform().a == 1000.0


@pytest.mark.parametrize(
    "option",
    [
        {"groupby": "solar_day"},
        {"gdal": {"GDAL_CACHEMAX": 64}},
        {"resampling": "bilinear"},
    ],
)
def test_netcdf_refuses_options_it_would_ignore(daymet, option):
    items, _ = daymet
    lazyraster.load(items, bands=["tmin"], fill=np.float32("nan"))  # NaN is what it gives
    (name,) = option
    with pytest.raises(ValueError, match=rf"{name}=.*netCDF/Zarr.*drop {name}="):
        lazyraster.load(items, bands=["tmin"], **option)
