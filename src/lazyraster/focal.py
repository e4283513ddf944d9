"""Focal (moving-window) statistics over the last two dims, lazy on dask, exact at chunk edges.

Six statistics share one set of options:

- ``size``: odd window side in pixels (3, 5, 9, 31, ...).
- ``shape``: ``"square"`` (``size x size`` pixels) or ``"circle"`` (the pixels whose
  centre lies within ``r = size // 2`` pixels of the window centre, ``dy**2 + dx**2 <= r**2``;
  for ``size=3`` that is a plus sign of 5 pixels).
- ``min_count``: NaN-aware. The statistic is taken over the valid (non-NaN) pixels of the
  window; where fewer than ``min_count`` of them are valid, the result is NaN. The centre
  pixel itself may be NaN: with the default ``min_count=1`` it gets the statistic of its
  valid neighbours (gap filling). ``min_count="all"`` asks for every pixel of the window.
  Infinities are valid pixels and follow numpy's ``nansum``/``nanmean``/``nanstd``: a
  window holding ``+inf`` sums to ``+inf``, one holding both signs gives NaN, and the
  standard deviation of a window holding an infinity is NaN.
- ``edge``: what lies beyond the image border.

  ``"nodata"``
      Outside the image is missing, exactly like NaN: it adds nothing to the statistic and
      nothing to the valid count. Near the border the window simply has fewer valid pixels.
      With ``min_count="all"`` every window that touches the border or a NaN is NaN, which is
      the course script's ``scipy.ndimage.convolve(img, k / k.sum(), mode="constant",
      cval=np.nan)``.
  ``"reflect"``
      The image is mirrored about its edge with the edge pixel repeated
      (``d c b a | a b c d | d c b a``): scipy.ndimage's ``mode="reflect"``, numpy's
      ``np.pad(mode="symmetric")``, dask's ``boundary="reflect"``. (scipy's ``"mirror"``,
      which does not repeat the edge pixel, is not this mode.)
  ``"nearest"``
      The edge pixel is repeated (``a a a a | a b c d | d d d d``): scipy's ``"nearest"``.

The spatial dims are ``("y", "x")`` when the object has both, otherwise its last two dims;
every other dim (``time``, ``band``) is looped over. Datasets are filtered variable by
variable (variables with fewer than two dims are kept as they are). The result is float32
(lazy and computed), with the input's dims, coords (``spatial_ref`` included), name and
attributes.

On dask the same numba kernel runs on every block with an exact halo of ``r`` pixels
(``dask.array.map_overlap``), so a chunked result equals the single-chunk one at every
chunk edge (min, max and median exactly, sums to float rounding). Chunks thinner than
``r`` are merged with a neighbour first (so the result may have fewer chunks than the
input); an image thinner than ``r`` along an axis is processed as one chunk along that
axis. The kernels release
the GIL, so dask's threaded scheduler runs blocks in parallel; on numpy input the kernel
runs once over the whole image in the calling thread.

Cost per pixel: ``focal_sum``, ``focal_mean`` and ``focal_std`` on square windows use
running sums (float64, with a count of valid pixels) whose cost does not depend on
``size``; on circles they add per-row spans from row prefix sums, ``O(size)`` per pixel.
``focal_min`` and ``focal_max`` are separable on squares (``O(size)``) and ``O(size**2)``
on circles; ``focal_median`` is a quickselect over the window, ``O(size**2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import dask.array as dsa
import numba
import numpy as np
import xarray as xr
from dask.array.overlap import ensure_minimum_chunksize

__all__ = [
    "focal_max",
    "focal_mean",
    "focal_median",
    "focal_min",
    "focal_std",
    "focal_sum",
]

T = TypeVar("T", xr.DataArray, xr.Dataset)
F = TypeVar("F", bound=Callable[..., Any])
Shape = Literal["square", "circle"]
Edge = Literal["nodata", "reflect", "nearest"]
MinCount = int | Literal["all"]

_SHAPES = ("square", "circle")
_EDGES = ("nodata", "reflect", "nearest")
_NP_PAD = {"reflect": "symmetric", "nearest": "edge"}  # "nodata" pads with NaN
_DASK_BOUNDARY: dict[str, Any] = {"nodata": np.nan, "reflect": "reflect", "nearest": "nearest"}

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


# --------------------------------------------------------------------------------------
# numba kernels. Each takes a padded 2-D block ``p`` of shape (h + 2r, w + 2r) and writes
# the (h, w) result into ``out``. ``hw[d]`` is the half-width of window row ``d`` (0..2r).
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Block application (numpy and dask share it)
# --------------------------------------------------------------------------------------


def _half_widths(size: int, shape: str) -> np.ndarray:
    """Half-width of each window row: ``r`` for squares, ``isqrt(r**2 - dy**2)`` for circles."""
    r = size // 2
    if shape == "square":
        return np.full(size, r, dtype=np.int64)
    return np.array([math.isqrt(r * r - (d - r) ** 2) for d in range(size)], dtype=np.int64)


def _window_count(size: int, shape: str) -> int:
    """Number of pixels in the window."""
    return int((2 * _half_widths(size, shape) + 1).sum())


def _filter_plane(
    p: np.ndarray, out: np.ndarray, *, stat: str, size: int, shape: str, min_count: int, ddof: int
) -> None:
    """Run the kernel of ``stat`` on one padded 2-D plane ``p``, writing ``out``."""
    family, code = _STATS[stat]
    r = size // 2
    p = np.ascontiguousarray(p)
    if family == "moments":
        shift = _block_shift(p) if (code == _STD or shape == "circle") else 0.0
        if shape == "square":
            kernel = _box_moments_inf if _has_inf(p) else _box_moments_finite
            kernel(p, r, code, min_count, ddof, shift, out)
        else:
            _span_moments(p, r, _half_widths(size, shape), code, min_count, ddof, shift, out)
    elif shape == "square" and code != _MEDIAN:
        _box_extreme(p, r, code, min_count, out)
    else:
        _span_order(p, r, _half_widths(size, shape), code, min_count, out)


def _filter_block(
    block: np.ndarray,
    *,
    stat: str,
    size: int,
    shape: str,
    min_count: int,
    ddof: int,
    edge: str,
    pad_axes: tuple[bool, bool],
) -> np.ndarray:
    """Filter a block whose last two axes carry a halo of ``r``, or get one padded here."""
    r = size // 2
    if r and any(pad_axes):
        width = [(0, 0)] * (block.ndim - 2) + [(r, r) if pad else (0, 0) for pad in pad_axes]
        if edge == "nodata":
            block = np.pad(block, width, mode="constant", constant_values=np.nan)
        else:
            block = np.pad(block, width, mode=_NP_PAD[edge])  # type: ignore[call-overload]
    out_shape = (*block.shape[:-2], block.shape[-2] - 2 * r, block.shape[-1] - 2 * r)
    out = np.empty(out_shape, dtype=np.float32)
    for index in np.ndindex(block.shape[:-2]):
        _filter_plane(
            block[index],
            out[index],
            stat=stat,
            size=size,
            shape=shape,
            min_count=min_count,
            ddof=ddof,
        )
    return out


def _float_dtype(dtype: np.dtype) -> np.dtype:
    """Float type the kernels read: float32 for small ints and floats, float64 otherwise."""
    if dtype == np.float64 or (dtype.kind in "iu" and dtype.itemsize > 2):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _filter_dask(data: dsa.Array, **options: Any) -> dsa.Array:
    """``map_overlap`` with an exact halo of ``r`` on the last two axes."""
    r = options["size"] // 2
    ndim = data.ndim
    spatial = (ndim - 2, ndim - 1)
    # An axis shorter than the radius cannot be reflected by dask: keep it in one chunk
    # and pad it inside the block function instead.
    pad_axes = tuple(bool(r) and data.shape[ax] < r for ax in spatial)
    chunks = list(data.chunks)
    depth = dict.fromkeys(range(ndim), 0)
    for ax, pad in zip(spatial, pad_axes, strict=True):
        if pad:
            chunks[ax] = (data.shape[ax],)
        elif r:
            chunks[ax] = ensure_minimum_chunksize(r, data.chunks[ax])
            depth[ax] = r
    data = data.rechunk(tuple(chunks))  # a no-op when the chunks already fit
    func = _filter_block
    kwargs = {**options, "pad_axes": pad_axes}
    if not any(depth.values()):
        return data.map_blocks(func, dtype=np.float32, meta=np.array((), np.float32), **kwargs)
    boundary = dict.fromkeys(range(ndim), "none")
    for ax in spatial:
        if depth[ax]:
            boundary[ax] = _DASK_BOUNDARY[options["edge"]]
    return dsa.map_overlap(
        func,
        data,
        depth=depth,
        boundary=boundary,
        trim=False,
        allow_rechunk=False,
        chunks=data.chunks,
        dtype=np.float32,
        meta=np.array((), dtype=np.float32),
        **kwargs,
    )


# --------------------------------------------------------------------------------------
# Validation and the xarray layer
# --------------------------------------------------------------------------------------


def _check_options(size: Any, shape: Any, min_count: Any, edge: Any, ddof: Any) -> int:
    """Validate the options; return ``min_count`` as an int."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise TypeError(f"size must be an odd integer such as 3, 5 or 9; got {size!r}")
    if size < 1 or size % 2 == 0:
        raise ValueError(
            f"size must be an odd positive integer (the window is centred on the pixel); "
            f"got {size}. Use size={max(1, size + 1 if size > 0 else 1)} instead."
        )
    if size > _MAX_SIZE:
        raise ValueError(
            f"size must be at most {_MAX_SIZE}; got {size}. For windows this large, "
            "coarsen the raster first (da.coarsen(x=..., y=...).mean())."
        )
    if shape not in _SHAPES:
        raise ValueError(f"shape must be one of {_SHAPES}; got {shape!r}")
    if edge not in _EDGES:
        raise ValueError(f"edge must be one of {_EDGES}; got {edge!r}")
    if isinstance(ddof, bool) or not isinstance(ddof, int | np.integer) or ddof < 0:
        raise ValueError(f"ddof must be a non-negative integer (0 or 1); got {ddof!r}")
    full = _window_count(int(size), shape)
    if isinstance(min_count, str) and min_count == "all":
        return full
    if isinstance(min_count, bool) or not isinstance(min_count, int | np.integer):
        raise TypeError(f'min_count must be an integer or "all"; got {min_count!r}')
    if not 1 <= min_count <= full:
        raise ValueError(
            f"min_count must be between 1 and {full}, the number of pixels of a "
            f'{size}x{size} {shape} window (or "all"); got {min_count}'
        )
    return int(min_count)


