"""Loading: STAC items become chunked, CRS-aware xarray Datasets.

The package is callable: ``lazyraster.load(source, ...)`` is :func:`load`::

    import lazyraster
    ds = lazyraster.load("catalogs/sample/catalog.json", bands=["red", "nir"])
"""

from __future__ import annotations

from lazyraster._imports import CallableModule as _CallableModule
from lazyraster.load._grid import check_bbox
from lazyraster.load._items import asset_kind
from lazyraster.load._load import load, resolve_items
from lazyraster.load._readable import READ_ERRORS, readable, unreadable, with_item

__all__ = [
    "READ_ERRORS",
    "asset_kind",
    "check_bbox",
    "load",
    "readable",
    "resolve_items",
    "unreadable",
    "with_item",
]

_CallableModule.install(__name__, load)
