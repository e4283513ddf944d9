"""The Daymet pipeline: netCDF files -> static catalog -> load -> spring index -> Zarr per year."""

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from pyproj import CRS

import lazyraster
from lazyraster.cli import main
from lazyraster.testing import DAYMET_LCC, daymet_like

YEARS = (2019, 2020)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("daymet")
    truth = {}
    for year in YEARS:
        ds = daymet_like(year, shape=(5, 7), seed=3)
        truth[year] = ds
        for variable in ("tmin", "tmax", "dayl"):
            path = root / "files" / f"daymet_v4_daily_na_{variable}_{year}.nc"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds[[variable, "lambert_conformal_conic"]].to_netcdf(path, engine="h5netcdf")
    result = CliRunner().invoke(
        main,
        [
            "catalog", "build", str(root / "files"), "--out", str(root / "catalog"),
            "--collection", "daymet-daily",
            "--pattern", "daymet_v4_daily_{region}_{variable}_{year}.nc",
            "--layout", "${region}",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cube = lazyraster.load(root / "catalog" / "catalog.json", bands=["tmin", "tmax", "dayl"])
    si = cube.geo.spring_index_dataset()
    store = root / "si.zarr"
    for year in si.year.values:
        lazyraster.write_zarr(si.sel(year=year), store, group=str(year))
    return truth, cube, si, store


def test_catalog_items_load_with_one_chunk_per_year(pipeline):
    truth, cube, _, _ = pipeline
    assert cube.tmin.chunks[0] == (365, 365)
    expected = xr.concat([truth[y].tmax for y in YEARS], dim="time")
    np.testing.assert_array_equal(cube.tmax.values, expected.values)
    assert cube.rio.crs == CRS.from_cf(DAYMET_LCC)


def test_zarr_groups_per_year_equal_a_direct_numpy_spring_index(pipeline):
    truth, _, _, store = pipeline
    for year in YEARS:
        direct = lazyraster.spring_index(
            truth[year].tmin, truth[year].tmax, dayl=truth[year].dayl
        )  # numpy, in memory, no catalog
        written = xr.open_zarr(store, group=str(year))
        for var in ("first_leaf", "first_bloom"):
            np.testing.assert_array_equal(
                written[var].values, direct[var].squeeze(drop=True).values
            )
            assert written[var].dtype == np.float32
        assert written.rio.crs == CRS.from_cf(DAYMET_LCC)
        assert np.isfinite(written.first_leaf.sel(plant="average").values).all()


def test_refuses_to_overwrite_a_year_group(pipeline):
    _, _, si, store = pipeline
    with pytest.raises(lazyraster.OutputExistsError):
        lazyraster.write_zarr(si.sel(year=YEARS[0]), store, group=str(YEARS[0]))