def _focal_dataarray(da: xr.DataArray, **options: Any) -> xr.DataArray:
    stat = options["stat"]
    if da.ndim < 2:
        raise ValueError(
            f"focal_{stat} needs a raster with two spatial dims (y, x); "
            f"{da.name or 'the DataArray'} has dims {da.dims}"
        )
    if da.dtype.kind not in "biuf":
        raise TypeError(
            f"focal_{stat} works on real numbers; {da.name or 'the DataArray'} has dtype "
            f"{da.dtype}. Convert it first, e.g. da.astype('float32')."
        )
    dims = da.dims
    if "y" in dims and "x" in dims and dims[-2:] != ("y", "x"):
        order = [d for d in dims if d not in ("y", "x")] + ["y", "x"]
        return _focal_dataarray(da.transpose(*order), **options).transpose(*dims)
    data = da.data
    ftype = _float_dtype(da.dtype)
    if isinstance(data, dsa.Array):
        if data.dtype != ftype:
            data = data.astype(ftype)
        result = _filter_dask(data, **options)
    else:
        values = np.asarray(data, dtype=ftype)
        result = _filter_block(values, **options, pad_axes=(True, True))
    return da.copy(deep=False, data=result)


_WINDOW_PARAMETERS = """\
obj : xarray.DataArray or xarray.Dataset
        Raster(s) with two spatial dims (``y``, ``x``, or the last two) and any leading
        dims, numpy- or dask-backed. NaN marks missing pixels.
    size : int, keyword-only
        Odd window side in pixels; the radius is ``size // 2``.
    shape : {"square", "circle"}, keyword-only
        Window shape; a circle holds the pixels with ``dy**2 + dx**2 <= (size // 2)**2``.
    min_count : int or "all", keyword-only
        Fewest valid pixels in the window for a result, NaN otherwise; ``"all"`` asks for
        every pixel of the window.
    edge : {"nodata", "reflect", "nearest"}, keyword-only
        Beyond the border: missing (``"nodata"``), mirrored with the edge pixel repeated
        (``"reflect"``, scipy's ``mode="reflect"``) or the edge pixel (``"nearest"``).
        See :mod:`lazyraster.focal`."""

