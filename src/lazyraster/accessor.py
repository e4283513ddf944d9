"""The ``geo`` accessor on :class:`xarray.Dataset` and :class:`xarray.DataArray`.

A thin binding: every method is a module-level function of the analysis layer called
with the accessor's object as first argument, so ``ds.geo.ndvi()`` and
``lazyraster.indices.ndvi(ds)`` are the same call. The accessor keeps no state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import xarray as xr

from lazyraster import focal, indices, masking, phenology
from lazyraster import write as _write


def _bind(func: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``func(obj, ...)`` callable as ``obj.geo.func(...)``."""

    @functools.wraps(func, assigned=("__module__", "__name__", "__qualname__", "__doc__"))
    def method(self: _GeoAccessor, *args: Any, **kwargs: Any) -> Any:
        return func(self._obj, *args, **kwargs)

    return method


class _GeoAccessor:
    """Common base: the wrapped object, and the methods Datasets and DataArrays share."""

    def __init__(self, xarray_obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = xarray_obj

    focal_mean = _bind(focal.focal_mean)
    focal_sum = _bind(focal.focal_sum)
    focal_std = _bind(focal.focal_std)
    focal_min = _bind(focal.focal_min)
    focal_max = _bind(focal.focal_max)
    focal_median = _bind(focal.focal_median)
    to_zarr = _bind(_write.write_zarr)
    to_geotiff = _bind(_write.write_geotiff)


@xr.register_dataset_accessor("geo")
class GeoDatasetAccessor(_GeoAccessor):
    """Analysis methods on Datasets, e.g. ``ds.geo.ndvi()``."""

    ndvi = _bind(indices.ndvi)
    index = _bind(indices.index)
    indices = _bind(indices.indices)
    mask_clouds = _bind(masking.mask_clouds)
    spring_index = _bind(phenology.spring_index_dataset)


@xr.register_dataarray_accessor("geo")
class GeoDataArrayAccessor(_GeoAccessor):
    """Analysis methods on DataArrays."""
