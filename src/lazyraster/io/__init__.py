"""Writing: Zarr stores and Cloud-Optimized GeoTIFFs, whole or not at all.

Both writers take a Dataset or DataArray, refuse to replace an existing output unless
asked (``mode="w"``), write into a temporary next to the target and move it into place
only once complete, under every dask scheduler::

    from lazyraster.io import write_geotiff, write_zarr
    write_zarr(ndvi, "out/ndvi.zarr")
    write_geotiff(ndvi, "out/ndvi.tif")

``compute=False`` returns a :class:`dask.delayed.Delayed` that does the same when
computed, so several outputs can be computed together (:func:`commit_together` makes
them all or none, also across a killed run: :func:`finish_commits`);
:func:`discard_temporaries` removes what such a compute left. The
same atomic primitives (:func:`output_lock`, :func:`exchange`, :func:`replacing`) keep
the catalog builder's and localizer's outputs whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from lazyraster._imports import lazy_exports as _lazy_exports

if _TYPE_CHECKING:
    from lazyraster.io._atomic import exchange, output_lock, replacing
    from lazyraster.io._journal import finish_commits
    from lazyraster.io._together import commit_together, discard_temporaries
    from lazyraster.io._zarr import write_zarr, zarr_group
    from lazyraster.io.cog._write import write_geotiff

_HOME = {
    "commit_together": "_together",
    "discard_temporaries": "_together",
    "exchange": "_atomic",
    "finish_commits": "_journal",
    "output_lock": "_atomic",
    "replacing": "_atomic",
    "write_geotiff": "cog._write",
    "write_zarr": "_zarr",
    "zarr_group": "_zarr",
}

__all__ = [
    "commit_together",
    "discard_temporaries",
    "exchange",
    "finish_commits",
    "output_lock",
    "replacing",
    "write_geotiff",
    "write_zarr",
    "zarr_group",
]

__getattr__, __dir__ = _lazy_exports(__name__, _HOME)