_RETURNS = """\
Returns
    -------
    xarray.DataArray or xarray.Dataset
        Same type, dims, coords (CRS included), name and attributes as ``obj``; float32,
        lazy when ``obj`` is dask-backed."""


def _shared_doc(func: F) -> F:
    """Fill the parameters and returns that every focal statistic shares into its docstring."""
    func.__doc__ = (
        (func.__doc__ or "")
        .replace("%(window_parameters)s", _WINDOW_PARAMETERS)
        .replace("%(returns)s", _RETURNS)
    )
    return func


def _focal(
    obj: T,
    stat: str,
    *,
    size: int,
    shape: Shape,
    min_count: MinCount,
    edge: Edge,
    ddof: int = 0,
) -> T:
    count = _check_options(size, shape, min_count, edge, ddof)
    options = {
        "stat": stat,
        "size": int(size),
        "shape": shape,
        "min_count": count,
        "ddof": int(ddof),
        "edge": edge,
    }
    if isinstance(obj, xr.Dataset):
        return obj.map(
            lambda v: _focal_dataarray(v, **options) if v.ndim >= 2 else v,
            keep_attrs=True,
        )
    if isinstance(obj, xr.DataArray):
        return _focal_dataarray(obj, **options)
    raise TypeError(
        f"focal_{stat} takes an xarray DataArray or Dataset; got {type(obj).__name__}. "
        "Wrap a numpy array with xr.DataArray(values, dims=('y', 'x'))."
    )


