"""lazyraster: xarray-native, lazy raster analysis for remote sensing and phenology.

Importing the package registers the ``geo`` accessor on xarray objects::

    import lazyraster
    ds = lazyraster.load("catalogs/sample/catalog.json")
    ndvi = ds.geo.ndvi()
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from lazyraster import accessor as _accessor  # noqa: F401  (registers ``.geo``)
from lazyraster.errors import (
    EmptyResultError,
    LazyrasterError,
    MissingBandError,
    MissingCRSError,
    OutputExistsError,
)
from lazyraster.indices import ndvi, normalized_difference
from lazyraster.phenology import spring_index, spring_index_dataset

try:
    __version__ = version("lazyraster")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "EmptyResultError",
    "LazyrasterError",
    "MissingBandError",
    "MissingCRSError",
    "OutputExistsError",
    "__version__",
    "ndvi",
    "normalized_difference",
    "spring_index",
    "spring_index_dataset",
]
