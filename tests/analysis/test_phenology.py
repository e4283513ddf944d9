"""Spring index (SI-x): published ML_SI output, a slow reference, backends, years, laziness."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.strategies import seeds

import lazyraster  # noqa: F401  (registers .geo)
from lazyraster.errors import MissingBandError
from lazyraster.phenology import spring_index, spring_index_dataset
from lazyraster.testing import raise_if_dask_computes, synthetic_raster

SIX = Path(__file__).parents[1] / "data" / "six-stations"

# --------------------------------------------------------------------------- slow reference
# A plain-Python transcription of the published model (Schwartz et al. 2013; Ault et
# al. 2015), one loop per plant and event as in the original code, written without
# looking at the kernel's structure: it recomputes everything for every run.

LEAF = {
    "lilac": (3.306, 13.878, 0.201, 0.153),
    "arnoldred": (4.266, 20.899, 0.000, 0.248),
    "zabelii": (2.802, 21.433, 0.266, 0.000),
}
BLOOM = {"lilac": (-23.934, 0.116), "arnoldred": (-24.825, 0.127), "zabelii": (-11.368, 0.096)}


def ref_hourly(tmax: float, tmin: float, hours: float) -> list[float]:
    temps = [tmin]
    for h in range(1, math.floor(hours) + 1):
        temps.append((tmax - tmin) * math.sin(math.pi / (hours + 4) * h) + tmin)
    sunset = (tmax - tmin) * math.sin(math.pi / (hours + 4) * hours) + tmin
    n = 0
    while len(temps) < 24:
        n += 1
        temps.append(sunset - (sunset - tmin) / math.log(24 - hours) * math.log(n))
    return temps


def ref_gdh(tmax: float, tmin: float, hours: float) -> float:
    total = 0.0
    for t in ref_hourly(tmax, tmin, hours):
        if t - 31 > 0:
            total += t - 31
    return total


def ref_six_daylength(lat: float, day: int) -> float:
    """SI-x day length, ``day`` 0-based from 1 January (the formula counts from 1 March)."""
    sd = day + 307 if day < 60 else day - 59
    if lat < 40:
        length = 12.14 + 3.34 * math.tan(lat * math.pi / 180) * math.cos(0.0172 * sd - 1.95)
    else:
        tan2 = math.tan(lat * math.pi / 180) ** 2
        length = 12.25 + (1.6164 + 1.7643 * tan2) * math.cos(0.0172 * sd - 1.95)
    return min(max(length, 1), 23)


def ref_leaf(gdh: list[float], plant: str) -> float:
    a, b, c, e = LEAF[plant]
    lag = [0.0] * 7
    synop = 0
    for day, g in enumerate(gdh):
        if day == 0:
            lag[0] = lag[1] = g
        dde2 = g + lag[0] + lag[1]
        dd57 = lag[4] + lag[5] + lag[6]
        if dde2 >= 637:
            synop += 1
        if (a * day) + (b * synop) + (c * dde2) + (e * dd57) >= 999.5:
            return day + (2 if plant == "arnoldred" else 1)
        lag = [g, *lag[:6]]
    return math.nan


def ref_bloom(gdh: list[float], plant: str, leaf_doy: float) -> float:
    if math.isnan(leaf_doy):
        return math.nan
    a, b = BLOOM[plant]
    start = int(leaf_doy) - 1
    agdh = 0.0
    for day in range(start, len(gdh)):
        agdh += gdh[day]
        if (a * (day - start)) + (b * agdh) >= 999.5:
            return day + 1
    return math.nan


def ref_spring_index(tmin_c, tmax_c, hours, max_doy=240):
    """Leaf and bloom (lilac, arnoldred, zabelii, average) of one pixel-year, degrees C."""
    gdh = []
    for day in range(max_doy):
        values = (tmin_c[day], tmax_c[day], hours[day])
        if any(v is None or math.isnan(v) for v in values):
            break  # missing day: the model cannot step over it
        gdh.append(ref_gdh(tmax_c[day] * 1.8 + 32, tmin_c[day] * 1.8 + 32, hours[day]))
    leaf = [ref_leaf(gdh, p) for p in LEAF]
    bloom = [ref_bloom(gdh, p, lf) for p, lf in zip(LEAF, leaf, strict=True)]

    def average(v):
        return math.nan if any(map(math.isnan, v)) else float(round(sum(v) / 3))

    return [*leaf, average(leaf)], [*bloom, average(bloom)]


# --------------------------------------------------------------------------- synthetic data


def daylength_hours(lat: float, doy: np.ndarray) -> np.ndarray:
    """Astronomical day length (Forsythe et al. 1995, CBM model) in hours."""
    theta = 0.2163108 + 2 * np.arctan(0.9671396 * np.tan(0.00860 * (doy - 186)))
    phi = np.arcsin(0.39795 * np.cos(theta))
    p = 0.8333
    x = (np.sin(p * np.pi / 180) + np.sin(lat * np.pi / 180) * np.sin(phi)) / (
        np.cos(lat * np.pi / 180) * np.cos(phi)
    )
    return 24 - 24 / np.pi * np.arccos(np.clip(x, -1, 1))


SCENARIOS = {
    # name: (January mean C, seasonal rise C, daily range C, latitude, cold snap)
    "warm": (6.0, 20.0, 12.0, 35.0, None),
    "cold": (-12.0, 30.0, 10.0, 47.0, None),
    "cold_snap": (2.0, 24.0, 11.0, 41.0, (70, 85, -14.0)),
    "tropical": (26.0, 2.0, 8.0, 18.0, None),
    "boreal": (-30.0, 30.0, 8.0, 66.0, None),
}


def scenario(name: str, year: int = 2021, seed: int = 0, ny: int = 2, nx: int = 3):
    """Daily tmin/tmax (degrees C) and dayl (seconds) for one year on a small grid."""
    mean_jan, rise, spread, lat, snap = SCENARIOS[name]
    time = pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="D")
    doy = np.arange(1, time.size + 1)
    rng = np.random.default_rng(seed)
    mean = mean_jan + rise * (1 - np.cos(2 * np.pi * (doy - 15) / 365)) / 2
    if snap is not None:
        start, stop, delta = snap
        mean[start:stop] += delta
    # pixels differ by a small offset and their own weather noise
    offsets = np.linspace(-1.5, 1.5, ny * nx).reshape(ny, nx)
    noise = rng.normal(0, 3, (time.size, ny, nx))
    tmean = mean[:, None, None] + offsets + noise
    half = spread / 2 + rng.uniform(-2, 2, tmean.shape)
    coords = {"time": time, "y": np.arange(ny) * 1000.0, "x": np.arange(nx) * 1000.0}
    dims = ("time", "y", "x")
    dayl = np.broadcast_to((daylength_hours(lat, doy) * 3600)[:, None, None], tmean.shape)
    ds = xr.Dataset(
        {
            "tmin": (dims, tmean - half, {"units": "degrees C"}),
            "tmax": (dims, tmean + half, {"units": "degrees C"}),
            "dayl": (dims, dayl.copy(), {"units": "s"}),
        },
        coords=coords,
        attrs={"source": f"synthetic {name}"},
    )
    return ds.rio.write_crs("EPSG:3857")


def reference_for(ds: xr.Dataset, max_doy: int = 240):
    """Run the slow reference on every pixel of a one-year Dataset (dayl path)."""
    doy = ds.time.dt.dayofyear.values
    leaf = np.full((4, ds.sizes["y"], ds.sizes["x"]), np.nan)
    bloom = np.full_like(leaf, np.nan)
    for j in range(ds.sizes["y"]):
        for i in range(ds.sizes["x"]):
            series = {}
            for v in ("tmin", "tmax", "dayl"):
                full = [math.nan] * max_doy
                for k, d in enumerate(doy):
                    if d <= max_doy:
                        full[d - 1] = float(ds[v].values[k, j, i])
                series[v] = full
            hours = [min(max(s / 3600, 1), 23) for s in series["dayl"]]
            lf, bl = ref_spring_index(series["tmin"], series["tmax"], hours, max_doy)
            leaf[:, j, i] = lf
            bloom[:, j, i] = bl
    return leaf, bloom


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(actual, expected.astype(np.float32))


# --------------------------------------------------------------------------- ML_SI exact


def six_station_cube():
    """The six stations as (time, station) DataArrays in degrees F, days 1-240 of 1850-2050."""
    tmin = np.loadtxt(SIX / "tmin.csv", delimiter=",").reshape(201, 6, 366)[:, :, :240]
    tmax = np.loadtxt(SIX / "tmax.csv", delimiter=",").reshape(201, 6, 366)[:, :, :240]
    lat = np.loadtxt(SIX / "lat.csv", delimiter=",")
    years = np.arange(1850, 2051)
    # Column d is day of year d + 1, so 29 February is day 60 of a leap year, as in pandas.
    time = np.concatenate(
        [pd.Timestamp(f"{y}-01-01") + pd.to_timedelta(np.arange(240), "D") for y in years]
    )

    def cube(a):
        values = a.transpose(0, 2, 1).reshape(-1, 6)
        return xr.DataArray(
            values, dims=("time", "station"), coords={"time": time}, attrs={"units": "degF"}
        )

    expected = {
        event: np.stack(
            [np.loadtxt(SIX / "ml_si_output" / f"station_{s}_{event}.csv") for s in range(1, 7)],
            axis=1,
        )
        for event in ("leaf", "bloom")
    }
    return cube(tmin), cube(tmax), xr.DataArray(lat, dims="station"), years, expected


@pytest.fixture(scope="module")
def six_stations():
    return six_station_cube()


@pytest.mark.parametrize("units", ["degF", "degC"])
def test_ml_si_reproduces_published_output_for_all_station_years(six_stations, units):
    tmin, tmax, lat, years, expected = six_stations
    if units == "degC":  # the Daymet path: Celsius in, converted back to F inside
        tmin = ((tmin - 32) * 5 / 9).assign_attrs(units="degC")
        tmax = ((tmax - 32) * 5 / 9).assign_attrs(units="degC")
    out = spring_index(tmin, tmax, lat=lat, convention="ml_si")
    assert out.first_leaf.dims == ("plant", "year", "station")
    np.testing.assert_array_equal(out.year, years)
    assert int(np.isfinite(expected["leaf"]).sum()) == 692
    for event in ("leaf", "bloom"):
        got = out[f"first_{event}"].sel(plant="average").values
        np.testing.assert_array_equal(got, expected[event], err_msg=f"{event} ({units})")


def test_ml_si_on_dask_equals_numpy(six_stations):
    tmin, tmax, lat, _, expected = six_stations
    lazy = spring_index(
        tmin.chunk({"station": (1, 3, 2)}),
        tmax.chunk({"station": (4, 2)}),
        lat=lat,
        convention="ml_si",
    )
    assert isinstance(lazy.first_bloom.data, dsa.Array)
    got = lazy.first_bloom.sel(plant="average").values
    np.testing.assert_array_equal(got, expected["bloom"])


def test_ml_si_quirks_matter(six_stations):
    """The straightforward model differs from ML_SI on real data: the quirks are real."""
    tmin, tmax, lat, _, expected = six_stations
    six = spring_index(tmin, tmax, lat=lat, convention="six")
    got = six.first_leaf.sel(plant="average").values
    both = np.isfinite(got) & np.isfinite(expected["leaf"])
    assert both.sum() > 550  # years with gaps are NaN in "six"
    assert (got[both] != expected["leaf"][both]).sum() > 0
    assert np.abs(got[both] - expected["leaf"][both]).mean() < 5


# --------------------------------------------------------------------------- default model


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_six_matches_slow_reference(name):
    ds = scenario(name)
    out = spring_index(ds.tmin, ds.tmax, dayl=ds.dayl)
    leaf, bloom = reference_for(ds)
    assert_same(out.first_leaf.values, leaf)
    assert_same(out.first_bloom.values, bloom)


def test_scenarios_cover_the_intended_cases():
    early = spring_index_dataset(scenario("tropical")).first_leaf
    assert float(early.min()) <= 7  # triggers in the first week
    boreal = spring_index_dataset(scenario("boreal")).first_leaf
    assert np.isnan(boreal.sel(plant="lilac")).any()  # some plants never leaf...
    assert np.isfinite(boreal.sel(plant="arnoldred")).all()  # ...while others do
    assert np.isnan(boreal.sel(plant="average")).any()
    assert np.isfinite(boreal.sel(plant="average")).any()
    warm = spring_index_dataset(scenario("warm")).first_leaf.sel(plant="average")
    cold = spring_index_dataset(scenario("cold")).first_leaf.sel(plant="average")
    assert float(warm.max()) < float(cold.min())
    snap = spring_index_dataset(scenario("cold_snap"))
    assert np.isfinite(snap.first_bloom).all()


def test_latitude_path_matches_reference():
    ds = scenario("cold_snap", ny=1, nx=2)
    lat = xr.DataArray([[38.5, 44.0]], dims=("y", "x"))  # a 2-D field, both formula branches
    out = spring_index(ds.tmin, ds.tmax, lat=lat)
    for i, la in enumerate((38.5, 44.0)):
        hours = [ref_six_daylength(la, d) for d in range(240)]
        lf, bl = ref_spring_index(
            list(ds.tmin.values[:240, 0, i]), list(ds.tmax.values[:240, 0, i]), hours
        )
        assert_same(out.first_leaf.values[:, 0, i], np.array(lf))
        assert_same(out.first_bloom.values[:, 0, i], np.array(bl))


def test_latitude_field_equals_pixel_by_pixel_with_a_gap():
    ds = scenario("cold_snap", ny=2, nx=2, seed=5)
    ds = ds.isel(time=np.arange(ds.sizes["time"]) != 150)  # day 151 absent
    lat = xr.DataArray([[45.0, 45.0], [39.0, 45.0]], dims=("y", "x"))
    out = spring_index(ds.tmin, ds.tmax, lat=lat)
    for j in range(2):
        for i in range(2):
            one = spring_index(ds.tmin.isel(y=j, x=i), ds.tmax.isel(y=j, x=i), lat=float(lat[j, i]))
            xr.testing.assert_equal(out.isel(y=j, x=i), one)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=seeds,
    mean_jan=st.floats(-20, 25),
    rise=st.floats(0, 30),
    lat=st.floats(20, 60),
)
def test_six_matches_reference_on_random_weather(seed, mean_jan, rise, lat):
    rng = np.random.default_rng(seed)
    n = 240
    doy = np.arange(1, n + 1)
    mean = mean_jan + rise * (1 - np.cos(2 * np.pi * (doy - 15) / 365)) / 2
    tmean = mean + np.cumsum(rng.normal(0, 1.5, n))  # persistent anomalies: warm/cold spells
    spread = rng.uniform(0, 15, n)
    time = pd.date_range("2019-01-01", periods=n, freq="D")
    tmin = xr.DataArray(tmean - spread / 2, dims="time", coords={"time": time})
    tmax = xr.DataArray(tmean + spread / 2, dims="time", coords={"time": time})
    dayl = xr.DataArray(daylength_hours(lat, doy) * 3600, dims="time", coords={"time": time})
    out = spring_index(tmin, tmax, dayl=dayl)
    hours = [min(max(s / 3600, 1), 23) for s in dayl.values]
    lf, bl = ref_spring_index(list(tmin.values), list(tmax.values), hours)
    assert_same(out.first_leaf.values, np.array(lf))
    assert_same(out.first_bloom.values, np.array(bl))


def test_missing_day_policy_six():
    ds = scenario("warm", nx=1, ny=1)
    full = spring_index_dataset(ds)
    lilac_leaf = int(full.first_leaf.sel(plant="lilac").item())
    # A NaN after the leaf keeps the leaf but stops bloom; dropping the day does the same.
    gap_day = lilac_leaf + 3
    nan_ds = ds.copy(deep=True)
    nan_ds["tmax"][gap_day - 1] = np.nan
    dropped = ds.isel(time=np.arange(ds.sizes["time"]) != gap_day - 1)
    leaf, bloom = reference_for(nan_ds)
    for variant in (nan_ds, dropped):
        out = spring_index_dataset(variant)
        assert_same(out.first_leaf.values, leaf)
        assert_same(out.first_bloom.values, bloom)
    assert out.first_leaf.sel(plant="lilac").item() == lilac_leaf
    assert np.isnan(out.first_bloom.sel(plant="average")).all()


def test_max_doy_and_selection():
    ds = scenario("cold", nx=2, ny=1)
    full = spring_index_dataset(ds)
    late = float(full.first_bloom.sel(plant="average").max())
    short = spring_index_dataset(ds, max_doy=int(late) - 1)
    assert np.isnan(short.first_bloom.sel(plant="average")).any()
    only = spring_index_dataset(ds, plants=["zabelii"], events=["leaf"])
    assert list(only.data_vars) == ["first_leaf"]
    assert list(only.plant.values) == ["zabelii", "average"]
    xr.testing.assert_equal(only.first_leaf, full.first_leaf.sel(plant=["zabelii", "average"]))


# --------------------------------------------------------------------------- xarray behaviour


def test_numpy_equals_dask(backend):
    ds = scenario("cold_snap", ny=5, nx=7, seed=3)
    expected = spring_index_dataset(ds)
    converted = backend(ds)
    if backend.name == "dask":
        converted = converted.chunk({"time": -1})
    out = spring_index_dataset(converted)
    assert out.first_leaf.dtype == np.float32
    xr.testing.assert_identical(out.compute(), expected)


@settings(max_examples=8, deadline=None)
@given(cy=st.integers(1, 5), cx=st.integers(1, 7))
def test_dask_chunkings_agree(cy, cx):
    ds = scenario("warm", ny=5, nx=7, seed=1)
    expected = spring_index_dataset(ds)
    out = spring_index_dataset(ds.chunk({"time": -1, "y": cy, "x": cx}))
    xr.testing.assert_identical(out.compute(), expected)


def test_lazy_and_dtype_truthful():
    ds = scenario("warm", ny=4, nx=5).chunk({"time": -1, "y": 3, "x": 2})
    with raise_if_dask_computes():
        out = ds.geo.spring_index_dataset()
    assert isinstance(out.first_leaf.data, dsa.Array)
    assert out.first_leaf.dtype == np.float32
    assert out.first_leaf.compute().dtype == np.float32
    assert out.first_leaf.data.chunks[1:] == ((3, 1), (2, 2, 1))


def test_multi_year_equals_year_by_year():
    years = [scenario("cold_snap", year=y, seed=y) for y in (2019, 2020, 2021)]
    multi = xr.concat(years, dim="time")
    out = spring_index_dataset(multi)
    assert out.first_leaf.dims == ("plant", "year", "y", "x")
    for y, ds in zip((2019, 2020, 2021), years, strict=True):
        single = spring_index_dataset(ds)
        xr.testing.assert_identical(out.sel(year=y), single)
    # on dask with one chunk per year: no warning, same values
    sizes = tuple(d.sizes["time"] for d in years)
    lazy = multi.chunk({"time": sizes, "y": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = spring_index_dataset(lazy)
    xr.testing.assert_identical(got.compute(), out)


def test_leap_year_day_of_year():
    """Days sit at their calendar day of year: 29 February shifts March by one in 2020."""
    ds = scenario("warm", year=2020, nx=1, ny=1)
    assert ds.sizes["time"] == 366
    leaf, bloom = reference_for(ds)  # places values by dayofyear, as documented
    out = spring_index_dataset(ds)
    assert_same(out.first_leaf.values, leaf)
    assert_same(out.first_bloom.values, bloom)
    # Daymet drops 31 December in leap years: nothing changes before max_doy.
    daymet = ds.isel(time=slice(0, 365))
    xr.testing.assert_identical(spring_index_dataset(daymet), out)


def test_rechunks_time_to_one_chunk_per_year_with_warning():
    years = [scenario("warm", year=y, seed=y, nx=2, ny=2) for y in (2020, 2021)]
    multi = xr.concat(years, dim="time")
    expected = spring_index_dataset(multi)
    bad = multi.chunk({"time": 100})
    with pytest.warns(UserWarning, match="each year must be one chunk"):
        out = spring_index_dataset(bad)
    xr.testing.assert_identical(out.compute(), expected)


def test_accessor_keeps_coords_and_attrs():
    ds = scenario("warm")
    out = ds.geo.spring_index_dataset()
    xr.testing.assert_identical(out, spring_index_dataset(ds))
    assert out.rio.crs == ds.rio.crs
    assert out.attrs["source"] == "synthetic warm"
    assert out.attrs["convention"] == "six"
    np.testing.assert_array_equal(out.x, ds.x)
    assert out.first_leaf.attrs["units"] == "day of year"


def test_dataset_falls_back_to_latitude():
    ds = scenario("warm", nx=2, ny=1).drop_vars("dayl")
    ds = ds.assign_coords(lat=(("y", "x"), [[35.0, 41.0]]))
    out = ds.geo.spring_index_dataset()
    xr.testing.assert_identical(
        out, spring_index(ds.tmin, ds.tmax, lat=ds["lat"]).assign_attrs(out.attrs)
    )
    with pytest.raises(MissingBandError, match="day-length"):
        ds.drop_vars("lat").geo.spring_index_dataset()


def test_synthetic_raster_input_is_rejected_without_time():
    da = synthetic_raster((3, 4))
    with pytest.raises(ValueError, match="'time' dimension"):
        spring_index(da, da, lat=40.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of dayl"),
        ({"lat": 40.0, "use_dayl": True}, "exactly one of dayl"),
        ({"lat": 40.0, "plants": ["oak"]}, "plants must be"),
        ({"lat": 40.0, "events": ["fall"]}, "events must be"),
        ({"lat": 40.0, "convention": "npn"}, "convention must be"),
        ({"use_dayl": True, "convention": "ml_si"}, "pass lat="),
        ({"lat": 40.0, "convention": "ml_si", "max_doy": 200}, "multiple of 30"),
        ({"lat": 40.0, "max_doy": 0}, "max_doy"),
        ({"lat": 40.0, "tmin_units": "K"}, "degF"),
    ],
)
def test_errors_name_the_fix(kwargs, match):
    ds = scenario("warm", nx=1, ny=1)
    tmin = ds.tmin.assign_attrs(units=kwargs.pop("tmin_units", "degC"))
    if kwargs.pop("use_dayl", False):
        kwargs["dayl"] = ds.dayl
    with pytest.raises(ValueError, match=match):
        spring_index(tmin, ds.tmax, **kwargs)


def test_unsorted_time_is_rejected():
    ds = scenario("warm", nx=1, ny=1).isel(time=[1, 0, 2, 3])
    with pytest.raises(ValueError, match="sortby"):
        spring_index(ds.tmin, ds.tmax, dayl=ds.dayl)


def test_mismatched_time_axes():
    ds = scenario("warm", nx=1, ny=1)
    with pytest.raises(ValueError, match="same time coordinate"):
        spring_index(ds.tmin, ds.tmax.isel(time=slice(1, None)), lat=40.0)
