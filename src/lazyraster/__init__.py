"""lazyraster: xarray-native, lazy raster analysis for remote sensing and phenology.

Importing the package registers the ``geo`` accessor on xarray objects::

    import lazyraster
    ds = lazyraster.load("catalogs/sample/catalog.json")
    ndvi = ds.geo.ndvi()

The import itself is cheap: each public name loads its module on first use (PEP 562),
the accessor is registered as soon as xarray is imported (at once if it already is),
and the packaged defaults reach ``dask.config`` as soon as dask's configuration is
imported. ``lazyraster --help`` therefore loads neither xarray nor dask.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from lazyraster._imports import after_import as _after_import

if TYPE_CHECKING:
    from lazyraster._kernels import warmup
    from lazyraster.catalog import (
        build_catalog,
        describe_catalog,
        localize_catalog,
        validate_catalog,
    )
    from lazyraster.cluster import available_cores, available_memory, cluster, slurm_job_script
    from lazyraster.errors import (
        CatalogError,
        ClusterConfigError,
        ClusterStartError,
        EmptyResultError,
        LazyrasterError,
        MissingBandError,
        MissingCRSError,
        OutputExistsError,
        SpecError,
    )
    from lazyraster.focal import (
        focal_max,
        focal_mean,
        focal_median,
        focal_min,
        focal_std,
        focal_sum,
    )
    from lazyraster.indices import (
        index,
        index_info,
        list_indices,
        ndvi,
        normalized_difference,
    )
    from lazyraster.load import load, resolve_items
    from lazyraster.phenology import spring_index, spring_index_dataset
    from lazyraster.pipeline import load_spec, plan_pipeline, run_pipeline
    from lazyraster.search import search
    from lazyraster.write import write_geotiff, write_zarr

#: Public name -> the module (under ``lazyraster.``) that defines it.
_HOME = {
    "available_cores": "cluster",
    "available_memory": "cluster",
    "build_catalog": "catalog",
    "CatalogError": "errors",
    "cluster": "cluster",
    "ClusterConfigError": "errors",
    "ClusterStartError": "errors",
    "describe_catalog": "catalog",
    "EmptyResultError": "errors",
    "focal_max": "focal",
    "focal_mean": "focal",
    "focal_median": "focal",
    "focal_min": "focal",
    "focal_std": "focal",
    "focal_sum": "focal",
    "index": "indices",
    "index_info": "indices",
    "LazyrasterError": "errors",
    "list_indices": "indices",
    "load": "load",
    "load_spec": "pipeline",
    "localize_catalog": "catalog",
    "MissingBandError": "errors",
    "MissingCRSError": "errors",
    "ndvi": "indices",
    "normalized_difference": "indices",
    "OutputExistsError": "errors",
    "plan_pipeline": "pipeline",
    "resolve_items": "load",
    "run_pipeline": "pipeline",
    "search": "search",
    "slurm_job_script": "cluster",
    "SpecError": "errors",
    "spring_index": "phenology",
    "spring_index_dataset": "phenology",
    "validate_catalog": "catalog",
    "warmup": "_kernels",
    "write_geotiff": "write",
    "write_zarr": "write",
}

#: Submodules reachable as attributes (``lazyraster.focal``) without importing them.
_SUBMODULES = frozenset(
    {
        "accessor",
        "catalog",
        "cli",
        "cluster",
        "config",
        "demo",
        "errors",
        "focal",
        "indices",
        "load",
        "masking",
        "phenology",
        "pipeline",
        "search",
        "testing",
        "write",
    }
)

__all__ = [
    "available_cores",
    "available_memory",
    "build_catalog",
    "CatalogError",
    "cluster",
    "ClusterConfigError",
    "ClusterStartError",
    "describe_catalog",
    "EmptyResultError",
    "focal_max",
    "focal_mean",
    "focal_median",
    "focal_min",
    "focal_std",
    "focal_sum",
    "index",
    "index_info",
    "LazyrasterError",
    "list_indices",
    "load",
    "load_spec",
    "localize_catalog",
    "MissingBandError",
    "MissingCRSError",
    "ndvi",
    "normalized_difference",
    "OutputExistsError",
    "plan_pipeline",
    "resolve_items",
    "run_pipeline",
    "search",
    "slurm_job_script",
    "SpecError",
    "spring_index",
    "spring_index_dataset",
    "validate_catalog",
    "warmup",
    "write_geotiff",
    "write_zarr",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562) and keep the name bound."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value: Any = version("lazyraster")
        except PackageNotFoundError:  # running from a source tree that is not installed
            value = "0+unknown"
    elif name in _HOME:
        value = getattr(importlib.import_module(f"lazyraster.{_HOME[name]}"), name)
    elif name in _SUBMODULES:
        return importlib.import_module(f"lazyraster.{name}")
    else:
        raise AttributeError(f"module 'lazyraster' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})


class _Package(types.ModuleType):
    """The package module: a function keeps its name when its namesake module loads.

    Importing ``lazyraster.load`` binds the module as attribute ``load`` of the package;
    ``lazyraster.load`` must stay the function (likewise ``search`` and ``cluster``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _HOME.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def _register_accessor(xarray: types.ModuleType) -> None:
    importlib.import_module("lazyraster.accessor")


def _merge_defaults(dask_config: types.ModuleType) -> None:
    importlib.import_module("lazyraster.config").load_defaults()


_after_import("xarray", _register_accessor)
_after_import("dask.config", _merge_defaults)
