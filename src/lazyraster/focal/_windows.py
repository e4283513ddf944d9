"""Window shapes, option checks and the block application numpy and dask share."""

from __future__ import annotations

import math
from typing import Any

import dask.array as dsa
import numpy as np
from dask.array.overlap import ensure_minimum_chunksize

from lazyraster.focal._kernels import (
    _MAX_SIZE,
    _MEDIAN,
    _STATS,
    _STD,
    _block_shift,
    _box_extreme,
    _box_moments_finite,
    _box_moments_inf,
    _span_moments,
    _span_order,
)

_SHAPES = ("square", "circle")
_EDGES = ("nodata", "reflect", "nearest")
_NP_PAD = {"reflect": "symmetric", "nearest": "edge"}  # "nodata" pads with NaN
_DASK_BOUNDARY: dict[str, Any] = {"nodata": np.nan, "reflect": "reflect", "nearest": "nearest"}


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
            if _box_moments_finite(p, r, code, min_count, ddof, shift, out):
                _box_moments_inf(p, r, code, min_count, ddof, shift, out)
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
