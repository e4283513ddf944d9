"""Static STAC catalogs over local files: build, describe, validate and localize.

Sentinel-2 L2A SAFE folders, GeoTIFF/COG files and netCDF files become a
self-contained static catalog with relative hrefs and the projection, eo, raster and
file fields that loaders need::

    from lazyraster.catalog import build_catalog, validate_catalog
    report = build_catalog(["/scratch/s2", "/scratch/daymet"], "catalogs/mine",
                           layout="${year}", checksum=True)
    assert validate_catalog("catalogs/mine").ok
"""

from __future__ import annotations

from lazyraster.catalog.build import BuildReport, Problem, build_catalog
from lazyraster.catalog.describe import describe_catalog, format_description
from lazyraster.catalog.localize import LocalizeReport, localize_catalog
from lazyraster.catalog.validate import ValidationReport, validate_catalog

__all__ = [
    "BuildReport",
    "LocalizeReport",
    "Problem",
    "ValidationReport",
    "build_catalog",
    "describe_catalog",
    "format_description",
    "localize_catalog",
    "validate_catalog",
]
