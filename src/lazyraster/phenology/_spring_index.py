"""The xarray layer: units, choices, one chunk per year, and :func:`spring_index` itself."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from lazyraster.phenology._kernels import _BLOCK, _CONVENTIONS, _EVENTS, PLANTS, _kernel_block

# --------------------------------------------------------------------------- xarray layer

_CELSIUS = {"c", "celsius", "degc", "degreesc", "degreec", "degree_celsius", "degrees_celsius"}
_FAHRENHEIT = {"f", "fahrenheit", "degf", "degreesf", "degreef", "degree_fahrenheit"}


def _to_fahrenheit(da: xr.DataArray, name: str) -> tuple[float, float]:
    """Return ``(scale, offset)`` turning ``da`` into degrees F, from its ``units`` attribute."""
    raw = str(da.attrs.get("units", "degC"))
    key = raw.strip().lower().replace("°", "").replace(" ", "").replace("deg.", "deg")
    if key in _CELSIUS:
        return 1.8, 32.0
    if key in _FAHRENHEIT:
        return 1.0, 0.0
    raise ValueError(
        f"{name} has units {raw!r}; spring_index reads degrees C (units 'degC', the "
        "default when the attribute is absent) or degrees F (units 'degF'). Convert it, "
        f"or set {name}.attrs['units'] to one of those."
    )


def _dayl_to_hours(da: xr.DataArray) -> float:
    """Factor turning ``dayl`` into hours: Daymet gives seconds (``units: s``)."""
    raw = str(da.attrs.get("units", "s")).strip().lower()
    if raw in {"s", "sec", "second", "seconds"}:
        return 1 / 3600
    if raw in {"h", "hr", "hour", "hours"}:
        return 1.0
    raise ValueError(
        f"dayl has units {raw!r}; pass day length in seconds (units 's', as Daymet does) "
        "or hours (units 'h')."
    )


def _check_choice(values: Sequence[str] | str, allowed: Sequence[str], what: str) -> list[str]:
    items = [values] if isinstance(values, str) else list(values)
    bad = [v for v in items if v not in allowed]
    if bad or not items or len(set(items)) != len(items):
        raise ValueError(
            f"{what} must be distinct names among {', '.join(map(repr, allowed))}; got {items!r}."
        )
    return items


def _year_runs(time: xr.DataArray, max_doy: int) -> list[tuple[int, int, int, int]]:
    """(year, start, stop of days 1..max_doy, stop of the year) along a sorted time axis."""
    years = np.asarray(time.dt.year.values)
    doy = np.asarray(time.dt.dayofyear.values)
    edges = np.flatnonzero(np.diff(years)) + 1
    starts = np.concatenate([[0], edges]).astype(int)
    stops = np.concatenate([edges, [years.size]]).astype(int)
    runs = []
    for a, b in zip(starts, stops, strict=True):
        # days increase within a year, so days 1..max_doy are a prefix of its run
        kept = a + int(np.count_nonzero(doy[a:b] <= max_doy))
        if kept > a:
            runs.append((int(years[a]), int(a), kept, int(b)))
    return runs


def _one_chunk_per_year(
    da: xr.DataArray, runs: list[tuple[int, int, int, int]], name: str
) -> xr.DataArray:
    """Rechunk ``da`` along time so that each year's modelled days lie in one chunk."""
    if da.chunks is None:
        return da
    chunks = da.chunks[da.get_axis_num("time")]
    bounds = np.cumsum((0, *chunks))
    for _, start, kept, _ in runs:
        k = np.searchsorted(bounds, start, side="right") - 1
        if kept > bounds[k + 1]:
            break
    else:
        return da
    # Split at each year's start and after its day max_doy: the rest is never read.
    cuts = sorted({0, da.sizes["time"], *(c for _, a, k, b in runs for c in (a, k, b))})
    sizes = tuple(int(b - a) for a, b in itertools.pairwise(cuts))
    warnings.warn(
        f"spring_index: {name} is chunked {chunks[:4]}{'...' if len(chunks) > 4 else ''} "
        "along time, but each year must be one chunk (the model walks each pixel's "
        f"year in order); rechunking to time={sizes[:4]}{'...' if len(sizes) > 4 else ''}. "
        "Load with one time chunk per year to avoid this.",
        UserWarning,
        stacklevel=3,
    )
    return da.chunk({"time": sizes})