@_shared_doc
def focal_mean(
    obj: T,
    *,
    size: int = 3,
    shape: Shape = "square",
    min_count: MinCount = 1,
    edge: Edge = "nodata",
) -> T:
    """Mean of the valid pixels in a moving window.

    Running sums: on squares the cost per pixel does not grow with ``size``.

    Parameters
    ----------
    %(window_parameters)s

    %(returns)s

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(9.0).reshape(3, 3), dims=("y", "x"))
    >>> focal_mean(da).values  # border windows have fewer valid pixels
    array([[2. , 2.5, 3. ],
           [3.5, 4. , 4.5],
           [5. , 5.5, 6. ]], dtype=float32)
    >>> focal_mean(da, min_count="all").values  # as convolve(mode="constant", cval=nan)
    array([[nan, nan, nan],
           [nan,  4., nan],
           [nan, nan, nan]], dtype=float32)
    """
    return _focal(obj, "mean", size=size, shape=shape, min_count=min_count, edge=edge)


@_shared_doc
def focal_sum(
    obj: T,
    *,
    size: int = 3,
    shape: Shape = "square",
    min_count: MinCount = 1,
    edge: Edge = "nodata",
) -> T:
    """Sum of the valid pixels in a moving window (NaN where fewer than ``min_count``).

    Parameters
    ----------
    %(window_parameters)s

    %(returns)s

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(9.0).reshape(3, 3), dims=("y", "x"))
    >>> focal_sum(da, edge="nearest").values
    array([[12., 18., 24.],
           [30., 36., 42.],
           [48., 54., 60.]], dtype=float32)
    """
    return _focal(obj, "sum", size=size, shape=shape, min_count=min_count, edge=edge)


