"""From STAC items to a lazy, CRS-aware :class:`xarray.Dataset`.

``load`` accepts a static catalog (path or URL of a catalog, collection or item JSON),
a :class:`pystac.ItemCollection`, or a sequence of :class:`pystac.Item`, and returns a
Dataset with dims ``(time, y, x)``: one float variable per band, named by the band's
STAC ``eo:common_name`` (the asset key where there is none), nodata as NaN,
``raster:bands`` scale and offset applied, coordinates at pixel centres and the CRS
written the rioxarray way (``spatial_ref`` coordinate, ``ds.rio.crs``).

The work is in private modules: which bands of which items, by what name
(:mod:`~lazyraster.load._items`), the output grid (:mod:`~lazyraster.load._grid`),
rasters through stackstac (:mod:`~lazyraster.load._rasters`), netCDF/Zarr through
xarray (:mod:`~lazyraster.load._arrays`). This module checks the options and
dispatches by asset kind.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pystac
import xarray as xr
from rasterio.enums import Resampling

from lazyraster.catalog import filter_items, search
from lazyraster.errors import EmptyResultError, MissingBandError
from lazyraster.load._arrays import load_arrays, refuse_options
from lazyraster.load._grid import check_bbox
from lazyraster.load._items import (
    ItemsLike,
    _check_complete,
    _item_bands,
    _item_time,
    _select_bands,
    asset_kind,
)
from lazyraster.load._rasters import load_rasters

__all__ = ["load", "resolve_items"]


def resolve_items(
    source: ItemsLike,
    *,
    collections: str | Iterable[str] | None = None,
    bbox: Sequence[float] | None = None,
    datetime: Any = None,
    query: Mapping[str, Any] | None = None,
    filter: str | Mapping[str, Any] | None = None,
) -> list[pystac.Item]:
    """Return the items of ``source`` that pass the filters.

    Parameters
    ----------
    source : str, path, pystac.Item, pystac.ItemCollection or sequence of pystac.Item
        A STAC API URL, a path or URL to a static catalog, collection or item, or items.
    collections, bbox, datetime, query, filter
        As in :func:`lazyraster.search`; applied to given items too.

    Returns
    -------
    list of pystac.Item
        In the order of the source.

    Examples
    --------
    >>> items = resolve_items("catalogs/sample/catalog.json", datetime="2021")
    >>> [item.id for item in items]
    ['S2_L3B_21JXN_20210319']
    """
    filters = {
        "collections": collections,
        "bbox": bbox,
        "datetime": datetime,
        "query": query,
        "filter": filter,
    }
    if isinstance(source, str | os.PathLike):
        return list(search(source, **filters))
    if isinstance(source, pystac.Item):
        items = [source]
    elif isinstance(source, pystac.ItemCollection | Sequence):
        items = list(source)
        bad = [type(i).__name__ for i in items if not isinstance(i, pystac.Item)]
        if bad:
            raise TypeError(f"expected pystac.Item objects, got {sorted(set(bad))}")
    else:
        raise TypeError(
            "source must be a catalog path or URL, a pystac.ItemCollection or a sequence of "
            f"pystac.Item, not {type(source).__name__}"
        )
    return list(filter_items(items, **filters))


def load(
    source: ItemsLike,
    *,
    bands: Sequence[str] | None = None,
    collections: str | Iterable[str] | None = None,
    bbox: Sequence[float] | None = None,
    datetime: Any = None,
    query: Mapping[str, Any] | None = None,
    filter: str | Mapping[str, Any] | None = None,
    crs: Any = None,
    resolution: float | None = None,
    chunks: int | Mapping[str, int] | None = None,
    groupby: str | None = None,
    resampling: str | None = None,
    dtype: Any = None,
    scale: bool = True,
    fill: float = np.nan,
    nodata: float | Mapping[str, float] | None = None,
    missing: str = "error",
    gdal: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Load STAC items as a lazy Dataset with dims (time, y, x) and one variable per band.

    Parameters
    ----------
    source : str, path, pystac.ItemCollection or sequence of pystac.Item
        A STAC API URL, a static catalog, collection or item (path or URL), or items.
    bands : sequence of str, optional
        Bands to load, by STAC common name (``"red"``) or asset key (``"B04"``; the key
        of a multi-band asset loads each of its bands). Default: every single-band
        raster asset, and the multi-band assets whose bands have names of their own.
    collections, datetime, query, filter : optional
        Which items to load, as in :func:`lazyraster.search`.
    bbox : (west, south, east, north), optional
        Area to load, in longitude/latitude degrees; also selects the items.
    crs : int, str or pyproj.CRS, optional
        Output CRS (an EPSG code, ``"AUTHORITY:CODE"``, WKT or PROJJSON). Default: the
        items' common CRS. For netCDF/Zarr assets: the CRS of files that carry no CF
        grid mapping.
    resolution : float, optional
        Output pixel size in CRS units. Default: the finest of the assets. Refused for
        netCDF/Zarr assets, which load on their own grid (as are ``groupby``,
        ``resampling`` and ``gdal``).
    chunks : int or dict, optional
        Dask chunk sizes; an int for y and x, or a dict with ``time``, ``y``, ``x``.
        Default for raster assets: y and x whole when at most 1024 pixels, else about
        1024 in whole blocks of the source; as many time steps as fit in dask's
        ``array.chunk-size``. A dict's missing names are ``{"time": 1, "y": 1024,
        "x": 1024}``.
    groupby : {None, "solar_day"}
        ``"solar_day"`` mosaics the items of one local solar day (neighbouring tiles of
        one overpass) into one time step; the first valid pixel wins.
    resampling : str, optional
        Rasterio resampling name used when reprojecting or resampling (``"nearest"``).
    dtype : dtype, optional
        Floating output dtype (float32 by default).
    scale : bool
        Apply ``raster:bands`` scale and offset (per item, so Sentinel-2 processing
        baselines with different offsets come out alike); for netCDF/Zarr assets, the
        files' CF ``scale_factor`` and ``add_offset``.
    fill : float
        Value for nodata and for pixels outside an item's footprint.
    nodata : float or dict, optional
        Nodata of the DNs, overriding the catalog: one value for every band, or a dict
        band (variable name or asset key) -> value. Default: ``raster:bands`` ``nodata``
        (or STAC 1.1 ``nodata``), else the file's nodata tag, else none; for
        netCDF/Zarr assets, the files' ``_FillValue`` and ``missing_value``.
    missing : {"error", "nan"}
        What to do when an item has no asset for a chosen band: raise (default), or
        load that band as ``fill`` there.
    gdal : dict, optional
        GDAL configuration options on top of ``lazyraster.gdal`` in dask's config
        (see ``lazyraster.yaml``). They travel with the tasks to every worker.

    Returns
    -------
    xarray.Dataset
        Lazy (dask-backed), dims (time, y, x), time sorted ascending, an ``id``
        coordinate along time, the CRS in ``spatial_ref``.

    Raises
    ------
    EmptyResultError
        If no item passes the filters.
    MissingBandError
        If a requested band is not among the items' raster assets, an item lacks one
        (unless ``missing="nan"``), or the items have no data asset at all.
    MissingCRSError
        If the assets' CRS is not known (pass ``crs=``) or differs between items.
    CatalogError
        If a nodata value (the catalog's, or ``nodata=``) is not a number.
    ValueError
        For a bbox that is not (west, south, east, north) in degrees, a resolution that
        is not a positive number, or a grid larger than ``lazyraster.load.max-pixels``;
        for an option netCDF/Zarr assets refuse (the message names the fix).

    Examples
    --------
    >>> import lazyraster
    >>> ds = lazyraster.load("catalogs/sample/catalog.json", bands=["red", "nir"])
    >>> dict(ds.sizes), list(ds.data_vars)
    ({'time': 1, 'y': 80, 'x': 152}, ['red', 'nir'])
    >>> ndvi = ds.geo.ndvi()  # lazy: nothing is read yet
    >>> ndvi.dtype, ndvi.chunks is not None
    (dtype('float32'), True)
    """
    dtype = np.dtype("float32" if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype to hold NaN nodata, not {dtype}")
    if groupby not in (None, "solar_day"):
        raise ValueError(f"groupby must be None or 'solar_day', not {groupby!r}")
    if missing not in ("error", "nan"):
        raise ValueError(f"missing must be 'error' or 'nan', not {missing!r}")
    if resampling is not None and resampling not in Resampling.__members__:
        raise ValueError(
            f"resampling={resampling!r} is not a rasterio resampling; choose among "
            f"{', '.join(Resampling.__members__)}"
        )
    if bbox is not None:
        bbox = check_bbox(bbox)
    if resolution is not None and not (
        isinstance(resolution, numbers.Real)
        and not isinstance(resolution, bool)
        and math.isfinite(resolution)
        and resolution > 0
    ):
        raise ValueError(
            f"resolution={resolution!r} must be a positive number: the pixel size in the "
            "output CRS's units, e.g. resolution=10 for 10 m pixels in UTM"
        )
    items = resolve_items(
        source, collections=collections, bbox=bbox, datetime=datetime, query=query, filter=filter
    )
    if not items:
        raise EmptyResultError(
            f"no items in {_describe(source)} pass the filters "
            f"({_describe_filters(collections, bbox, datetime, query, filter)}); check the "
            "collection names, widen bbox or datetime, or relax query/filter"
        )
    items = sorted(items, key=lambda item: (_item_time(item), item.id))
    chosen = _select_bands(items, bands)
    if not chosen:
        keys = sorted({key for item in items for key in item.assets})
        raise MissingBandError(
            f"the items have no data asset (GeoTIFF, COG, JPEG2000, netCDF or Zarr, by media "
            f"type or file suffix); their assets are: {', '.join(keys) or 'none'}"
        )
    if bands is None and missing == "error":  # by default, the bands every item has
        every = {n: b for n, b in chosen.items() if all(n in _item_bands(i, chosen) for i in items)}
        if chosen and not every:
            raise MissingBandError(
                f"the items have no data asset in common (they have {', '.join(chosen)}); "
                'pass bands=[...] with missing="nan", or load the items apart'
            )
        chosen = every
    _check_complete(items, chosen, missing)
    kinds = {asset_kind(i.assets[b.asset]) for i in items for b in _item_bands(i, chosen).values()}
    if kinds == {"array"}:
        refuse_options(
            {"groupby": groupby, "resampling": resampling, "resolution": resolution, "gdal": gdal}
        )
        return load_arrays(
            items,
            chosen,
            chunks=chunks,
            bbox=bbox,
            crs=crs,
            dtype=dtype,
            scale=scale,
            fill=fill,
            nodata=nodata,
        )
    if kinds != {"raster"}:
        raise ValueError(
            "cannot load raster (GeoTIFF/JPEG2000) and array (netCDF/Zarr) assets together; "
            "choose one kind with bands=[...]"
        )
    return load_rasters(
        items,
        chosen,
        bbox=bbox,
        crs=crs,
        resolution=resolution,
        chunks=chunks,
        groupby=groupby,
        resampling=resampling,
        dtype=dtype,
        scale=scale,
        fill=fill,
        nodata=nodata,
        gdal=gdal,
    )


def _describe(source: ItemsLike) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return f"the {len(source) if isinstance(source, Sequence) else 1} given items"


def _describe_filters(*values: Any) -> str:
    names = ("collections", "bbox", "datetime", "query", "filter")
    given = [f"{n}={v!r}" for n, v in zip(names, values, strict=True) if v is not None]
    return ", ".join(given) or "no filters"
