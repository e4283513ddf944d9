"""The ``geo`` accessor on :class:`xarray.Dataset` and :class:`xarray.DataArray`.

A thin binding: every method is a module-level function of the analysis layer called
with the accessor's object as first argument, so ``ds.geo.ndvi()`` and
``lazyraster.indices.ndvi(ds)`` are the same call. The accessor keeps no state.

The analysis modules load on first use of one of their methods, so registering the
accessor costs no more than importing xarray. rioxarray's ``.rio`` accessor, which
the package relies on, is likewise made available without importing rioxarray: the
first use of ``.rio`` imports it.
"""

from __future__ import annotations

import functools
import importlib
import types
from collections.abc import Callable
from typing import Any

import xarray as xr


def _bind(func: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``func(obj, ...)`` callable as ``obj.geo.func(...)``."""

    @functools.wraps(func, assigned=("__module__", "__name__", "__qualname__", "__doc__"))
    def method(self: _GeoAccessor, *args: Any, **kwargs: Any) -> Any:
        return func(self._obj, *args, **kwargs)

    return method


class _Method:
    """``lazyraster.<module>.<name>`` as an accessor method, imported on first access."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name
        self.method: Callable[..., Any] | None = None

    def __get__(self, obj: _GeoAccessor | None, owner: type | None = None) -> Any:
        if self.method is None:
            module = importlib.import_module(f"lazyraster.{self.module}")
            self.method = _bind(getattr(module, self.name))
        return self.method if obj is None else types.MethodType(self.method, obj)


class _GeoAccessor:
    """Common base: the wrapped object, and the methods Datasets and DataArrays share."""

    def __init__(self, xarray_obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = xarray_obj

    focal_mean = _Method("focal", "focal_mean")
    focal_sum = _Method("focal", "focal_sum")
    focal_std = _Method("focal", "focal_std")
    focal_min = _Method("focal", "focal_min")
    focal_max = _Method("focal", "focal_max")
    focal_median = _Method("focal", "focal_median")
    to_zarr = _Method("io", "write_zarr")
    to_geotiff = _Method("io", "write_geotiff")


@xr.register_dataset_accessor("geo")
class GeoDatasetAccessor(_GeoAccessor):
    """Analysis methods on Datasets, e.g. ``ds.geo.ndvi()``."""

    ndvi = _Method("indices", "ndvi")
    index = _Method("indices", "index")
    indices = _Method("indices", "indices")
    mask_clouds = _Method("masking", "mask_clouds")
    spring_index = _Method("phenology", "spring_index_dataset")


@xr.register_dataarray_accessor("geo")
class GeoDataArrayAccessor(_GeoAccessor):
    """Analysis methods on DataArrays."""


class _Rio:
    """Placeholder for rioxarray's ``.rio``: imports rioxarray on first use.

    Importing rioxarray registers its accessor in place of this one. The placeholder
    steps aside first: on first use here, or when rioxarray's own registration asks
    ``hasattr(cls, "rio")`` (it then finds nothing, so xarray warns of no override).
    """

    def __get__(self, obj: xr.Dataset | xr.DataArray | None, owner: type) -> Any:
        for cls in (xr.Dataset, xr.DataArray):
            if isinstance(cls.__dict__.get("rio"), _Rio):
                delattr(cls, "rio")
        importlib.import_module("rioxarray")
        return (owner if obj is None else obj).rio


for _cls in (xr.Dataset, xr.DataArray):
    if not hasattr(_cls, "rio"):
        _cls.rio = _Rio()  # type: ignore[attr-defined]
