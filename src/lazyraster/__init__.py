"""lazyraster: xarray-native, lazy raster analysis for remote sensing and phenology.

Importing the package registers the ``geo`` accessor on xarray objects::

    import lazyraster
    ds = lazyraster.load("catalogs/sample/catalog.json")
    ndvi = ds.geo.ndvi()
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from lazyraster import accessor as _accessor  # noqa: F401  (registers ``.geo``)
from lazyraster.cluster import available_cores, available_memory, cluster, slurm_job_script
from lazyraster.config import load_defaults as _load_defaults
from lazyraster.errors import (
    ClusterConfigError,
    ClusterStartError,
    EmptyResultError,
    LazyrasterError,
    MissingBandError,
    MissingCRSError,
    OutputExistsError,
)
from lazyraster.indices import ndvi, normalized_difference
from lazyraster.load import load, resolve_items
from lazyraster.search import search

_load_defaults()

try:
    __version__ = version("lazyraster")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ClusterConfigError",
    "ClusterStartError",
    "EmptyResultError",
    "LazyrasterError",
    "MissingBandError",
    "MissingCRSError",
    "OutputExistsError",
    "__version__",
    "available_cores",
    "available_memory",
    "cluster",
    "load",
    "ndvi",
    "normalized_difference",
    "resolve_items",
    "search",
    "slurm_job_script",
]
