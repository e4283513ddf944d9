"""The Extended Spring Indices (SI-x): first leaf and first bloom from daily temperatures.

The model of Schwartz et al. (2013) and Ault et al. (2015) turns daily minimum and
maximum temperature and day length into the day of year of first leaf and first
bloom of three indicator plants: lilac (*Syringa chinensis* 'Red Rothomagensis'),
Arnold Red honeysuckle (*Lonicera tatarica* 'Arnold Red') and Zabelii honeysuckle
(*Lonicera korolkowii* 'Zabelii'). One numba kernel walks each pixel's time series
once; :func:`xarray.apply_ufunc` applies it to numpy blocks or, lazily, to every
dask chunk.

The model, as computed here
---------------------------
All arithmetic is in degrees Fahrenheit, in float64.

- **Hourly temperatures.** For a day of length ``L`` hours (clipped to [1, 23]),
  hour 0 is Tmin; hours ``h = 1 .. floor(L)`` follow ``Tmin + (Tmax - Tmin) *
  sin(pi * h / (L + 4))``; from the sunset temperature ``Ts`` (the same sine at
  ``h = L``) the night hours ``n = 1, 2, ...`` decay as ``Ts - (Ts - Tmin) /
  ln(24 - L) * ln(n)``.
- **Growing degree hours** (GDH) of a day: the sum of ``T - 31`` over the 24 hours
  where ``T > 31`` F.
- **Leaf.** Day ``d`` (0 on 1 January) has predictors MDS0 = ``d``, DDE2 = GDH of
  the day and the two before, DD57 = GDH of the 5th, 6th and 7th days before, and
  SYNOP = the number of days so far with DDE2 >= 637. Before 1 January the two
  previous days count as 1 January itself and earlier days as zero. A plant leafs
  on the first day where ``a * MDS0 + b * SYNOP + c * DDE2 + e * DD57 >= 999.5``;
  the day of year reported is ``d + 1``, and ``d + 2`` for Arnold Red.
- **Bloom.** From each plant's own leaf day (day of year ``l``, index ``s = l - 1``)
  on, AGDH accumulates GDH (day ``s`` included) and the plant blooms on the first
  day where ``A * (d - s) + B * AGDH >= 999.5``; reported as ``d + 1``.
- **Average.** The rounded mean of the three plants, NaN unless all three exist.
- **Day length** comes from ``dayl`` or, given only latitude, from the SI-x formula:
  ``12.14 + 3.34 tan(lat) cos(0.0172 D - 1.95)`` below 40 degrees N and ``12.25 +
  (1.6164 + 1.7643 tan(lat)**2) cos(0.0172 D - 1.95)`` from 40 degrees N, with ``D``
  counted from 1 March (1 January is 307), clipped to [1, 23] hours.

Coefficients (Schwartz et al. 2013, as in the ML_SI toolbox):

=========  ======  ======  =====  =====  =======  =====
plant      a       b       c      e      A        B
=========  ======  ======  =====  =====  =======  =====
lilac      3.306   13.878  0.201  0.153  -23.934  0.116
arnoldred  4.266   20.899  0.000  0.248  -24.825  0.127
zabelii    2.802   21.433  0.266  0.000  -11.368  0.096
=========  ======  ======  =====  =====  =======  =====

Conventions
-----------
``"six"`` (default) is the model above and nothing else. ``"ml_si"`` reproduces the
published ML_SI toolbox (Ault et al. 2015) exactly, quirks included (its day length
always comes from latitude): days whose
Tmax is below 31 F are skipped (no lag shift, no synoptic count, no threshold
check); from the second day on, Tmax(t) is raised to Tmin(t-1) and then Tmin(t)
lowered to Tmax(t-1) (for bloom, afresh from each plant's leaf day); a Tmin of
exactly 0 F becomes 0.01 F, a Tmax equal to Tmin is raised by 0.01 F and a sunset
temperature at or below 0 F becomes 0.01 F; missing days are filled with the mean
of their 30-day block, and a year is NaN when a block has fewer than 20 valid
values or more than 10 values equal to zero (in F).

Time axis, years and missing days
---------------------------------
Days are placed by their calendar day of year (1 January = 1; 29 February is day
60 of a leap year, so 1 March is day 61 there, as in ML_SI and Daymet). Only days
1 to ``max_doy`` are read. A time axis spanning several years gives a ``year``
dimension, one model run per calendar year. A day that is absent from the time
axis, or NaN in any input, is *missing*: with ``convention="six"`` the model
stops at the first missing day, so events not reached before it are NaN (events
reached earlier are kept); with ``"ml_si"`` the 30-day block rule above applies.

References
----------
Schwartz, M. D., Ault, T. R. and Betancourt, J. L. (2013). Spring onset variations
and trends in the continental United States: past and regional assessment using
temperature-based indices. International Journal of Climatology 33: 2917-2922.

Ault, T. R., Schwartz, M. D., Zurita-Milla, R., Weltzin, J. F. and Betancourt, J. L.
(2015). Trends and natural variability of spring onset in the coterminous United
States as evaluated by a new gridded dataset of spring indices. Journal of Climate
28: 8363-8378.

Ault, T. R., Zurita-Milla, R. and Schwartz, M. D. (2015). A Matlab toolbox for
calculating spring indices from daily meteorological data. Computers & Geosciences
83: 46-53 (ML_SI).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Hashable, Sequence
from typing import Any, Literal

import numba
import numpy as np
import pandas as pd
import xarray as xr

from lazyraster.errors import MissingBandError

__all__ = ["PLANTS", "spring_index", "spring_index_dataset"]

PLANTS: tuple[str, ...] = ("lilac", "arnoldred", "zabelii")
"""The indicator plants, in the order of the model's coefficient tables."""

