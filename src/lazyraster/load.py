"""From STAC items to a lazy, CRS-aware :class:`xarray.Dataset`.

``load`` accepts a static catalog (path or URL of a catalog, collection or item JSON),
a :class:`pystac.ItemCollection`, or a sequence of :class:`pystac.Item`, and returns a
Dataset with dims ``(time, y, x)``: one float variable per band, named by the band's
STAC ``eo:common_name`` (the asset key where there is none), nodata as NaN,
``raster:bands`` scale and offset applied, coordinates at pixel centres and the CRS
written the rioxarray way (``spatial_ref`` coordinate, ``ds.rio.crs``).

Rasters (GeoTIFF, COG, JPEG2000) are read by stackstac. This module handles the traps
between pystac and stackstac: relative hrefs, ``proj:code`` without ``proj:epsg``
(pystac drops ``proj:epsg`` when it reads projection v2.0 items, stackstac reads only
``proj:epsg``), per-item scale and offset, and stackstac's refusal to rescale into
float32.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pystac
import rioxarray  # noqa: F401  (registers .rio)
import stackstac
import xarray as xr
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds

from lazyraster._reader import Reader
from lazyraster.config import gdal_options
from lazyraster.errors import EmptyResultError, MissingBandError, MissingCRSError
from lazyraster.search import filter_items, search

__all__ = ["load", "resolve_items"]

RASTER_MEDIA_TYPES = frozenset(
    {
        "image/tiff",
        "image/tiff; application=geotiff",
        "image/tiff; application=geotiff; profile=cloud-optimized",
        "image/vnd.stac.geotiff",
        "image/x.geotiff",
        "image/jp2",
    }
)
ARRAY_MEDIA_TYPES = frozenset(
    {
        "application/x-netcdf",
        "application/netcdf",
        "application/x-hdf5",
        "application/vnd+zarr",
        "application/vnd.zarr",
        "application/x-zarr",
    }
)
DEFAULT_CHUNKS = {"time": 1, "y": 1024, "x": 1024}

ItemsLike = str | os.PathLike[str] | pystac.ItemCollection | Sequence[pystac.Item] | pystac.Item


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
    >>> items = resolve_items("catalogs/sample/catalog.json", datetime="2021")  # doctest: +SKIP
    >>> [item.id for item in items]  # doctest: +SKIP
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


def _item_time(item: pystac.Item) -> dt.datetime:
    time = item.datetime or item.common_metadata.start_datetime
    if time is None:  # pragma: no cover - pystac refuses such items on read
        raise ValueError(f"item {item.id!r} has neither datetime nor start_datetime")
    return time


def _epsg_of(fields: Mapping[str, Any]) -> int | None:
    """EPSG code from ``proj:epsg`` or an ``EPSG:n`` ``proj:code``, else None."""
    if fields.get("proj:epsg") is not None:
        return int(fields["proj:epsg"])
    code = fields.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":", 1)[1])
    return None


def _stackstac_dict(item: pystac.Item, dtype: np.dtype) -> dict[str, Any]:
    """The item as a dict stackstac can read.

    Hrefs are made absolute, ``proj:epsg`` is filled in from ``proj:code``, and
    ``raster:bands`` scale and offset become scalars of the output dtype (stackstac
    refuses to rescale into float32 when they are Python floats).
    """
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    for asset_key, asset in d["assets"].items():
        asset["href"] = item.assets[asset_key].get_absolute_href()
        epsg = _epsg_of(asset)
        if epsg is not None:
            asset["proj:epsg"] = epsg
        if asset.get("raster:bands"):  # new dicts: the item's own must not change
            asset["raster:bands"] = [
                {
                    **band,
                    "scale": dtype.type(band.get("scale", 1)),
                    "offset": dtype.type(band.get("offset", 0)),
                }
                for band in asset["raster:bands"]
            ]
    epsg = _epsg_of(d["properties"])
    if epsg is not None:
        d["properties"]["proj:epsg"] = epsg
    return d


def _band_name(asset: pystac.Asset, key: str) -> str:
    bands = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    if len(bands) == 1 and bands[0].get("common_name"):
        return str(bands[0]["common_name"])
    return key


def _data_assets(item: pystac.Item) -> dict[str, pystac.Asset]:
    """Assets that hold data: rasters (GeoTIFF, COG, JPEG2000) and arrays (netCDF, Zarr)."""
    return {
        key: asset
        for key, asset in item.assets.items()
        if (asset.media_type or "").lower() in RASTER_MEDIA_TYPES | ARRAY_MEDIA_TYPES
        and "overview" not in (asset.roles or [])
        and "thumbnail" not in (asset.roles or [])
    }


def _select_assets(items: Sequence[pystac.Item], bands: Sequence[str] | None) -> dict[str, str]:
    """Map asset key -> variable name for the requested bands (all raster bands if None)."""
    names: dict[str, str] = {}
    for item in items:
        for key, asset in _data_assets(item).items():
            names.setdefault(key, _band_name(asset, key))
    if bands is None:
        chosen = names
    else:
        by_name = {name: key for key, name in names.items()}
        chosen = {}
        for band in bands:
            key = band if band in names else by_name.get(band)
            if key is None:
                have = ", ".join(f"{n} ({k})" if n != k else k for k, n in names.items())
                raise MissingBandError(
                    f"band {band!r} is not among the items' data assets; they have: {have}. "
                    "Name bands by STAC common name or by asset key."
                )
            chosen[key] = names[key]
    duplicates = {n for n in chosen.values() if list(chosen.values()).count(n) > 1}
    if duplicates:
        # Several assets share a common name (e.g. a 10 m and a 20 m red band): use keys.
        chosen = {k: (k if n in duplicates else n) for k, n in chosen.items()}
    return chosen


def _normalize_chunks(chunks: int | Mapping[str, int] | None) -> tuple[int, int, int, int]:
    merged = dict(DEFAULT_CHUNKS)
    if isinstance(chunks, int):
        merged.update(y=chunks, x=chunks)
    elif chunks is not None:
        unknown = set(chunks) - set(merged)
        if unknown:
            raise ValueError(f"chunks may name time, y and x, not {sorted(unknown)}")
        merged.update(chunks)
    return (merged["time"], 1, merged["y"], merged["x"])


def _output_epsg(crs: Any) -> int | None:
    if crs is None:
        return None
    if isinstance(crs, int):
        return crs
    from pyproj import CRS

    epsg = CRS.from_user_input(crs).to_epsg()
    if epsg is None:
        raise MissingCRSError(f"CRS {crs!r} has no EPSG code; pass an EPSG code such as 32631")
    return epsg


def _native_grids(items: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[tuple]:
    """(epsg, transform, shape) of every asset, from the items' ``proj`` fields."""
    grids = []
    for item in items:
        props = item["properties"]
        for key in keys:
            asset = item["assets"].get(key)
            if asset is None:
                continue
            epsg = asset.get("proj:epsg", props.get("proj:epsg"))
            transform = asset.get("proj:transform", props.get("proj:transform"))
            shape = asset.get("proj:shape", props.get("proj:shape"))
            if epsg is not None and transform is not None and shape is not None:
                grids.append((int(epsg), tuple(transform[:6]), tuple(shape)))
    return grids


