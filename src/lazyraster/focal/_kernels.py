"""The numba kernels of the focal statistics and the constants they compile in.

Each kernel takes a padded 2-D block ``p`` of shape (h + 2r, w + 2r) and writes the (h, w)
result into ``out``. ``hw[d]`` is the half-width of window row ``d`` (0..2r).
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Statistic codes understood by the kernels.
_SUM, _MEAN, _STD = 0, 1, 2
_MIN, _MAX, _MEDIAN = 0, 1, 2

# The moment kernels keep one int64 per window (or column) that packs three counts: valid
# pixels in bits 0-20, +inf pixels in bits 21-41, -inf pixels from bit 42. A finite pixel
# adds 1; an infinite one adds 1 plus its sign's unit. Infinities thus never enter the
# float sums (inf - inf would poison a running sum), at no cost in the hot loops.
_BITS = 21
_COUNT = (1 << _BITS) - 1
_POS_INF = 1 + (1 << _BITS)
_NEG_INF = 1 + (1 << (2 * _BITS))
_MAX_SIZE = math.isqrt(_COUNT)  # largest odd window side whose pixel count fits
_MAX_SIZE -= 1 - _MAX_SIZE % 2
_STATS: dict[str, tuple[str, int]] = {
    "sum": ("moments", _SUM),
    "mean": ("moments", _MEAN),
    "std": ("moments", _STD),
    "min": ("order", _MIN),
    "max": ("order", _MAX),
    "median": ("order", _MEDIAN),
}


@numba.njit(nogil=True, cache=True)
def _finish(s, q, code, stat, min_count, ddof, shift):  # pragma: no cover - compiled
    """Turn (sum, sum of squares, packed counts) of shifted finite values into the statistic."""
    c = code & _COUNT
    if c < min_count or c == 0:
        return np.float32(np.nan)
    if code > _COUNT:  # infinities in the window: numpy's nansum / nanmean / nanstd rules
        if stat == _STD or ((code >> _BITS) & _COUNT and code >> (2 * _BITS)):
            return np.float32(np.nan)
        return np.float32(np.inf) if (code >> _BITS) & _COUNT else np.float32(-np.inf)
    if stat == _SUM:
        return np.float32(s + c * shift)
    if stat == _MEAN:
        return np.float32(s / c + shift)
    dof = c - ddof
    if dof <= 0:
        return np.float32(np.nan)
    var = (q - s * s / c) / dof
    if var < 0.0:
        var = 0.0
    return np.float32(math.sqrt(var))


@numba.njit(nogil=True, cache=True)
def _block_shift(p):  # pragma: no cover - compiled
    """Mean of the finite values of ``p`` (0 if none): recentres sums of squares."""
    s = 0.0
    n = 0
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            v = p[i, j]
            if v == v and not math.isinf(v):
                s += v
                n += 1
    return s / n if n else 0.0


@numba.njit(nogil=True, cache=True)
def _column_step(p, enter, leave, shift, squares, cs, cq, cc):  # pragma: no cover - compiled
    """Row ``enter`` joins the column sums and row ``leave`` (if >= 0) leaves them.

    The NaN tests are selects, not branches, so the loop vectorises and scattered NaN
    cost no mispredicted branches. Returns whether the entering row holds an infinity.
    """
    infinite = False
    for j in range(p.shape[1]):
        e = p[enter, j] - shift
        e_valid = e == e
        e = e if e_valid else 0.0
        infinite |= abs(e) == np.inf
        if leave < 0:
            cs[j] += e
            cq[j] += e * e if squares else 0.0
            cc[j] += np.float64(e_valid)
        else:
            d = p[leave, j] - shift
            d_valid = d == d
            d = d if d_valid else 0.0
            cs[j] += e - d
            if squares:
                cq[j] += e * e - d * d
            cc[j] += np.float64(e_valid) - np.float64(d_valid)
    return infinite


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _box_moments_finite(p, r, stat, min_count, ddof, shift, out):  # pragma: no cover - compiled
    """Sum / mean / std over square windows of a block without infinities: running sums.

    Column sums over the ``2r + 1`` window rows are updated by one row in and one row out
    per output row (:func:`_column_step`); each output row then slides a running sum over
    them: O(1) per pixel. Sums and counts are float64. Returns True, leaving ``out``
    unfinished, at the first infinity it meets (each pixel enters the column sums once):
    the caller then runs :func:`_box_moments_inf` instead.
    """
    hp, wp = p.shape
    h = hp - 2 * r
    w = wp - 2 * r
    squares = stat == _STD
    cs = np.zeros(wp)
    cq = np.zeros(wp)
    cc = np.zeros(wp)
    for i in range(2 * r):
        if _column_step(p, i, -1, shift, squares, cs, cq, cc):
            return True
    for i in range(h):
        if _column_step(p, i + 2 * r, i - 1, shift, squares, cs, cq, cc):
            return True
        s = 0.0
        q = 0.0
        c = 0.0
        for j in range(2 * r):
            s += cs[j]
            q += cq[j]
            c += cc[j]
        for j in range(w):
            s += cs[j + 2 * r]
            c += cc[j + 2 * r]
            if stat == _MEAN:
                value = s / c + shift
            elif stat == _SUM:
                value = s + c * shift
            else:
                q += cq[j + 2 * r]
                var = max((q - s * s / c) / (c - ddof), 0.0)
                value = math.sqrt(var) if c > ddof else np.nan
                q -= cq[j]
            out[i, j] = value if c >= min_count and c > 0 else np.nan
            s -= cs[j]
            c -= cc[j]
    return False


@numba.njit(nogil=True, cache=True)
def _inf_counted(d, cs, cq, cc, j, sign):  # pragma: no cover - compiled
    """Add (``sign`` 1) or remove (-1) the shifted pixel ``d`` from column ``j``."""
    if abs(d) < np.inf:  # finite: NaN and inf fail this test
        cs[j] += sign * d
        cq[j] += sign * d * d
        cc[j] += sign
    elif d == d:
        cc[j] += sign * (_POS_INF if d > 0 else _NEG_INF)


@numba.njit(nogil=True, cache=True)
def _box_moments_inf(p, r, stat, min_count, ddof, shift, out):  # pragma: no cover - compiled
    """Sum / mean / std over square windows of a block holding infinities.

    The running sums of :func:`_box_moments_finite`, with infinities counted in the packed
    ``int64`` per column (never in the float sums) and :func:`_finish` applying numpy's
    rules to each window.
    """
    hp, wp = p.shape
    h = hp - 2 * r
    w = wp - 2 * r
    k = 2 * r + 1
    cs = np.zeros(wp)
    cq = np.zeros(wp)
    cc = np.zeros(wp, np.int64)
    for i in range(k):
        for j in range(wp):
            _inf_counted(p[i, j] - shift, cs, cq, cc, j, 1)
    for i in range(h):
        if i > 0:
            for j in range(wp):
                _inf_counted(p[i - 1, j] - shift, cs, cq, cc, j, -1)
                _inf_counted(p[i + 2 * r, j] - shift, cs, cq, cc, j, 1)
        s = 0.0
        q = 0.0
        c = 0
        for j in range(k):
            s += cs[j]
            q += cq[j]
            c += cc[j]
        out[i, 0] = _finish(s, q, c, stat, min_count, ddof, shift)
        for j in range(1, w):
            s += cs[j + 2 * r] - cs[j - 1]
            q += cq[j + 2 * r] - cq[j - 1]
            c += cc[j + 2 * r] - cc[j - 1]
            out[i, j] = _finish(s, q, c, stat, min_count, ddof, shift)


@numba.njit(nogil=True, cache=True)
def _span_moments(p, r, hw, stat, min_count, ddof, shift, out):  # pragma: no cover - compiled
    """Sum / mean / std over any window made of centred row spans (circles).

    Keeps row prefix sums of the ``2r + 1`` window rows in a ring buffer; each window row
    adds one span difference per pixel: O(size) per pixel.
    """
    hp, wp = p.shape
    w = wp - 2 * r
    k = 2 * r + 1
    squares = stat == _STD
    ps = np.zeros((k, wp + 1))
    pq = np.zeros((k, wp + 1))
    pc = np.zeros((k, wp + 1), np.int64)
    acc_s = np.empty(w)
    acc_q = np.empty(w)
    acc_c = np.empty(w, np.int64)
    for i in range(hp):
        slot = i % k
        for j in range(wp):
            v = p[i, j]
            if v == v and not math.isinf(v):
                d = v - shift
                ps[slot, j + 1] = ps[slot, j] + d
                pc[slot, j + 1] = pc[slot, j] + 1
                if squares:
                    pq[slot, j + 1] = pq[slot, j] + d * d
            elif v == v:
                ps[slot, j + 1] = ps[slot, j]
                pc[slot, j + 1] = pc[slot, j] + (_POS_INF if v > 0 else _NEG_INF)
                if squares:
                    pq[slot, j + 1] = pq[slot, j]
            else:
                ps[slot, j + 1] = ps[slot, j]
                pc[slot, j + 1] = pc[slot, j]
                if squares:
                    pq[slot, j + 1] = pq[slot, j]
        if i < 2 * r:
            continue
        top = i - 2 * r  # output row
        acc_s[:] = 0.0
        acc_q[:] = 0.0
        acc_c[:] = 0
        for d in range(k):
            row = (top + d) % k
            a = hw[d]
            for j in range(w):
                lo = j + r - a
                hi = j + r + a + 1
                acc_s[j] += ps[row, hi] - ps[row, lo]
                acc_c[j] += pc[row, hi] - pc[row, lo]
            if squares:
                for j in range(w):
                    acc_q[j] += pq[row, j + r + a + 1] - pq[row, j + r - a]
        for j in range(w):
            out[top, j] = _finish(acc_s[j], acc_q[j], acc_c[j], stat, min_count, ddof, shift)


@numba.njit(nogil=True, cache=True)
def _box_extreme(p, r, stat, min_count, out):  # pragma: no cover - compiled
    """Min / max over square windows, separably: column extremes, then row extremes."""
    hp, wp = p.shape
    w = wp - 2 * r
    k = 2 * r + 1
    h = hp - 2 * r
    big = np.inf if stat == _MIN else -np.inf
    cm = np.empty(wp)
    cc = np.empty(wp, np.int64)
    for i in range(h):
        cm[:] = big
        cc[:] = 0
        for d in range(k):
            for j in range(wp):
                v = p[i + d, j]
                if v == v:
                    cc[j] += 1
                    if (stat == _MIN and v < cm[j]) or (stat == _MAX and v > cm[j]):
                        cm[j] = v
        for j in range(w):
            m = big
            c = 0
            for d in range(k):
                c += cc[j + d]
                v = cm[j + d]
                if (stat == _MIN and v < m) or (stat == _MAX and v > m):
                    m = v
            if c >= min_count and c > 0:
                out[i, j] = m
            else:
                out[i, j] = np.nan


@numba.njit(nogil=True, cache=True)
def _kth_smallest(a, n, kth):  # pragma: no cover - compiled
    """Partially order ``a[:n]`` in place so that ``a[kth]`` is its kth smallest (Hoare)."""
    lo = 0
    hi = n - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                i += 1
                j -= 1
        if kth <= j:
            hi = j
        elif kth >= i:
            lo = i
        else:
            break
    return a[kth]


@numba.njit(nogil=True, cache=True)
def _span_order(p, r, hw, stat, min_count, out):  # pragma: no cover - compiled
    """Min / max / median over any window of centred row spans, gathering valid pixels."""
    hp, wp = p.shape
    h = hp - 2 * r
    w = wp - 2 * r
    k = 2 * r + 1
    buf = np.empty(k * k)
    for i in range(h):
        for j in range(w):
            n = 0
            for d in range(k):
                a = hw[d]
                for x in range(j + r - a, j + r + a + 1):
                    v = p[i + d, x]
                    if v == v:
                        buf[n] = v
                        n += 1
            if n < min_count or n == 0:
                out[i, j] = np.nan
            elif stat == _MIN:
                out[i, j] = buf[:n].min()
            elif stat == _MAX:
                out[i, j] = buf[:n].max()
            else:
                half = n // 2
                upper = _kth_smallest(buf, n, half)
                if n % 2:
                    out[i, j] = upper
                else:  # buf[:half] now holds the smaller half: its max is the lower middle
                    out[i, j] = 0.5 * (buf[:half].max() + upper)