_EVENTS = ("leaf", "bloom")
_CONVENTIONS = ("six", "ml_si")
_LEAF_COEF = np.array(
    [[3.306, 13.878, 0.201, 0.153], [4.266, 20.899, 0.000, 0.248], [2.802, 21.433, 0.266, 0.000]]
)
_BLOOM_COEF = np.array([[-23.934, 0.116], [-24.825, 0.127], [-11.368, 0.096]])
_BASE_F = 31.0
_THRESHOLD = 999.5
_SYNOP_LIMIT = 637.0
_BLOCK = 30  # ML_SI gap-filling block length, days
_LOG_COUNT = np.log(np.maximum(np.arange(24.0), 1.0))  # ln(n) of the n-th night hour


# --------------------------------------------------------------------------- kernel


@numba.njit(cache=True)
def _six_day_length(lat: float, d: int) -> float:  # pragma: no cover - compiled
    """SI-x day length in hours at latitude ``lat`` on day index ``d`` (0 = 1 January)."""
    # SI-x counts its seasonal cosine from 1 March: 1 January is day 307 of that count.
    sd = d + 307 if d < 60 else d - 59
    t = np.tan(lat * np.pi / 180)
    if lat < 40:
        length = 12.14 + 3.34 * t * np.cos(0.0172 * sd - 1.95)
    else:
        length = 12.25 + (1.6164 + 1.7643 * t**2) * np.cos(0.0172 * sd - 1.95)
    return min(max(length, 1.0), 23.0)


@numba.njit(cache=True, inline="always")
def _gdh(
    tmax: float, tmin: float, length: float, table: np.ndarray, d: int, quirks: bool
) -> float:  # pragma: no cover - compiled
    """Growing degree hours above 31 F of day ``d`` (``table[d]`` is made for ``length``)."""
    if quirks:  # ML_SI
        if tmin == 0:
            tmin = 0.01
        if tmax == tmin:
            tmax += 0.01
    if tmax <= _BASE_F and tmin <= _BASE_F:
        return 0.0  # no modelled hour can exceed the larger of the two
    dt = tmax - tmin
    nday = int(np.floor(length))
    # max(x, 0.0) adds exactly what "if x > 0: total += x" adds, without a branch
    total = max(tmin - _BASE_F, 0.0)
    for h in range(1, nday + 1):
        total += max((dt * table[d, h] + tmin) - _BASE_F, 0.0)
    sunset = dt * table[d, 24] + tmin
    if quirks and sunset <= 0:
        sunset = 0.01
    if nday < 23:  # night hours nday + 1 .. 23 (none when L is 23 h)
        fall = (sunset - tmin) / table[d, 25]
        for count in range(1, 24 - nday):
            total += max((sunset - fall * _LOG_COUNT[count]) - _BASE_F, 0.0)
    return total


@numba.njit(cache=True, inline="always")
def _fill_sines(length: float, table: np.ndarray, d: int) -> None:  # pragma: no cover
    """Fill row ``d``: ``sin(pi / (L + 4) * h)`` for h = 1..23, the sunset sine, ``ln(24 - L)``."""
    step = np.pi / (length + 4)
    for h in range(1, 24):
        table[d, h] = np.sin(step * h)
    table[d, 24] = np.sin(step * length)
    table[d, 25] = np.log(24 - length)