@_shared_doc
def focal_std(
    obj: T,
    *,
    size: int = 3,
    shape: Shape = "square",
    min_count: MinCount = 1,
    edge: Edge = "nodata",
    ddof: int = 0,
) -> T:
    """Standard deviation of the valid pixels in a moving window.

    Sums of squares are accumulated in float64 around the mean of each block (each dask
    chunk, or the whole image), which keeps the variance accurate for values far from zero
    (temperatures in kelvin, reflectance x 10000). Blocks that mix very different
    magnitudes, such as unmasked fill values of -9999 next to small data, lose some of that
    accuracy: mask fill values as NaN first.

    Parameters
    ----------
    %(window_parameters)s
    ddof : int, keyword-only
        Delta degrees of freedom: the divisor is ``n - ddof`` for ``n`` valid pixels
        (0, the default, gives the population standard deviation, as ``np.nanstd``).

    %(returns)s

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(9.0).reshape(3, 3), dims=("y", "x"))
    >>> round(float(focal_std(da)[1, 1]), 6)  # population std of 0..8
    2.581989
    """
    return _focal(obj, "std", size=size, shape=shape, min_count=min_count, edge=edge, ddof=ddof)


@_shared_doc
def focal_min(
    obj: T,
    *,
    size: int = 3,
    shape: Shape = "square",
    min_count: MinCount = 1,
    edge: Edge = "nodata",
) -> T:
    """Minimum of the valid pixels in a moving window.

    Parameters
    ----------
    %(window_parameters)s

    %(returns)s

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(9.0).reshape(3, 3), dims=("y", "x"))
    >>> focal_min(da, shape="circle").values  # size 3 circle: the pixel and 4 neighbours
    array([[0., 0., 1.],
           [0., 1., 2.],
           [3., 4., 5.]], dtype=float32)
    """
    return _focal(obj, "min", size=size, shape=shape, min_count=min_count, edge=edge)


@_shared_doc
def focal_max(
    obj: T,
    *,
    size: int = 3,
    shape: Shape = "square",
    min_count: MinCount = 1,
    edge: Edge = "nodata",
) -> T:
    """Maximum of the valid pixels in a moving window.

    Parameters
    ----------
    %(window_parameters)s

    %(returns)s

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(9.0).reshape(3, 3), dims=("y", "x"))
    >>> focal_max(da, edge="reflect").values
    array([[4., 5., 5.],
           [7., 8., 8.],
           [7., 8., 8.]], dtype=float32)
    """
    return _focal(obj, "max", size=size, shape=shape, min_count=min_count, edge=edge)


@_shared_doc
def focal_median(
    obj: T,
    *,
    size: int = 3,
    shape: Shape = "square",
    min_count: MinCount = 1,
    edge: Edge = "nodata",
) -> T:
    """Median of the valid pixels in a moving window.

    For an even count of valid pixels, the mean of the two middle values (as
    ``np.nanmedian``).

    Parameters
    ----------
    %(window_parameters)s

    %(returns)s

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(9.0).reshape(3, 3), dims=("y", "x"))
    >>> focal_median(da).values
    array([[2. , 2.5, 3. ],
           [3.5, 4. , 4.5],
           [5. , 5.5, 6. ]], dtype=float32)
    """
    return _focal(obj, "median", size=size, shape=shape, min_count=min_count, edge=edge)
