"""Spring index (SI-x) on a Daymet-like year: lazyraster against the broadcast-hours formulation.

Input: one year (365 days) of Daymet-like ``tmin``, ``tmax`` (float32, degrees C) and
``dayl`` (float32, seconds) on a ``size`` x ``size`` grid, generated from a fixed seed
(seasonal cycle by latitude, a smooth spatial field and daily weather noise) and
written once to a Zarr store in a temporary folder, chunked like a Daymet year
(time 365, y and x 250). Every case opens the store and computes from it.

- ``read the inputs`` (floor): read and decompress days 1-240 of the three variables
  (a sum per chunk), nothing else.
- ``xarray broadcast-hours`` (baseline): the straightforward xarray formulation of the
  course notebook, first leaf of the three plants: 24 hourly temperatures on a
  broadcast ``hour`` dimension, GDH summed over it, then rolling sums for DDE2 and
  DD57, a cumulative count for SYNOP and the first day over the threshold. Its
  (time, 24, y, x) temporaries need the spatial chunks cut to 50 x 50 to fit in
  memory at all; it computes leaf only (no bloom).
- ``lazyraster.spring_index`` (leaf only, and leaf + bloom): ``ds.geo.spring_index_dataset()``.

All cases use dask's threaded scheduler on the cores available.

At the default size (1000) the baseline peaks at about 8.5 GiB (cutting the 250-pixel
Zarr chunks into 50-pixel ones keeps whole decompressed chunks alive) and takes a few
minutes: run it on a machine with 12 GiB or more free, or at ``--size 500``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

import lazyraster  # noqa: F401  (registers .geo)
from harness import Case

DEFAULT_SIZE = 1000
CHUNK = 250
BASELINE_CHUNK = 50
MAX_DOY = 240
LEAF = {
    "lilac": (3.306, 13.878, 0.201, 0.153),
    "arnoldred": (4.266, 20.899, 0.000, 0.248),
    "zabelii": (2.802, 21.433, 0.266, 0.000),
}


def _daylength_seconds(lat: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """Astronomical day length (Forsythe et al. 1995) in seconds, broadcasting."""
    theta = 0.2163108 + 2 * np.arctan(0.9671396 * np.tan(0.00860 * (doy - 186)))
    phi = np.arcsin(0.39795 * np.cos(theta))
    x = (np.sin(0.8333 * np.pi / 180) + np.sin(lat * np.pi / 180) * np.sin(phi)) / (
        np.cos(lat * np.pi / 180) * np.cos(phi)
    )
    return (24 - 24 / np.pi * np.arccos(np.clip(x, -1, 1))) * 3600


def _block(kind: str, size: int, seed: int, block_info=None) -> np.ndarray:
    """One (time, y, x) block of a Daymet-like variable, reproducible per block."""
    (t0, t1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    doy = np.arange(t0, t1, dtype=np.float64)[:, None, None] + 1
    y = np.arange(y0, y1, dtype=np.float64)[None, :, None]
    x = np.arange(x0, x1, dtype=np.float64)[None, None, :]
    lat = 30 + 20 * y / size  # 30 N in the first row to 50 N in the last
    if kind == "dayl":
        return np.broadcast_to(_daylength_seconds(lat, doy), (t1 - t0, y1 - y0, x1 - x0)).astype(
            np.float32
        )
    rng = np.random.default_rng([seed, t0, y0, x0])
    jan = 12 - 0.9 * (lat - 30) + 3 * np.sin(x / 97.0) * np.cos(y / 131.0)
    mean = jan + (14 + 0.25 * (lat - 30)) * (1 - np.cos(2 * np.pi * (doy - 20) / 365))
    weather = rng.normal(0, 3, (t1 - t0, y1 - y0, x1 - x0))
    half = 6 + 1.5 * np.sin(doy / 9.0)
    sign = -1 if kind == "tmin" else 1
    return (mean + weather + sign * half).astype(np.float32)


def make_store(size: int, path: Path, seed: int = 0) -> None:
    """Write the Daymet-like year to a Zarr store, chunk by chunk."""
    shape = (365, size, size)
    chunks = (365, min(CHUNK, size), min(CHUNK, size))
    time = pd.date_range("2021-01-01", periods=365, freq="D")
    variables = {}
    for kind, units in (("tmin", "degC"), ("tmax", "degC"), ("dayl", "s")):
        data = dsa.map_blocks(
            _block,
            kind,
            size,
            seed,
            chunks=dsa.core.normalize_chunks(chunks, shape),
            dtype=np.float32,
        )
        variables[kind] = (("time", "y", "x"), data, {"units": units})
    ds = xr.Dataset(
        variables,
        coords={"time": time, "y": np.arange(size) * 1000.0, "x": np.arange(size) * 1000.0},
    )
    with dask.config.set(scheduler="threads"):
        ds.to_zarr(path, mode="w", consolidated=False)


def broadcast_hours_leaf(ds: xr.Dataset) -> xr.Dataset:
    """First leaf of the three plants, the straightforward vectorized xarray way."""
    ds = ds.isel(time=slice(0, MAX_DOY))
    tmin = ds.tmin.astype(np.float64) * 1.8 + 32
    tmax = ds.tmax.astype(np.float64) * 1.8 + 32
    length = (ds.dayl.astype(np.float64) / 3600).clip(1, 23)
    hour = xr.DataArray(np.arange(24.0), dims="hour")
    day_hours = np.floor(length)
    dt = tmax - tmin
    rise = dt * np.sin(np.pi / (length + 4) * hour) + tmin
    sunset = dt * np.sin(np.pi / (length + 4) * length) + tmin
    night = sunset - (sunset - tmin) / np.log(24 - length) * np.log((hour - day_hours).clip(min=1))
    temps = xr.where(hour == 0, tmin, xr.where(hour <= day_hours, rise, night))
    gdh = (temps - 31).clip(min=0).sum("hour")
    # Before 1 January the two previous days count as 1 January, earlier days as zero.
    first = gdh.isel(time=[0, 0])
    padded = xr.concat([first, gdh], dim="time")
    dde2 = padded.rolling(time=3).sum().isel(time=slice(2, None))
    dd57 = sum(padded.shift(time=k, fill_value=0).isel(time=slice(2, None)) for k in (5, 6, 7))
    synop = (dde2 >= 637).cumsum("time")
    mds0 = xr.DataArray(np.arange(gdh.sizes["time"], dtype=np.float64), dims="time")
    out = {}
    for plant, (a, b, c, e) in LEAF.items():
        reached = (a * mds0) + (b * synop) + (c * dde2) + (e * dd57) >= 999.5
        day = reached.argmax("time") + (2 if plant == "arnoldred" else 1)
        out[plant] = day.where(reached.any("time")).astype(np.float32)
    return xr.Dataset(out)


def _check_baseline(path: Path) -> None:
    """The baseline computes the same model: compare with lazyraster on a corner."""
    corner = xr.open_zarr(path, consolidated=False).isel(y=slice(0, 20), x=slice(0, 20)).load()
    expected = corner.geo.spring_index_dataset(events=["leaf"]).first_leaf
    got = broadcast_hours_leaf(corner)
    for plant in LEAF:
        np.testing.assert_array_equal(got[plant].values, expected.sel(plant=plant).values)


def setup(size: int) -> list[Case]:
    folder = Path(tempfile.mkdtemp(prefix="bench_spring_index_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "daymet_like.zarr"
    make_store(size, path)
    _check_baseline(path)

    def read_inputs() -> None:
        ds = xr.open_zarr(path, consolidated=False).isel(time=slice(0, MAX_DOY))
        with dask.config.set(scheduler="threads"):
            dask.compute(*(ds[v].data.sum(axis=0) for v in ("tmin", "tmax", "dayl")))

    def baseline() -> None:
        bc = min(BASELINE_CHUNK, size)
        ds = xr.open_zarr(path, consolidated=False).chunk({"y": bc, "x": bc})
        with dask.config.set(scheduler="threads"):
            broadcast_hours_leaf(ds).compute()

    def ours(events: tuple[str, ...]) -> None:
        ds = xr.open_zarr(path, consolidated=False)
        with dask.config.set(scheduler="threads"):
            ds.geo.spring_index_dataset(events=events).compute()

    return [
        Case("read the inputs (floor)", read_inputs),
        Case(f"xarray broadcast-hours, leaf, {BASELINE_CHUNK}px chunks", baseline, baseline=True),
        Case("lazyraster.spring_index, leaf", lambda: ours(("leaf",))),
        Case("lazyraster.spring_index, leaf + bloom", lambda: ours(("leaf", "bloom"))),
    ]