def _aligned_bounds(
    grids: list[tuple], epsg: int | None, resolution: float | None, bbox: Sequence[float] | None
) -> tuple[tuple[float, float, float, float] | None, int | None, float | None]:
    """Output bounds aligned to the assets' own pixel grid, where there is one.

    stackstac snaps bounds to multiples of the resolution, which shifts a grid whose
    origin is not such a multiple by part of a pixel (and resamples every pixel). When
    the output CRS and resolution are those of the assets, align the bounds to the
    assets' origin instead, so that pixels are read as they are.
    """
    if not grids:
        return None, epsg, resolution
    epsgs = {g[0] for g in grids}
    out_epsg = epsg if epsg is not None else (epsgs.pop() if len(epsgs) == 1 else None)
    if out_epsg is None:
        return None, epsg, resolution
    native = [g for g in grids if g[0] == out_epsg and g[1][1] == 0 and g[1][3] == 0]
    res = (
        resolution
        if resolution is not None
        else (min(abs(g[1][0]) for g in native) if native else None)
    )
    anchors = {(g[1][2] % res, g[1][5] % res) for g in native if abs(g[1][0]) == res}
    if res is None or len(anchors) != 1:
        return None, out_epsg, res
    ax, ay = anchors.pop()
    if bbox is not None:
        left, bottom, right, top = transform_bounds("EPSG:4326", f"EPSG:{out_epsg}", *bbox)
    else:
        left = min(g[1][2] for g in native)
        top = max(g[1][5] for g in native)
        right = max(g[1][2] + g[1][0] * g[2][1] for g in native)
        bottom = min(g[1][5] + g[1][4] * g[2][0] for g in native)
    left = ax + math.floor((left - ax) / res) * res
    bottom = ay + math.floor((bottom - ay) / res) * res
    right = ax + math.ceil((right - ax) / res) * res
    top = ay + math.ceil((top - ay) / res) * res
    return (left, bottom, right, top), out_epsg, res


