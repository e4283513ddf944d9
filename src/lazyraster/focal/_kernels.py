"""The numba kernels of the focal statistics and the constants they compile in.

Each kernel takes a padded 2-D block ``p`` of shape (h + 2r, w + 2r) and writes the (h, w)
result into ``out``. ``hw[d]`` is the half-width of window row ``d`` (0..2r).
"""

from __future__ import annotations

import math
from typing import Any

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
def _has_inf(p):  # pragma: no cover - compiled
    """Whether ``p`` holds an infinity (stops at the first one)."""
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            if math.isinf(p[i, j]):
                return True
    return False


def _make_box_moments(infinities: bool) -> Any:
    """Compile the square-window moments kernel, with or without the infinity bookkeeping.

    ``infinities`` is a compile-time constant: the kernel for blocks without infinities
    (nearly all of them) keeps a single NaN test per pixel in its hot loops.
    """

    @numba.njit(nogil=True, cache=True)
    def box_moments(p, r, stat, min_count, ddof, shift, out):  # pragma: no cover - compiled
        """Sum / mean / std over square windows with running column and row sums.

        Column sums over the ``2r + 1`` window rows are updated by one row in and one row
        out per output row; each output row then slides a running sum over them: O(1) per
        pixel.
        """
        hp, wp = p.shape
        h = hp - 2 * r
        w = wp - 2 * r
        k = 2 * r + 1
        squares = stat == _STD
        cs = np.zeros(wp)
        cq = np.zeros(wp)
        cc = np.zeros(wp, np.int64)
        for i in range(k):
            for j in range(wp):
                d = p[i, j] - shift
                if not infinities:
                    if d == d:
                        cs[j] += d
                        cq[j] += d * d
                        cc[j] += 1
                elif abs(d) < np.inf:  # finite: NaN and inf fail this test
                    cs[j] += d
                    cq[j] += d * d
                    cc[j] += 1
                elif d == d:
                    cc[j] += _POS_INF if d > 0 else _NEG_INF
        for i in range(h):
            if i > 0:
                for j in range(wp):
                    d = p[i - 1, j] - shift
                    e = p[i + 2 * r, j] - shift
                    if not infinities:
                        if d == d:
                            cs[j] -= d
                            if squares:
                                cq[j] -= d * d
                            cc[j] -= 1
                        if e == e:
                            cs[j] += e
                            if squares:
                                cq[j] += e * e
                            cc[j] += 1
                        continue
                    if abs(d) < np.inf:
                        cs[j] -= d
                        if squares:
                            cq[j] -= d * d
                        cc[j] -= 1
                    elif d == d:
                        cc[j] -= _POS_INF if d > 0 else _NEG_INF
                    if abs(e) < np.inf:
                        cs[j] += e
                        if squares:
                            cq[j] += e * e
                        cc[j] += 1
                    elif e == e:
                        cc[j] += _POS_INF if e > 0 else _NEG_INF
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
                c += cc[j + 2 * r] - cc[j - 1]
                if squares:
                    q += cq[j + 2 * r] - cq[j - 1]
                out[i, j] = _finish(s, q, c, stat, min_count, ddof, shift)

    return box_moments


_box_moments_finite = _make_box_moments(infinities=False)
_box_moments_inf = _make_box_moments(infinities=True)


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
