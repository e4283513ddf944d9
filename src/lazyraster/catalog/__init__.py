"""Catalogs: search STAC APIs, and build, describe, validate and localize static catalogs.

Sentinel-2 L2A SAFE folders, GeoTIFF/COG files and netCDF files become a
self-contained static catalog with relative hrefs and the projection, eo, raster and
file fields that loaders need::

    from lazyraster.catalog import build_catalog, validate_catalog
    report = build_catalog(["/scratch/s2", "/scratch/daymet"], "catalogs/mine",
                           layout="${year}", checksum=True)
    assert validate_catalog("catalogs/mine").ok
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from lazyraster._imports import lazy_exports as _lazy_exports

if _TYPE_CHECKING:
    from lazyraster.catalog._build import BuildReport, Problem, build_catalog
    from lazyraster.catalog._describe import describe_catalog, format_description
    from lazyraster.catalog._layout import check_layout, compile_pattern
    from lazyraster.catalog._localize import LocalizeReport, localize_catalog
    from lazyraster.catalog._search import (
        RetryingStacIO,
        filter_items,
        parse_datetime,
        read_items,
        search,
    )
    from lazyraster.catalog._stac import parse_instant
    from lazyraster.catalog._validate import ValidationReport, validate_catalog, validate_document
    from lazyraster.catalog.formats.netcdf import parse_crs

_HOME = {
    "BuildReport": "_build",
    "Problem": "_build",
    "build_catalog": "_build",
    "check_layout": "_layout",
    "compile_pattern": "_layout",
    "parse_crs": "formats.netcdf",
    "parse_instant": "_stac",
    "describe_catalog": "_describe",
    "format_description": "_describe",
    "LocalizeReport": "_localize",
    "localize_catalog": "_localize",
    "filter_items": "_search",
    "parse_datetime": "_search",
    "read_items": "_search",
    "RetryingStacIO": "_search",
    "search": "_search",
    "ValidationReport": "_validate",
    "validate_catalog": "_validate",
    "validate_document": "_validate",
}

__all__ = [
    "BuildReport",
    "LocalizeReport",
    "Problem",
    "RetryingStacIO",
    "ValidationReport",
    "build_catalog",
    "check_layout",
    "compile_pattern",
    "describe_catalog",
    "filter_items",
    "format_description",
    "localize_catalog",
    "parse_crs",
    "parse_datetime",
    "parse_instant",
    "read_items",
    "search",
    "validate_catalog",
    "validate_document",
]

__getattr__, __dir__ = _lazy_exports(__name__, _HOME)
