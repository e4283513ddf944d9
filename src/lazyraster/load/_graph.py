"""The dask graph of loaded rasters: one blockwise read layer per variable.

stackstac builds its arrays in three layers (the asset table, a table of readers, the
reads) and reads each chunk into a new array that a later task copies or casts. Here
stackstac still computes the grid and the coordinates; the arrays are built here, from
the same asset table (:func:`stackstac.prepare.prepare_items`, which ``stackstac.stack``
calls), as one :class:`dask.blockwise.Blockwise` layer per variable: one task per
output chunk, which allocates the chunk filled with ``fill_value`` and decodes each
overlapping item straight into its time step (:meth:`Reader.read_into`). Being
blockwise, the layer fuses with the elementwise work that follows it (``geo.ndvi``
on a fresh load is one task per chunk).

Task keys are deterministic, so that loading the same thing twice gives the same
graph, but they name the version of each file read: a local file's size, modification
time and inode (:func:`file_stamp`) enter the token and the readers' key to open
datasets, so after a file is replaced a new load reads the new file, even when a
distributed scheduler still holds results of the old keys. A remote file (whose
version a ``stat`` cannot tell) gets a fresh random stamp at each load call.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.blockwise import blockwise
from dask.highlevelgraph import HighLevelGraph
from dask.layers import ArraySliceDep
from rasterio import windows

from lazyraster.errors import ReadError
from lazyraster.load._handles import file_stamp
from lazyraster.load._reader import Reader

__all__ = ["file_stamp", "read_arrays"]


def _read_block(
    slices: tuple[slice, slice, slice],
    entries: list[tuple[Reader, windows.Window] | None],
    dtype: np.dtype,
    fill_value: float,
) -> np.ndarray:
    """One chunk: each overlapping item decoded into its step, the other steps ``fill_value``.

    A reader writes every pixel of its step (``fill_value`` outside its item), so only the
    steps no item overlaps are filled: filling the whole chunk first cost as much CPU as
    the decode of a uint16 COG into it.
    """
    times, rows, cols = slices
    window = windows.Window.from_slices(rows, cols)
    out = np.empty((times.stop - times.start, window.height, window.width), dtype)
    failure = None
    try:
        for step, entry in enumerate(entries[times]):
            if entry is not None and windows.intersect(window, entry[1]):
                entry[0].read_into(window, out[step])
            else:
                out[step] = fill_value
    except ReadError as err:
        # without GDAL's errors chained to it, which a distributed client cannot unpickle
        failure = ReadError(str(err), href=err.href, item=err.item, reason=err.reason)
    if failure is not None:
        raise failure
    return out


def read_arrays(
    asset_table: np.ndarray,
    asset_ids: list[str],
    chunks: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    *,
    spec: Any,
    resampling: Any,
    dtype: np.dtype,
    fill_value: float,
    rescale: bool,
    gdal_env: Any,
) -> dict[str, da.Array]:
    """One lazy (time, y, x) array per asset of stackstac's ``asset_table``.

    ``asset_table`` is :func:`stackstac.prepare.prepare_items`'s (items x assets, with
    ``url``, ``bounds`` and ``scale_offset``), ``chunks`` the chunks along time, y and
    x; the other arguments are those of :class:`Reader`.
    """
    stamps: dict[str, Hashable] = {}
    arrays = {}
    for column, asset in enumerate(asset_ids):
        entries: list[tuple[Reader, windows.Window] | None] = []
        versions = []
        for entry in asset_table[:, column]:
            url = entry["url"]
            if not url:
                entries.append(None)
                versions.append(None)
                continue
            href = Reader.unpack(url)[0]
            if href not in stamps:
                stamps[href] = file_stamp(href)
            scale_offset = tuple(entry["scale_offset"]) if rescale else (1, 0)
            bounds = tuple(entry["bounds"])
            reader = Reader(
                url=url,
                spec=spec,
                resampling=resampling,
                dtype=dtype,
                fill_value=fill_value,
                scale_offset=scale_offset,
                gdal_env=gdal_env,
                stamp=stamps[href],
            )
            entries.append((reader, windows.from_bounds(*bounds, spec.transform)))
            versions.append((url, stamps[href], scale_offset, bounds))
        token = tokenize(
            versions,
            (spec.epsg, tuple(spec.bounds), tuple(spec.resolutions_xy)),
            str(resampling),
            dtype.str,
            repr(fill_value),
            chunks,
            repr(gdal_env.__getstate__()),
        )
        name = f"read-{asset}-{token}"
        layer = blockwise(
            _read_block,
            name,
            "tyx",
            ArraySliceDep(chunks),
            "tyx",
            entries,
            None,
            dtype,
            None,
            fill_value,
            None,
            numblocks={},
        )
        graph = HighLevelGraph.from_collections(name, layer, dependencies=())
        arrays[asset] = da.Array(graph, name, chunks, meta=np.empty((0, 0, 0), dtype))
    return arrays