def _solar_days(items: Sequence[pystac.Item]) -> np.ndarray:
    """Local solar date of each item: UTC time shifted by the footprint's longitude."""
    days = []
    for item in items:
        lon = (item.bbox[0] + item.bbox[2]) / 2 if item.bbox else 0.0
        local = _item_time(item) + dt.timedelta(hours=lon / 15)
        days.append(np.datetime64(local.date().isoformat(), "ns"))
    return np.array(days)


def _mosaic_solar_days(ds: xr.Dataset, items: Sequence[pystac.Item]) -> xr.Dataset:
    """Merge the items of each solar day into one time step, first valid pixel wins."""
    days = xr.DataArray(_solar_days(items), dims="time", name="time")
    ids = ds["id"].values
    grouped = ds.drop_vars("id").groupby(days).first(skipna=True)
    joined = ["+".join(ids[(days == day).values]) for day in grouped.time.values]
    return grouped.assign_coords(id=("time", joined))


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
    resampling: str = "nearest",
    dtype: Any = "float32",
    scale: bool = True,
    fill: float = np.nan,
    gdal: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Load STAC items as a lazy Dataset with dims (time, y, x) and one variable per band.

    Parameters
    ----------
    source : str, path, pystac.ItemCollection or sequence of pystac.Item
        A STAC API URL, a static catalog, collection or item (path or URL), or items.
    bands : sequence of str, optional
        Bands to load, by STAC common name (``"red"``) or asset key (``"B04"``).
        Default: every raster asset.
    collections, datetime, query, filter : optional
        Which items to load, as in :func:`lazyraster.search`.
    bbox : (west, south, east, north), optional
        Area to load, in longitude/latitude degrees; also selects the items.
    crs : int, str or pyproj.CRS, optional
        Output CRS (must have an EPSG code). Default: the items' common CRS.
    resolution : float, optional
        Output pixel size in CRS units. Default: the finest of the assets.
    chunks : int or dict, optional
        Dask chunk sizes; an int for y and x, or a dict with ``time``, ``y``, ``x``.
        Default ``{"time": 1, "y": 1024, "x": 1024}``.
    groupby : {None, "solar_day"}
        ``"solar_day"`` mosaics the items of one local solar day (neighbouring tiles of
        one overpass) into one time step; the first valid pixel wins.
    resampling : str
        Rasterio resampling name used when reprojecting or resampling.
    dtype : dtype
        Floating output dtype (float32 by default).
    scale : bool
        Apply ``raster:bands`` scale and offset (per item, so Sentinel-2 processing
        baselines with different offsets come out alike).
    fill : float
        Value for nodata and for pixels outside an item's footprint.
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
        If a requested band is not among the items' raster assets.

    Examples
    --------
    >>> import lazyraster
    >>> ds = lazyraster.load("catalogs/sample/catalog.json", bands=["red", "nir"])  # doctest: +SKIP
    >>> ds.geo.ndvi()  # doctest: +SKIP
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype to hold NaN nodata, not {dtype}")
    if groupby not in (None, "solar_day"):
        raise ValueError(f"groupby must be None or 'solar_day', not {groupby!r}")
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
    assets = _select_assets(items, bands)
    kinds = {_asset_kind(i.assets[key]) for i in items for key in assets if key in i.assets}
    if kinds == {"array"}:
        return _load_arrays(items, assets, chunks=chunks, bbox=bbox, crs=crs, resolution=resolution)
    if kinds != {"raster"}:
        raise ValueError(
            "cannot load raster (GeoTIFF/JPEG2000) and array (netCDF/Zarr) assets together; "
            "choose one kind with bands=[...]"
        )
    keys = list(assets)
    stac_dicts = [_stackstac_dict(item, dtype) for item in items]
    bounds, epsg, resolution = _aligned_bounds(
        _native_grids(stac_dicts, keys), _output_epsg(crs), resolution, bbox
    )
    data = stackstac.stack(
        stac_dicts,
        assets=keys,
        epsg=epsg,
        resolution=resolution,
        bounds=bounds,
        bounds_latlon=tuple(bbox) if bbox is not None and bounds is None else None,
        snap_bounds=bounds is None,
        resampling=Resampling[resampling],
        chunksize=_normalize_chunks(chunks),
        dtype=dtype,
        fill_value=dtype.type(fill),
        rescale=scale,
        sortby_date=False,
        xy_coords="center",
        properties=False,
        band_coords=False,
        gdal_env=stackstac.LayeredEnv(always=gdal_options(gdal)),
        errors_as_nodata=(),
        reader=Reader,
    )
    epsg = int(data.attrs["crs"].split(":")[1])
    ds = data.to_dataset(dim="band").rename_vars(assets)
    ds = ds.drop_vars([c for c in ds.coords if c not in {"time", "y", "x", "id"}])
    ds.attrs = {}
    for key, name in assets.items():
        ds[name].attrs = {"long_name": name, "stac_asset": key}
    if groupby == "solar_day":
        ds = _mosaic_solar_days(ds, items)
    return ds.rio.write_crs(f"EPSG:{epsg}")


