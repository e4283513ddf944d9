# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Spring indices from Daymet netCDF files
#
# The course pipeline, done with lazyraster: a static STAC catalog over Daymet-like
# netCDF files (one file per variable, region and year), loaded lazily with one chunk
# per year, the Extended Spring Indices (first leaf, first bloom) per pixel and year,
# and a Zarr store with one group per year.
#
# The files here are small synthetic stand-ins written into a temporary folder (Daymet
# itself is not bundled); point `DAYMET` at a real Daymet folder to run it on real
# data. The last section runs the model on the daily temperatures of six real weather
# stations, whose spring indices the ML_SI toolbox has published.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

import lazyraster
from lazyraster.testing import daymet_like

work = Path(os.environ.get("LAZYRASTER_WORK", tempfile.mkdtemp(prefix="daymet-")))
DAYMET = work / "daymet"
for year in (2020, 2021):
    ds = daymet_like(year, shape=(12, 16))
    for variable in ("tmin", "tmax", "dayl"):
        path = DAYMET / f"daymet_v4_daily_na_{variable}_{year}.nc"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds[[variable, "lambert_conformal_conic"]].to_netcdf(path, engine="h5netcdf")
sorted(p.name for p in DAYMET.iterdir())

# %% [markdown]
# ## A static catalog: one item per region and year, one asset per variable

# %%
report = lazyraster.build_catalog(
    [DAYMET],
    work / "catalog",
    collection="daymet-daily",
    pattern="daymet_v4_daily_{region}_{variable}_{year}.nc",
    layout="${region}",
)
print(lazyraster.catalog.format_description(lazyraster.describe_catalog(work / "catalog")))

# %% [markdown]
# ## Load lazily: tmin, tmax and day length, one chunk per year along time

# %%
cube = lazyraster.load(work / "catalog" / "catalog.json", bands=["tmin", "tmax", "dayl"])
print(cube.tmin.chunks[0], cube.rio.crs.to_wkt()[:60], "...")
cube

# %% [markdown]
# ## Spring indices per pixel and year (still lazy)

# %%
si = cube.geo.spring_index_dataset()
si

# %% [markdown]
# ## One Zarr group per year

# %%
store = work / "spring_index.zarr"
for year in si.year.values:
    lazyraster.write_zarr(si.sel(year=year), store, group=str(year))
leaf_2021 = xr.open_zarr(store, group="2021").first_leaf.sel(plant="average").load()
print(f"2021 average first leaf: day {float(leaf_2021.median()):.0f} (median over pixels)")
assert np.isfinite(leaf_2021.values).all()

# %% [markdown]
# ## The model on six real stations
#
# Daily minimum and maximum temperatures (degrees F) of six GHCN-Daily stations in the
# United States, 1850-2050 (data in 1890-2014), as the USA National Phenology Network
# archived them together with the output of the ML_SI toolbox (Ault et al. 2015): see
# `tests/data/six-stations/PROVENANCE.md`. With `convention="ml_si"` the model follows
# that toolbox, day length from latitude; the average first leaf and first bloom per
# station and year can be set beside its published values.

# %%
import pandas as pd

STATIONS = Path(os.environ.get("LAZYRASTER_STATIONS", "tests/data/six-stations"))
years = np.arange(1850, 2051)
days = 240  # the model looks no further than day 240


def station_series(name: str) -> xr.DataArray:
    """Column s*366 + d of the file is station s on day of year d + 1 (29 Feb is day 60)."""
    table = np.loadtxt(STATIONS / f"{name}.csv", delimiter=",").reshape(201, 6, 366)
    values = table[:, :, :days].transpose(0, 2, 1).reshape(-1, 6)
    time = np.concatenate(
        [pd.Timestamp(f"{y}-01-01") + pd.to_timedelta(np.arange(days), "D") for y in years]
    )
    return xr.DataArray(
        values, dims=("time", "station"), coords={"time": time}, attrs={"units": "degF"}
    )


stations = lazyraster.spring_index(
    station_series("tmin"),
    station_series("tmax"),
    lat=xr.DataArray(np.loadtxt(STATIONS / "lat.csv", delimiter=","), dims="station"),
    convention="ml_si",
)
station_leaf = stations.first_leaf.sel(plant="average")
print(f"station-years with a first leaf: {int(station_leaf.notnull().sum())}")
station_leaf.sel(year=slice(2000, 2005)).to_pandas()
