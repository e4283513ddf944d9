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
import types
from typing import TYPE_CHECKING, Any

from lazyraster._imports import after_import as _after_import
from lazyraster._imports import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from lazyraster._kernels import warmup
    from lazyraster.catalog import (
        build_catalog,
        describe_catalog,
        localize_catalog,
        search,
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
    from lazyraster.io import write_geotiff, write_zarr
    from lazyraster.load import load, resolve_items
    from lazyraster.phenology import spring_index, spring_index_dataset
    from lazyraster.pipeline import load_spec, plan_pipeline, run_pipeline

#: Public name -> the module (under ``lazyraster.``) that defines it.
_HOME = {
    "available_cores": "cluster",
    "available_memory": "cluster",
    "build_catalog": "catalog",
    "CatalogError": "errors",
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
    "search": "catalog",
    "slurm_job_script": "cluster",
    "SpecError": "errors",
    "spring_index": "phenology",
    "spring_index_dataset": "phenology",
    "validate_catalog": "catalog",
    "warmup": "_kernels",
    "write_geotiff": "io",
    "write_zarr": "io",
}

#: Submodules reachable as attributes (``lazyraster.focal``) without importing them.
_SUBMODULES = frozenset(
    {
        "accessor",
        "catalog",
        "cli",
        "cluster",
        "config",
        "errors",
        "focal",
        "indices",
        "io",
        "load",
        "masking",
        "phenology",
        "pipeline",
        "testing",
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


_module_getattr, __dir__ = _lazy_exports(__name__, _HOME, _SUBMODULES)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562) and keep the name bound."""
    if name != "__version__":
        return _module_getattr(name)
    from importlib.metadata import PackageNotFoundError, version

    try:  # as config.package_version, which --version must not import
        value = version("lazyraster")
    except PackageNotFoundError:
        value = "0+unknown"
    globals()[name] = value
    return value


def _register_accessor(xarray: types.ModuleType) -> None:
    importlib.import_module("lazyraster.accessor")


def _merge_defaults(dask_config: types.ModuleType) -> None:
    importlib.import_module("lazyraster.config").load_defaults()


_after_import("xarray", _register_accessor)
_after_import("dask.config", _merge_defaults)
