"""The tasks of the COG writer's dask graph: blocks, tiles, levels, overview factors.

Each block task (:func:`_write_block`) compresses one dask block into tiles, together
with the overview levels whose tiles fall inside the block, each level into a file of
its own; each coarser level is made by tasks (:func:`_write_group`) that mosaic 2 x 2 of
the tasks before. :func:`_block_profile` sets the tiles' format (the same in every
file), :func:`_tile_aligned` and :func:`_inner_levels` the blocks,
:func:`_overview_factors` the levels, and :func:`_level_tiles` finds each level's tiles
in the tasks' files for the final assembly (:mod:`lazyraster.io.cog._write`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dask.array as dsa
import numpy as np
import rasterio
from affine import Affine

from lazyraster.io.cog import _tiff

if TYPE_CHECKING:
    from lazyraster.io.cog import _overviews as _overview

_PREDICTOR_COMPRESSIONS = {"deflate", "lzw", "zstd", "lzma"}
_TABLE_COMPRESSIONS = {"jpeg"}


# a level's tiles in a file: the file, (height, width), tile offsets, tile sizes
_TileLevel = tuple[str, tuple[int, int], np.ndarray, np.ndarray]
# what a task wrote: the tiles of consecutive levels, the first of those levels, and the
# task's origin in full-resolution pixels
_Written = tuple[list[_TileLevel], int, tuple[int, int]]


def _block_profile(
    dtype: np.dtype,
    count: int,
    *,
    compress: str | None,
    predictor: int | None,
    blocksize: int,
) -> dict[str, Any]:
    """Creation options of every file GDAL writes for one GeoTIFF: the format of its tiles."""
    comp = (compress or "none").lower()
    if comp in _TABLE_COMPRESSIONS:
        raise ValueError(
            f"compress={compress!r} shares tables across a file's tiles, which blocks written "
            "in parallel cannot do; use 'deflate', 'zstd', 'lzw' or 'webp' instead"
        )
    if predictor is None:
        if comp in _PREDICTOR_COMPRESSIONS:
            predictor = 3 if np.issubdtype(dtype, np.floating) else 2
        else:
            predictor = 1
    if predictor not in (1, 2, 3):
        raise ValueError(f"predictor must be 1 (none), 2 (integers) or 3 (floats), not {predictor}")
    if predictor == 3 and dtype.kind != "f":
        raise ValueError(f"predictor 3 is for floating-point data, not {dtype}; use 2 or 1")
    return {
        "driver": "GTiff",
        "count": count,
        "dtype": dtype.name,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": comp,
        "predictor": predictor,
        "interleave": "pixel",
    }


def _write_tiles(
    path: str,
    data: np.ndarray,
    profile: Mapping[str, Any],
    georef: Mapping[str, Any],
    nodata: float | None,
) -> _TileLevel:
    """Write ``data`` ``(band, y, x)`` as compressed tiles to ``path``.

    DEFLATE tiles are made here (:func:`lazyraster.io.cog._tiff.encode_tiles`) and simply
    concatenated; other compressions are left to GDAL, in a tiled GeoTIFF. Returns the
    file, the data's shape, and the offsets and sizes of its tiles.
    """
    dtype, predictor = np.dtype(profile["dtype"]), profile["predictor"]
    if profile["compress"] == "deflate" and _tiff.can_encode(dtype, predictor):
        offsets, sizes = [], []
        with open(path, "wb") as f:
            for encoded in _tiff.encode_tiles(data, profile["blockxsize"], predictor):
                offsets.append(f.tell())
                sizes.append(len(encoded))
                f.write(encoded)
        return (path, data.shape[1:], np.array(offsets), np.array(sizes))
    shape = {"width": data.shape[2], "height": data.shape[1]}
    with (
        rasterio.Env(GDAL_CACHEMAX=64 * 2**20),  # bytes: rasterio passes it to GDALSetCacheMax64
        rasterio.open(path, "w", nodata=nodata, **shape, **profile, **georef) as dst,
    ):
        dst.write(data)
    (ifd,) = _tiff.read_ifds(path)
    return (path, ifd.shape, *ifd.tiles)


def _level_georef(georef: Mapping[str, Any], origin: tuple[int, int], level: int) -> dict:
    """CRS and transform of the pixels of overview ``level`` from full-resolution ``origin``."""
    y0, x0 = origin
    shift = Affine.translation(x0, y0) * Affine.scale(2**level)
    return {**georef, "transform": georef["transform"] * shift}


def _write_block(
    block: np.ndarray,
    path: str,
    *,
    origin: tuple[int, int],
    profile: Mapping[str, Any],
    georef: Mapping[str, Any],
    nodata: float | None,
    inner: int,
    handoff: bool,
    resampling: str,
) -> tuple[_Written, _overview.Level | None]:
    """Compress one block ``(band, y, x)`` and its first ``inner`` overviews (runs in a task).

    Each level goes to a file of its own (``path``, then ``path`` with ``.ov<k>``).
    Returns what was written and, with ``handoff``, the next level, which
    :func:`_write_group` combines with its neighbours'.
    """
    block = np.asarray(block)
    if inner or handoff:  # numba's kernels: a write without overviews never loads numba
        from lazyraster.io.cog import _overviews as _overview
    if nodata is not None and not np.isnan(nodata) and np.issubdtype(block.dtype, np.floating):
        block = np.where(np.isnan(block), block.dtype.type(nodata), block)
    levels = [_write_tiles(path, block, profile, _level_georef(georef, origin, 0), nodata)]
    level: _overview.Level | np.ndarray = block
    for k in range(1, inner + 1):
        level = _overview.halve(level, resampling, nodata)
        where = _level_georef(georef, origin, k)
        levels.append(_write_tiles(f"{path}.ov{k}", level.values, profile, where, nodata))
    handed = _overview.halve(level, resampling, nodata) if handoff else None
    return (levels, 0, origin), handed


def _write_group(
    handed: Sequence[_overview.Level],
    origins: Sequence[tuple[int, int]],
    path: str,
    *,
    level: int,
    profile: Mapping[str, Any],
    georef: Mapping[str, Any],
    nodata: float | None,
    handoff: bool,
    resampling: str,
) -> tuple[_Written, _overview.Level | None]:
    """Mosaic up to 2 x 2 neighbours' handed-over ``level``, write its tiles, hand over the next.

    ``origins`` are the neighbours' origins in full-resolution pixels, the first one the
    group's own; the group's region is whole tiles of ``level``, so its tiles are the
    file's own.
    """
    from lazyraster.io.cog import _overviews as _overview

    y0, x0 = origins[0]
    parts = [
        (part, ((y >> level) - (y0 >> level), (x >> level) - (x0 >> level)))
        for part, (y, x) in zip(handed, origins, strict=True)
    ]
    height = max(y + part.values.shape[1] for part, (y, _) in parts)
    width = max(x + part.values.shape[2] for part, (_, x) in parts)
    merged = _overview.mosaic(parts, (parts[0][0].values.shape[0], height, width))
    where = _level_georef(georef, (y0, x0), level)
    tiles = _write_tiles(path, merged.values, profile, where, nodata)
    handed_on = _overview.halve(merged, resampling, nodata) if handoff else None
    return ([tiles], level, (y0, x0)), handed_on


def _level_tiles(
    parts: Sequence[tuple[_TileLevel, tuple[int, int]]], shape: tuple[int, int], tile: int
) -> list[tuple[str, int, int]]:
    """Row-major ``(file, offset, size)`` of one level's tiles, from the files of its parts.

    ``parts`` gives, for each block, its tiles of the level and its origin in the
    level's pixels (on a tile boundary).
    """
    cells: list[tuple[str, int, int]] = []
    grid = np.full((-(-shape[0] // tile), -(-shape[1] // tile)), -1)
    for (path, (height, width), offsets, sizes), (y0, x0) in parts:
        rows, cols = -(-height // tile), -(-width // tile)
        r0, c0 = y0 // tile, x0 // tile
        grid[r0 : r0 + rows, c0 : c0 + cols] = len(cells) + np.arange(rows * cols).reshape(
            rows, cols
        )
        cells += [(path, o, s) for o, s in zip(offsets.tolist(), sizes.tolist(), strict=True)]
    return [cells[i] for i in grid.ravel()]


def _overview_factors(height: int, width: int, blocksize: int, overviews: bool | int) -> list[int]:
    """Overview factors 2, 4, ... down to one tile (``True``), none, or that many levels."""
    if overviews is False:
        return []
    factors = []
    f = 2
    while max(height, width) / (f // 2) > blocksize:
        factors.append(f)
        f *= 2
    if overviews is not True:
        factors = factors[: int(overviews)]
    return factors


def _tile_aligned(arr: dsa.Array, tile: int) -> dsa.Array:
    """``arr`` ``(band, y, x)`` in one band chunk, and regular y and x chunks of whole tiles.

    Regular chunks of whole tiles (the last one may be smaller) are kept; others become
    the nearest power of two of tiles.
    """
    chunks: list[Any] = [-1]
    for sizes in arr.chunks[1:]:
        first = sizes[0]
        regular = all(s == first for s in sizes[:-1]) and sizes[-1] <= first
        if len(sizes) == 1 or (regular and first % tile == 0):
            chunks.append(sizes)
        else:
            chunks.append(tile * 2 ** max(0, round(float(np.log2(max(sizes) / tile)))))
    return arr.rechunk(tuple(chunks), method=_rechunk_method())


def _rechunk_method() -> str | None:
    """The rechunk method dask would choose, chosen without importing distributed.

    dask picks ``"p2p"`` only for a distributed client, and imports distributed to look
    for one (about a second in a process that never needed it, as a client of dask's
    ``processes`` scheduler); without distributed imported there is no client.
    """
    return None if "distributed" in sys.modules else "tasks"


def _inner_levels(chunks: Sequence[tuple[int, ...]], tile: int, levels: int) -> int:
    """How many overview levels blocks can hold: each block starts on a tile of them."""
    inner = 0
    while inner < levels and all(
        s % (tile * 2 ** (inner + 1)) == 0 for sizes in chunks for s in sizes[:-1]
    ):
        inner += 1
    return inner