@numba.njit(cache=True, inline="always")
def _leaf_index(p: int, mds0: int, synop: int, dde2: float, dd57: float) -> float:
    """Weighted sum of the leaf predictors of plant ``p`` (0 lilac, 1 arnoldred, 2 zabelii)."""
    c = _LEAF_COEF
    return (c[p, 0] * mds0) + (c[p, 1] * synop) + (c[p, 2] * dde2) + (c[p, 3] * dd57)


@numba.njit(cache=True, inline="always")
def _bloom_index(p: int, mds0: int, agdh: float) -> float:
    """Weighted sum of the bloom predictors of plant ``p``."""
    return (_BLOOM_COEF[p, 0] * mds0) + (_BLOOM_COEF[p, 1] * agdh)


@numba.njit(cache=True)
def _ml_si_fill(tn: np.ndarray, tx: np.ndarray, ndays: int) -> bool:  # pragma: no cover
    """Fill missing days with their 30-day block mean in place; False if the year fails."""
    for start in range(0, ndays, _BLOCK):
        stop = min(start + _BLOCK, ndays)
        for series in (tn, tx):
            count = 0
            zeros = 0
            for d in range(start, stop):
                if np.isfinite(series[d]):
                    count += 1
                    if series[d] == 0:
                        zeros += 1
            if count < 20 or zeros > 10:
                return False
        for series in (tn, tx):
            total = 0.0
            count = 0
            for d in range(start, stop):
                if np.isfinite(series[d]):
                    total += series[d]
                    count += 1
            mean = total / count
            for d in range(start, stop):
                if not np.isfinite(series[d]):
                    series[d] = mean
    return True


@numba.njit(cache=True, inline="always")
def _gdh_cached(
    d: int,
    tmax: float,
    tmin: float,
    length: np.ndarray,
    table: np.ndarray,
    table_length: np.ndarray,
    quirks: bool,
) -> float:  # pragma: no cover - compiled
    """GDH of day ``d``, refreshing the day's sine table only when its length changed."""
    if table_length[d] != length[d]:
        _fill_sines(length[d], table, d)
        table_length[d] = length[d]
    return _gdh(tmax, tmin, length[d], table, d, quirks)