def spring_index(
    tmin: xr.DataArray,
    tmax: xr.DataArray,
    *,
    dayl: xr.DataArray | None = None,
    lat: xr.DataArray | float | None = None,
    plants: Sequence[str] = PLANTS,
    events: Sequence[str] = _EVENTS,
    max_doy: int = 240,
    convention: Literal["six", "ml_si"] = "six",
) -> xr.Dataset:
    """Compute the Extended Spring Indices: first-leaf and first-bloom day of year.

    The model and its conventions are described in :mod:`lazyraster.phenology`.
    Lazy on dask-backed inputs (one numba call per chunk, memory proportional to the
    chunk), eager on numpy-backed ones.

    Parameters
    ----------
    tmin, tmax : xarray.DataArray
        Daily minimum and maximum temperature with a datetime ``time`` dimension and
        any other (spatial) dimensions. Degrees C, or degrees F when their ``units``
        attribute says so (``"degF"``); a Fahrenheit record passed as F is used
        without any conversion round-off. On dask, each calendar year must be one
        chunk along time: other chunkings are rechunked, with a warning.
    dayl : xarray.DataArray, optional, keyword-only
        Day length in seconds (Daymet ``dayl``; ``units: "h"`` for hours), on the
        same time axis. Clipped to [1, 23] hours.
    lat : xarray.DataArray or float, optional, keyword-only
        Latitude in degrees north, used when ``dayl`` is not given: day length then
        comes from the SI-x formula. A scalar, or a DataArray over the spatial dims
        (a 2-D field for projected grids). Exactly one of ``dayl`` and ``lat``.
    plants : sequence of str, keyword-only
        Plants to report among ``"lilac"``, ``"arnoldred"``, ``"zabelii"``. The
        ``"average"`` of all three is always reported as well.
    events : sequence of str, keyword-only
        ``"leaf"`` and/or ``"bloom"``.
    max_doy : int, keyword-only
        Last day of year modelled; events not reached by then are NaN (Arnold Red's
        leaf, reported a day after its threshold, can be ``max_doy + 1``).
    convention : {"six", "ml_si"}, keyword-only
        ``"six"``: the SI-x model as published. ``"ml_si"``: reproduce the ML_SI
        toolbox exactly (needs ``lat``; ``max_doy`` a multiple of 30).

    Returns
    -------
    xarray.Dataset
        ``first_leaf`` and/or ``first_bloom``, float32 day of year (1 = 1 January),
        NaN where not reached, over ``(plant, [year,] ...)``: ``plant`` holds the
        chosen plants and ``"average"``; ``year`` appears when the time axis spans
        several years (otherwise ``year`` is a scalar coordinate). Non-time
        coordinates (``spatial_ref`` included) are kept.

    Raises
    ------
    ValueError
        For a missing ``time`` dimension, mismatched time axes, both or neither of
        ``dayl`` and ``lat``, unknown units, plants, events or conventions.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> time = pd.date_range("2021-01-01", "2021-08-31", freq="D")
    >>> warm = 20 * np.sin(np.pi * (np.arange(time.size) - 15) / 365)  # degrees C
    >>> tmin = xr.DataArray(warm - 5, dims="time", coords={"time": time})
    >>> out = spring_index(tmin, tmin + 10, lat=40.0)
    >>> out.first_leaf.sel(plant="average").item(), out.first_bloom.sel(plant="lilac").item()
    (70.0, 99.0)
    """
    if convention not in _CONVENTIONS:
        raise ValueError(f"convention must be 'six' or 'ml_si', not {convention!r}.")
    plant_list = _check_choice(plants, PLANTS, "plants")
    event_list = _check_choice(events, _EVENTS, "events")
    if not isinstance(max_doy, int | np.integer) or not 1 <= max_doy <= 366:
        raise ValueError(f"max_doy must be an integer in 1..366, not {max_doy!r}.")
    ml_si = convention == "ml_si"
    if ml_si and max_doy % _BLOCK:
        raise ValueError(
            f"convention='ml_si' fills gaps per 30-day block: max_doy must be a multiple "
            f"of 30 (ML_SI uses 240), not {max_doy}."
        )
    for name, da in (("tmin", tmin), ("tmax", tmax), ("dayl", dayl)):
        if da is not None and (not isinstance(da, xr.DataArray) or "time" not in da.dims):
            raise ValueError(
                f"{name} must be an xarray.DataArray with a 'time' dimension; rename the "
                "time dimension or pass the variable itself (e.g. ds['tmin'])."
            )
    if (dayl is None) == (lat is None):
        raise ValueError(
            "Pass exactly one of dayl= (day length in seconds, as Daymet's 'dayl') and "
            "lat= (degrees north; day length from the SI-x formula)."
        )
    if ml_si and lat is None:
        raise ValueError("convention='ml_si' computes day length from latitude: pass lat=.")
    if not np.issubdtype(tmin["time"].dtype, np.datetime64) and tmin["time"].dtype != object:
        raise ValueError("tmin's time coordinate must hold dates (datetime64 or cftime).")

    units = (*_to_fahrenheit(tmin, "tmin"), *_to_fahrenheit(tmax, "tmax"))
    arrays = [tmin, tmax] + ([dayl] if dayl is not None else [])
    try:
        arrays = list(xr.align(*arrays, join="exact", exclude=set(tmin.dims) - {"time"}))
    except ValueError as err:
        raise ValueError(
            "tmin, tmax (and dayl) must share the same time coordinate; select a common "
            f"period first ({err})."
        ) from None
    time = arrays[0]["time"]
    index = time.to_index()
    if not (index.is_monotonic_increasing and index.is_unique):
        raise ValueError(
            "The time coordinate must strictly increase; sort with .sortby('time') and "
            "drop duplicated days."
        )

    # Read only days 1..max_doy of each year.
    runs = _year_runs(time, max_doy)
    if not runs:
        raise ValueError(f"No day of year in 1..{max_doy} on the time axis.")
    names = ("tmin", "tmax", "dayl")
    arrays = [_one_chunk_per_year(a, runs, n) for a, n in zip(arrays, names, strict=False)]

    if dayl is not None:
        third, use_lat, to_hours = arrays[2], False, _dayl_to_hours(dayl)
        third_core: list[Hashable] = ["time"]
    else:
        third = lat if isinstance(lat, xr.DataArray) else xr.DataArray(np.float64(lat))
        if "time" in third.dims:
            raise ValueError("lat must not vary with time; pass it over the spatial dims only.")
        use_lat, to_hours, third_core = True, 1.0, []
    want_bloom = "bloom" in event_list
    doy_all = np.asarray(time.dt.dayofyear.values, dtype=np.int64)

    per_year = []
    for _, start, stop, _ in runs:
        sl = slice(start, stop)
        t_args = [a.isel(time=sl) for a in arrays[:2]]
        third_arg = third.isel(time=sl) if not use_lat else third
        res = xr.apply_ufunc(
            _kernel_block,
            *t_args,
            third_arg,
            input_core_dims=[["time"], ["time"], third_core],
            output_core_dims=[["_column"]],
            dask="parallelized",
            output_dtypes=[np.float32],
            dask_gufunc_kwargs={"output_sizes": {"_column": 8}},
            kwargs={
                "doy": doy_all[sl],
                "ndays": max_doy,
                "use_lat": use_lat,
                "units": units,
                "dayl_to_hours": to_hours,
                "ml_si": ml_si,
                "want_bloom": want_bloom,
            },
        )
        per_year.append(res)
    years = [run[0] for run in runs]
    if len(per_year) == 1:
        columns = per_year[0].assign_coords(year=years[0])
    else:
        columns = xr.concat(per_year, dim=pd.Index(years, name="year"))

    labels = [*plant_list, "average"]
    data_vars = {}
    for offset, event in ((0, "leaf"), (4, "bloom")):
        if event not in event_list:
            continue
        picks = [offset + (PLANTS.index(p) if p != "average" else 3) for p in labels]
        var = columns.isel(_column=picks).rename(_column="plant")
        var = var.assign_coords(plant=labels).transpose("plant", ...)
        var.attrs = {
            "long_name": f"first {event} day of year (Extended Spring Indices)",
            "units": "day of year",
            "description": "1 = 1 January; NaN where not reached by day max_doy",
        }
        data_vars[f"first_{event}"] = var
    ds = xr.Dataset(data_vars)
    ds.attrs = {
        "model": "Extended Spring Indices (SI-x), Schwartz et al. 2013, Ault et al. 2015",
        "convention": convention,
        "max_doy": max_doy,
    }
    return ds