def _asset_kind(asset: pystac.Asset) -> str:
    return "array" if (asset.media_type or "").lower() in ARRAY_MEDIA_TYPES else "raster"


def _open_array_asset(asset: pystac.Asset, key: str, chunks: Mapping[str, int]) -> xr.Dataset:
    """One netCDF or Zarr asset as a lazy Dataset holding the asset's variable(s)."""
    href = asset.get_absolute_href()
    media_type = (asset.media_type or "").lower()
    if "zarr" in media_type:
        ds = xr.open_zarr(href, chunks={}, decode_coords="all")
    elif "://" in href and not href.startswith("file://"):
        ds = xr.open_dataset(
            fsspec.open(href).open(), engine="h5netcdf", chunks={}, decode_coords="all"
        )
    else:
        ds = xr.open_dataset(href, engine="h5netcdf", chunks={}, decode_coords="all")
    crs = ds.rio.crs  # from the CF grid mapping, if the file has one
    grid_mappings = {v.encoding.get("grid_mapping") for v in ds.data_vars.values()}
    grid_mappings |= {c for c in ds.variables if "grid_mapping_name" in ds[c].attrs}
    names = [key] if key in ds.data_vars else [v for v in ds.data_vars if v not in grid_mappings]
    ds = ds[names].drop_vars([g for g in grid_mappings if g in ds.variables])
    for var in ds.data_vars.values():  # rioxarray would write the CRS back under the old name
        var.encoding.pop("grid_mapping", None)
        var.attrs.pop("grid_mapping", None)
    ds = ds.chunk({dim: size for dim, size in chunks.items() if dim in ds.dims})
    return ds.rio.write_crs(crs) if crs is not None else ds


def _item_crs(item: pystac.Item) -> Any:
    props = item.properties
    for field in ("proj:code", "proj:wkt2", "proj:projjson"):
        if props.get(field):
            return props[field]
    epsg = _epsg_of(props)
    return f"EPSG:{epsg}" if epsg is not None else None


def _load_arrays(
    items: Sequence[pystac.Item],
    assets: Mapping[str, str],
    *,
    chunks: int | Mapping[str, int] | None,
    bbox: Sequence[float] | None,
    crs: Any,
    resolution: float | None,
) -> xr.Dataset:
    """netCDF/Zarr assets through xarray + fsspec, concatenated along time across items."""
    if crs is not None or resolution is not None:
        raise ValueError(
            "netCDF/Zarr assets are loaded on their own grid; leave crs and resolution "
            "unset (reproject afterwards with ds.rio.reproject if needed)"
        )
    sizes = {"y": 1024, "x": 1024}  # time: whole files, so one chunk per file (year)
    if isinstance(chunks, int):
        sizes = {"y": chunks, "x": chunks}
    elif chunks is not None:
        sizes = dict(chunks)
    parts = []
    for item in items:
        opened = [
            _open_array_asset(item.assets[key], key, sizes) for key in assets if key in item.assets
        ]
        part = xr.merge(opened, compat="override", join="exact", combine_attrs="drop_conflicts")
        crs_of_item = part.rio.crs or _item_crs(item)
        if crs_of_item is None:
            raise MissingCRSError(
                f"item {item.id!r}: no CF grid mapping in its files and no proj:code, "
                "proj:wkt2 or proj:projjson; add one to the catalog"
            )
        parts.append(part.rio.write_crs(crs_of_item))
    try:
        ds = xr.concat(parts, dim="time", join="exact", combine_attrs="drop_conflicts")
    except ValueError as err:
        raise ValueError(
            "the items' netCDF/Zarr grids differ (several regions?); load one region at a "
            f"time with collections=, bbox= or a property filter: {err}"
        ) from err
    ds = ds.sortby("time")
    if bbox is not None:
        ds = ds.rio.clip_box(*bbox, crs="EPSG:4326", allow_one_dimensional_raster=True)
    return ds.rename_vars({k: v for k, v in assets.items() if k in ds and k != v})


def _describe(source: ItemsLike) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return f"the {len(source) if isinstance(source, Sequence) else 1} given items"


def _describe_filters(*values: Any) -> str:
    names = ("collections", "bbox", "datetime", "query", "filter")
    given = [f"{n}={v!r}" for n, v in zip(names, values, strict=True) if v is not None]
    return ", ".join(given) or "no filters"
