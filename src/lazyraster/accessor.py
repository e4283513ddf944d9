"""The ``geo`` accessor on :class:`xarray.Dataset` and :class:`xarray.DataArray`.

A thin binding: every method is a module-level function of the analysis layer called
with the accessor's object as first argument, so ``ds.geo.ndvi()`` and
``lazyraster.indices.ndvi(ds)`` are the same call. The accessor keeps no state.

The analysis modules load on first use of one of their methods, so registering the
accessor costs no more than importing xarray. rioxarray's ``.rio`` accessor, which
the package relies on, is likewise made available without importing rioxarray: a
stand-in registered under ``rio`` through xarray's public
:func:`~xarray.register_dataset_accessor` imports rioxarray on first use, and
rioxarray's own registration then takes the name. Nothing else is set on xarray's
classes.

Names kept for one release (each call warns with ``FutureWarning``): ``geo.to_zarr``
(now ``geo.write_zarr``, as :func:`lazyraster.write_zarr`: it refuses to overwrite,
unlike :meth:`xarray.Dataset.to_zarr`), ``geo.spring_index`` (now
``geo.spring_index_dataset``, the function it calls) and ``geo.indices`` (now
``geo.compute_indices``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec


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


class _Renamed:
    """An accessor name kept for one release: each call warns, then calls the new name."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.old = new

    def __set_name__(self, owner: type, name: str) -> None:
        self.old = name

    def __get__(self, obj: _GeoAccessor | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        method = getattr(obj, self.new)

        @functools.wraps(method)
        def renamed(*args: Any, **kwargs: Any) -> Any:
            warnings.warn(
                f".geo.{self.old} is renamed .geo.{self.new}; the old name goes in the "
                "next release",
                FutureWarning,
                stacklevel=2,
            )
            return method(*args, **kwargs)

        return renamed


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
    write_zarr = _Method("io", "write_zarr")
    to_zarr = _Renamed("write_zarr")
    to_geotiff = _Method("io", "write_geotiff")
    plot = _Method("plot", "plot")


@xr.register_dataset_accessor("geo")
class GeoDatasetAccessor(_GeoAccessor):
    """Analysis methods on Datasets, e.g. ``ds.geo.ndvi()``."""

    ndvi = _Method("indices", "ndvi")
    index = _Method("indices", "index")
    compute_indices = _Method("indices", "compute_indices")
    indices = _Renamed("compute_indices")
    mask_clouds = _Method("masking", "mask_clouds")
    spring_index_dataset = _Method("phenology", "spring_index_dataset")
    spring_index = _Renamed("spring_index_dataset")


@xr.register_dataarray_accessor("geo")
class GeoDataArrayAccessor(_GeoAccessor):
    """Analysis methods on DataArrays."""


#: xarray's warning when rioxarray registers ``rio`` over the stand-in below.
_OVERRIDE = r"registration of accessor .* under name 'rio' "


def _import_rioxarray() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_OVERRIDE)
        importlib.import_module("rioxarray")


class _Rioxarray:
    """rioxarray's ``.rio`` before rioxarray is imported: its first use imports it.

    Importing rioxarray registers rioxarray's accessor under the same name, so the
    object returned is rioxarray's own (``RasterArray`` or ``RasterDataset``).
    """

    def __new__(cls, obj: xr.Dataset | xr.DataArray) -> Any:  # type: ignore[misc]
        _import_rioxarray()
        return obj.rio


class _QuietLoader:
    """rioxarray's own loader, run without xarray's warning that ``rio`` is taken over."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_OVERRIDE)
            self.loader.exec_module(module)


class _QuietFinder:
    """Finds rioxarray with the other finders, once, and gives it :class:`_QuietLoader`.

    However rioxarray is imported (by the loader, the writers or the user), its
    registration replaces the stand-in silently.
    """

    def find_spec(
        self, fullname: str, path: Any, target: types.ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "rioxarray":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _QuietLoader(spec.loader)
        return spec


if "rioxarray" not in sys.modules:
    sys.meta_path.insert(0, _QuietFinder())
    xr.register_dataset_accessor("rio")(_Rioxarray)
    xr.register_dataarray_accessor("rio")(_Rioxarray)
