"""Overview pyramids: each level of a ``(band, y, x)`` array half the size of the one before.

Used by :func:`lazyraster.write_geotiff` on each dask block, then on mosaics of 2 x 2
neighbours' coarsest levels, level after level. Sizes round up, as GDAL's overviews:
a level of an ``n``-pixel side has ``ceil(n / 2)`` pixels, and the windows of its last
row and column may be partial.

- ``average`` (the default) carries the sum and the count of the valid full-resolution
  pixels under each pixel from level to level, in numba passes that release the GIL, so
  every level is the exact mean of the valid pixels it covers (nodata and NaN left
  out), however many levels and blocks it took to get there. As in GDAL, integers
  round half up, and a valid mean equal to nodata becomes its neighbour value. The
  sums are float64: exact for every dtype but 64-bit integers beyond 2**53, which
  are averaged to within float64's precision (and never wrap around).
- ``nearest`` keeps the first (top-left) pixel of each window, as GDAL's overviews.
- Every other method is GDAL's own, each level made from the one before, as GDAL makes
  overviews, within each task's region (kernels wider than 2 x 2 do not see across
  regions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.io import MemoryFile

__all__ = ["Level", "halve", "mosaic"]


@dataclass
class Level:
    """A level's pixels; for ``average`` also the sums and counts they are the means of."""

    values: np.ndarray
    sums: np.ndarray | None = None
    counts: np.ndarray | None = None


@numba.njit(nogil=True, cache=True)
def _sum_windows(values, counts_in, nodata, sums, counts):  # pragma: no cover  (compiled)
    """Add ``values`` into the sums and counts of their 2 x 2 windows.

    Pixels (``counts_in`` None) count 1 each where valid (not NaN, not ``nodata``); the
    sums of a level count their ``counts_in``. numba compiles the two cases apart.
    """
    nbands, ny, nx = values.shape
    for b in range(nbands):
        for y in range(ny):
            for x in range(nx):
                v = values[b, y, x]
                if counts_in is None:
                    if v == v and v != nodata:  # NaN compares unequal to itself
                        sums[b, y >> 1, x >> 1] += v
                        counts[b, y >> 1, x >> 1] += 1
                else:
                    sums[b, y >> 1, x >> 1] += v
                    counts[b, y >> 1, x >> 1] += counts_in[b, y, x]


def _replacement(nodata: float, dtype: np.dtype) -> float:
    """The value GDAL writes for a valid mean that happens to equal nodata: its neighbour."""
    if dtype.kind == "f":
        top = np.finfo(dtype).max
        return float(np.nextafter(dtype.type(nodata), dtype.type(-top if nodata == top else top)))
    return nodata - 1 if nodata == np.iinfo(dtype).max else nodata + 1


def _means(sums: np.ndarray, counts: np.ndarray, dtype: np.dtype, nodata: float | None):
    """``sums / counts`` in ``dtype``; nodata (or NaN) where the count is 0."""
    empty = counts == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    means[empty] = 0
    if dtype.kind in "iu":  # integers round half up, as GDAL does, within their range
        info = np.iinfo(dtype)
        top = float(info.max)
        if int(top) > info.max:  # 64-bit: the float of the maximum is past it
            top = float(np.nextafter(top, -np.inf))
        means = np.clip(np.floor(means + 0.5), float(info.min), top)
    out = means.astype(dtype)
    if nodata is None:  # then only floats can have empty windows (all NaN)
        if dtype.kind == "f":
            out[empty] = np.nan
        return out
    fill = dtype.type(nodata)
    if not np.isnan(fill):
        out[(out == fill) & ~empty] = _replacement(float(fill), dtype)
    out[empty] = fill
    return out


def halve(level: Level | np.ndarray, resampling: str, nodata: float | None) -> Level:
    """The next level of ``level`` (or of full-resolution ``(band, y, x)`` data).

    Examples
    --------
    >>> data = np.array([[[1.0, 3.0, 5.0], [np.nan, 2.0, 7.0]]], dtype=np.float32)
    >>> halve(data, "average", None).values
    array([[[2., 6.]]], dtype=float32)
    >>> halve(data, "nearest", None).values
    array([[[1., 5.]]], dtype=float32)
    """
    if isinstance(level, np.ndarray):
        level = Level(level)
    data = level.values
    nbands, ny, nx = data.shape
    shape = (nbands, -(-ny // 2), -(-nx // 2))
    if resampling == "average":
        sums, counts = np.zeros(shape), np.zeros(shape, np.uint32)
        if level.sums is None:  # nodata as stored: float32(1e20) is not 1e20
            missing = np.nan if nodata is None else data.dtype.type(nodata)
            _sum_windows(data, None, missing, sums, counts)
        else:
            _sum_windows(level.sums, level.counts, np.nan, sums, counts)
        return Level(_means(sums, counts, data.dtype, nodata), sums, counts)
    if resampling == "nearest":  # the first pixel of each window, as GDAL's overviews
        return Level(data[:, ::2, ::2])
    # GDAL's windows are exactly 2 x 2 on an even grid: pad odd sides with nodata (or
    # with the edge where there is none)
    pad = ((0, 0), (0, ny % 2), (0, nx % 2))
    if nodata is None:
        data = np.pad(data, pad, mode="edge")
    else:
        data = np.pad(data, pad, constant_values=nodata)
    profile = {"driver": "GTiff", "count": nbands, "dtype": data.dtype.name, "nodata": nodata}
    transform = rasterio.Affine(1, 0, 0, 0, -1, data.shape[1])  # rasterio warns of others
    grid = {"width": data.shape[2], "height": data.shape[1], "transform": transform}
    with MemoryFile() as memfile, memfile.open(**profile, **grid) as mem:
        mem.write(data)
        return Level(mem.read(out_shape=shape, resampling=Resampling[resampling]))


def mosaic(parts: Sequence[tuple[Level, tuple[int, int]]], shape: tuple[int, int, int]) -> Level:
    """One level of ``shape`` from the levels of blocks placed at ``(y0, x0)``."""
    first = parts[0][0]
    out = Level(np.empty(shape, first.values.dtype))
    if first.sums is not None:
        out.sums, out.counts = np.empty(shape), np.empty(shape, np.uint32)
    for part, (y0, x0) in parts:
        window = np.s_[:, y0 : y0 + part.values.shape[1], x0 : x0 + part.values.shape[2]]
        out.values[window] = part.values
        if out.sums is not None:
            out.sums[window], out.counts[window] = part.sums, part.counts
    return out
