"""The SI-x model compiled: day length, growing degree hours, chilling, leaf and bloom.

All numba kernels of the spring index live in this one module on purpose: numba's
on-disk cache keys a kernel on its own file only, so a kernel that inlined helpers from
another module would load stale machine code after that module changed.
"""

from __future__ import annotations

import numba
import numpy as np

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
