"""lazyraster: xarray-native, lazy raster analysis for remote sensing and phenology.

Importing the package registers the ``geo`` accessor on xarray objects::

    import lazyraster
    ds = lazyraster.load("catalogs/sample/catalog.json")
    ndvi = ds.geo.ndvi()
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from lazyraster import accessor as _accessor  # noqa: F401  (registers ``.geo``)
from lazyraster.catalog import (
    build_catalog,
    describe_catalog,
    localize_catalog,
    validate_catalog,
)
from lazyraster.cluster import available_cores, available_memory, cluster, slurm_job_script
from lazyraster.config import load_defaults as _load_defaults
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
from lazyraster.indices import (  # not ``indices``: it would shadow the module
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

_load_defaults()

try:
    __version__ = version("lazyraster")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

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
    "write_geotiff",
    "write_zarr",
    "__version__",
]