@numba.njit(cache=True)
def _six_pixel(
    tn: np.ndarray,
    tx: np.ndarray,
    length: np.ndarray,
    ndays: int,
    table: np.ndarray,
    table_length: np.ndarray,
    want_bloom: bool,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """One pass of the ``"six"`` convention over one pixel-year; writes ``out[0:6]``."""
    # GDH of the 1st .. 7th previous day (before 1 January: day 1 twice, then zeros)
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = 0.0
    synop = 0
    leaf_start = np.full(3, -1)
    agdh = np.zeros(3)
    done = 0
    target = 6 if want_bloom else 3
    for d in range(ndays):
        if not (np.isfinite(tn[d]) and np.isfinite(tx[d]) and np.isfinite(length[d])):
            return  # missing day: events not reached so far stay NaN
        g = _gdh_cached(d, tx[d], tn[d], length, table, table_length, False)
        if d == 0:
            l0 = g
            l1 = g
        dde2 = g + l0 + l1
        dd57 = l4 + l5 + l6
        if dde2 >= _SYNOP_LIMIT:
            synop += 1
        for p in range(3):
            if leaf_start[p] < 0 and _leaf_index(p, d, synop, dde2, dd57) >= _THRESHOLD:
                leaf_start[p] = d + 1 if p == 1 else d
                out[p] = leaf_start[p] + 1
                done += 1
        if want_bloom:
            for p in range(3):
                s = leaf_start[p]
                if s >= 0 and s <= d and np.isnan(out[3 + p]):
                    agdh[p] += g
                    if _bloom_index(p, d - s, agdh[p]) >= _THRESHOLD:
                        out[3 + p] = d + 1
                        done += 1
        if done == target:
            return
        l0, l1, l2, l3, l4, l5, l6 = g, l0, l1, l2, l3, l4, l5


@numba.njit(cache=True)
def _ml_si_pixel(
    tn0: np.ndarray,
    tx0: np.ndarray,
    length: np.ndarray,
    ndays: int,
    table: np.ndarray,
    table_length: np.ndarray,
    want_bloom: bool,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The ``"ml_si"`` convention for one (gap-filled) pixel-year; writes ``out[0:6]``."""
    tn = tn0.copy()
    tx = tx0.copy()
    lag = np.zeros(7)
    synop = 0
    leaf_start = np.full(3, -1)
    for d in range(ndays):
        if d > 0:
            if tx[d] < tn[d - 1]:
                tx[d] = tn[d - 1]
            if tn[d] > tx[d - 1]:
                tn[d] = tx[d - 1]
        if tx[d] < _BASE_F:
            continue  # ML_SI skips the day entirely
        g = _gdh_cached(d, tx[d], tn[d], length, table, table_length, True)
        if d == 0:
            lag[0] = g
            lag[1] = g
        dde2 = g + lag[0] + lag[1]
        dd57 = lag[4] + lag[5] + lag[6]
        if dde2 >= _SYNOP_LIMIT:
            synop += 1
        pending = 0
        for p in range(3):
            if leaf_start[p] < 0:
                if _leaf_index(p, d, synop, dde2, dd57) >= _THRESHOLD:
                    leaf_start[p] = d + 1 if p == 1 else d
                    out[p] = leaf_start[p] + 1
                else:
                    pending += 1
        if pending == 0:
            break
        for k in range(6, 0, -1):
            lag[k] = lag[k - 1]
        lag[0] = g
    if not want_bloom:
        return
    for p in range(3):
        s = leaf_start[p]
        if s < 0:
            continue
        # Each bloom run starts from the gap-filled series again, corrected from its start.
        for d in range(s, ndays):
            tn[d] = tn0[d]
            tx[d] = tx0[d]
        agdh = 0.0
        for d in range(s, ndays):
            if d > 0:
                prev_n = tn0[d - 1] if d == s else tn[d - 1]
                prev_x = tx0[d - 1] if d == s else tx[d - 1]
                if tx[d] < prev_n:
                    tx[d] = prev_n
                if tn[d] > prev_x:
                    tn[d] = prev_x
            if tx[d] < _BASE_F:
                continue
            g = _gdh_cached(d, tx[d], tn[d], length, table, table_length, True)
            agdh += g
            if _bloom_index(p, d - s, agdh) >= _THRESHOLD:
                out[3 + p] = d + 1
                break


@numba.njit(cache=True, nogil=True)  # dask threads run blocks side by side
def _spring_index_kernel(
    tmin: np.ndarray,
    tmax: np.ndarray,
    dayl: np.ndarray,
    lat: np.ndarray,
    doy: np.ndarray,
    ndays: int,
    use_lat: bool,
    scale_min: float,
    offset_min: float,
    scale_max: float,
    offset_max: float,
    dayl_to_hours: float,
    ml_si: bool,
    want_bloom: bool,
) -> np.ndarray:  # pragma: no cover - compiled
    """SI-x on ``(npix, ntime)`` blocks; returns ``(npix, 8)`` float32.

    Columns: first leaf of lilac, Arnold Red, Zabelii, average, then first bloom in
    the same order. ``doy`` gives each time step's day of year; steps past ``ndays``
    are ignored and absent days are missing.
    """
    npix, ntime = tmin.shape
    out = np.full((npix, 8), np.nan, dtype=np.float32)
    tn = np.empty(ndays)
    tx = np.empty(ndays)
    length = np.empty(ndays)
    table = np.empty((ndays, 26))
    table_length = np.full(ndays, np.nan)
    res = np.empty(6)
    complete = ntime >= ndays  # every day 1..ndays present, in order: no NaN prefill
    for k in range(min(ntime, ndays)):
        complete = complete and doy[k] == k + 1
    for i in range(npix):
        if not complete:
            tn[:] = np.nan
            tx[:] = np.nan
            if not use_lat:
                length[:] = np.nan
        for k in range(ntime):
            d = doy[k] - 1
            if d < 0 or d >= ndays:
                continue
            tn[d] = np.float64(tmin[i, k]) * scale_min + offset_min
            tx[d] = np.float64(tmax[i, k]) * scale_max + offset_max
            if not use_lat:
                length[d] = min(max(np.float64(dayl[i, k]) * dayl_to_hours, 1.0), 23.0)
        if use_lat and (i == 0 or lat[i] != lat[i - 1]):
            for d in range(ndays):
                length[d] = _six_day_length(np.float64(lat[i]), d)
        res[:] = np.nan
        if ml_si:
            if not np.isfinite(lat[i]) or not _ml_si_fill(tn, tx, ndays):
                continue
            _ml_si_pixel(tn, tx, length, ndays, table, table_length, want_bloom, res)
        else:
            _six_pixel(tn, tx, length, ndays, table, table_length, want_bloom, res)
        for e in range(2):
            total = 0.0
            for p in range(3):
                v = res[3 * e + p]
                out[i, 4 * e + p] = v
                total += v
            # NaN unless all three exist; the mean of three integers never ends in .5
            out[i, 4 * e + 3] = np.floor(total / 3 + 0.5)
    return out


def _kernel_block(
    tmin: np.ndarray,
    tmax: np.ndarray,
    third: np.ndarray,
    *,
    doy: np.ndarray,
    ndays: int,
    use_lat: bool,
    units: tuple[float, float, float, float],
    dayl_to_hours: float,
    ml_si: bool,
    want_bloom: bool,
) -> np.ndarray:
    """Flatten one block to ``(npix, ntime)``, run the kernel, restore the pixel shape."""
    third_space = third.shape if use_lat else third.shape[:-1]
    space = np.broadcast_shapes(tmin.shape[:-1], tmax.shape[:-1], third_space)
    ntime = tmin.shape[-1]

    def flat(a: np.ndarray, core: bool) -> np.ndarray:
        shape = (*space, ntime) if core else space
        return np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1, *shape[len(space) :])

    a = flat(tmin, True)
    b = flat(tmax, True)
    if use_lat:
        lat = flat(np.asarray(third, dtype=np.float64), False)
        dayl = np.empty((0, 0), dtype=np.float64)
    else:
        lat = np.empty(0, dtype=np.float64)
        dayl = flat(third, True)
    out = _spring_index_kernel(
        a, b, dayl, lat, doy, ndays, use_lat, *units, dayl_to_hours, ml_si, want_bloom
    )
    return out.reshape(*space, 8)


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


def spring_index_dataset(
    ds: xr.Dataset,
    *,
    tmin: str = "tmin",
    tmax: str = "tmax",
    dayl: str | None = "dayl",
    lat: str | float | xr.DataArray | None = "lat",
    plants: Sequence[str] = PLANTS,
    events: Sequence[str] = _EVENTS,
    max_doy: int = 240,
    convention: Literal["six", "ml_si"] = "six",
) -> xr.Dataset:
    """Compute :func:`spring_index` on a Dataset with Daymet variable names.

    Day length comes from the ``dayl`` variable when the Dataset has it (and the
    convention is ``"six"``); otherwise from latitude: the ``lat`` variable or
    coordinate (Daymet's 2-D ``lat``), or the value passed as ``lat``.

    Parameters
    ----------
    ds : xarray.Dataset
        Daily ``tmin``, ``tmax`` (degrees C unless their ``units`` say ``degF``) and,
        optionally, ``dayl`` (seconds), with a ``time`` dimension.
    tmin, tmax, dayl : str, keyword-only
        Variable names; ``dayl=None`` ignores a day-length variable.
    lat : str, float or xarray.DataArray, keyword-only
        Name of the latitude variable or coordinate, or the latitude itself.
    plants, events, max_doy, convention : keyword-only
        As in :func:`spring_index`.

    Returns
    -------
    xarray.Dataset
        As :func:`spring_index`, with the Dataset's attributes kept.

    Raises
    ------
    MissingBandError
        If ``tmin`` or ``tmax`` is missing, or neither day length nor latitude is there.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> time = pd.date_range("2021-01-01", "2021-08-31", freq="D")
    >>> warm = 20 * np.sin(np.pi * (np.arange(time.size) - 15) / 365)
    >>> ds = xr.Dataset(
    ...     {"tmin": ("time", warm - 5), "tmax": ("time", warm + 5)},
    ...     coords={"time": time, "lat": 40.0},
    ... )
    >>> ds.geo.spring_index().first_leaf.sel(plant="average").item()
    70.0
    """
    for role, name in (("tmin", tmin), ("tmax", tmax)):
        if name not in ds.variables:
            have = ", ".join(map(str, ds.data_vars)) or "no variables"
            raise MissingBandError(
                f"{role} variable {name!r} is not in the Dataset (it has: {have}). "
                f"Pass {role}=<variable name>."
            )
    kwargs: dict[str, Any] = {
        "plants": plants,
        "events": events,
        "max_doy": max_doy,
        "convention": convention,
    }
    if dayl is not None and dayl in ds.variables and convention == "six":
        out = spring_index(ds[tmin], ds[tmax], dayl=ds[dayl], **kwargs)
    else:
        if isinstance(lat, str):
            if lat not in ds.variables:
                raise MissingBandError(
                    f"Neither a day-length variable {dayl!r} nor a latitude {lat!r} is in "
                    "the Dataset. Pass dayl=<variable> (seconds) or lat=<name or degrees north>."
                )
            lat = ds[lat]
        out = spring_index(ds[tmin], ds[tmax], lat=lat, **kwargs)
    out.attrs = {**ds.attrs, **out.attrs}
    return out
