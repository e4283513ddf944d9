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
``proj:epsg``), CRSs without an EPSG code, per-item scale and offset, stackstac's
refusal to rescale into float32, multi-band assets (split into one stackstac asset per
band), and nodata that only the catalog states (ESA's JP2s carry no nodata tag). What
the reader needs per band (band index, nodata) travels in the URL it is given; see
:mod:`lazyraster.load._reader`.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import math
import numbers
import os
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import fsspec
import numpy as np
import pystac
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import stackstac
import xarray as xr
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds

from lazyraster.catalog import filter_items, search
from lazyraster.config import gdal_options
from lazyraster.errors import CatalogError, EmptyResultError, MissingBandError, MissingCRSError
from lazyraster.load._reader import CRSKey, Reader, as_crs, crs_key, source_url

__all__ = ["asset_kind", "check_bbox", "load", "resolve_items"]

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
#: File suffixes that say what an asset without a media type holds (STAC makes
#: ``type`` optional).
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")
ARRAY_SUFFIXES = (".nc", ".nc4", ".h5", ".zarr")
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


@functools.lru_cache(maxsize=256)
def _parse_crs(text: str) -> CRS:
    """The CRS of an EPSG code, ``AUTHORITY:CODE``, WKT or PROJJSON text, parsed once.

    Inside a rasterio environment, so that GDAL's error for an unknown CRS becomes the
    CRSError only, not also a line printed on the process's stderr.
    """
    with rasterio.Env():
        return CRS.from_user_input(text)


def _crs_of(fields: Mapping[str, Any]) -> CRS | None:
    """The CRS of ``proj:epsg``, ``proj:code``, ``proj:wkt2`` or ``proj:projjson``.

    Projection extension v1.x and v2.0; ``proj:code`` of any authority PROJ knows
    (``IAU_2015:30100``). None when there is none of them.
    """
    if fields.get("proj:epsg") is not None:
        return CRS.from_epsg(int(fields["proj:epsg"]))
    for field in ("proj:code", "proj:wkt2", "proj:projjson"):
        value = fields.get(field)
        if not value:
            continue
        try:
            return _parse_crs(json.dumps(value) if isinstance(value, dict) else str(value))
        except CRSError as err:
            raise MissingCRSError(
                f"{field} {str(value)[:60]!r} is not a CRS PROJ knows ({err}); fix the "
                "catalog, or pass crs= to load"
            ) from None
    return None


def _number(value: Any, where: str, fix: str = "") -> float | None:
    """A STAC nodata value (a number, or "nan", "inf", "-inf") as a float.

    For anything else, the error names ``where`` the value is and ends with ``fix``.
    """
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CatalogError(
            f'{where}{value!r} is not a number (give a number, or "nan", "inf" or "-inf"){fix}'
        ) from None


@dataclass(frozen=True)
class _Band:
    """One band of one asset: where it is read from and what the catalog says of it."""

    asset: str
    index: int  # 1-based band of the file
    count: int  # bands of the asset
    name: str  # common name, else band name, else the asset key
    fallback: str  # variable name when another band takes ``name``
    size: float  # pixel size, for the finest-resolution rule

    @property
    def key(self) -> str:
        """Key of the band among stackstac's assets."""
        return self.asset if self.count == 1 else f"{self.asset}#{self.index}"


def _band_fields(asset: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-band fields of an asset: name, common name, nodata, scale and offset.

    Read from ``raster:bands`` and ``eo:bands`` (raster and eo v1.x) and from STAC 1.1
    ``bands`` with ``eo:common_name``, ``nodata``, ``raster:scale``/``raster:offset``
    (eo and raster v2.0); fields on the asset itself apply to each of its bands.
    """
    raster = asset.get("raster:bands") or []
    eo = asset.get("eo:bands") or []
    common = asset.get("bands") or []
    count = max(len(raster), len(eo), len(common), 1)

    def pick(i: int, *sources: tuple[list, str]) -> Any:
        for source, field in sources:
            if i < len(source) and source[i].get(field) is not None:
                return source[i][field]
        return None

    out = []
    for i in range(count):
        band = {
            "name": pick(i, (eo, "name"), (common, "name"), (raster, "name")),
            "common_name": pick(i, (eo, "common_name"), (common, "eo:common_name")),
            "nodata": pick(i, (raster, "nodata"), (common, "nodata")),
            "scale": pick(i, (raster, "scale"), (common, "raster:scale")),
            "offset": pick(i, (raster, "offset"), (common, "raster:offset")),
        }
        if count == 1 and band["common_name"] is None:
            band["common_name"] = asset.get("eo:common_name")
        for field, asset_field in (
            ("nodata", "nodata"),
            ("scale", "raster:scale"),
            ("offset", "raster:offset"),
        ):
            if band[field] is None:
                band[field] = asset.get(asset_field)
        out.append(band)
    return out


def _bands_of(key: str, asset: pystac.Asset) -> list[_Band]:
    fields = _band_fields(asset.extra_fields) if asset_kind(asset) == "raster" else [{}]
    size = _pixel_size(asset)
    if len(fields) == 1:
        name = fields[0].get("common_name") or fields[0].get("name") or key
        return [_Band(key, 1, 1, str(name), key, size)]
    labels = [str(f["name"] or f["common_name"] or i + 1) for i, f in enumerate(fields)]
    unique = len(set(labels)) == len(labels)
    return [
        _Band(
            key,
            i + 1,
            len(fields),
            str(f["common_name"] or f["name"] or f"{key}_{i + 1}"),
            f"{key}_{labels[i] if unique else i + 1}",
            size,
        )
        for i, f in enumerate(fields)
    ]


def _data_assets(item: pystac.Item) -> dict[str, pystac.Asset]:
    """Assets that hold data: rasters (GeoTIFF, COG, JPEG2000) and arrays (netCDF, Zarr)."""
    return {
        key: asset
        for key, asset in item.assets.items()
        if asset_kind(asset) is not None
        and "overview" not in (asset.roles or [])
        and "thumbnail" not in (asset.roles or [])
    }


def _transform_of(item: pystac.Item | None, asset: pystac.Asset) -> list[float] | None:
    """The asset's ``proj:transform``, else its item's."""
    transform = asset.extra_fields.get("proj:transform")
    if transform is None and item is not None:
        transform = item.properties.get("proj:transform")
    return transform


def _pixel_size(asset: pystac.Asset) -> float:
    transform = _transform_of(asset.owner, asset)
    return abs(transform[0]) if transform else math.inf


def _rank(band: _Band) -> tuple:
    """Which of the bands sharing a name wins it: single-band assets, then the finest."""
    return (band.count > 1, band.size, band.asset, band.index)


def _item_bands(item: pystac.Item, chosen: Mapping[str, _Band]) -> dict[str, _Band]:
    """The band of ``item`` behind each variable that it has.

    The chosen band's own asset where the item has it; else, for a variable named by a
    common name, the item's band of that name and pixel size (items of other
    collections key their assets otherwise: Earth Search's ``red`` is Planetary
    Computer's ``B04``). Another pixel size is no match: a product that lacks its 10 m
    red is not read at 20 m.
    """
    own: list[_Band] | None = None
    found = {}
    for name, band in chosen.items():
        if band.asset in item.assets:
            found[name] = band
            continue
        if name != band.name:  # named by its asset key: only that asset is it
            continue
        if own is None:
            assets = _data_assets(item).items()
            own = sorted((b for key, a in assets for b in _bands_of(key, a)), key=_rank)
        match = next((b for b in own if b.name == name and b.size == band.size), None)
        if match is not None:
            found[name] = match
    return found


def _select_bands(items: Sequence[pystac.Item], bands: Sequence[str] | None) -> dict[str, _Band]:
    """Map variable name -> band for the requested bands.

    Variables are named by common name (else the band's ``name``, else the asset key).
    Where several bands share a name (Sentinel-2's red at 10, 20 and 60 m, or the red
    of a true-colour image), a single-band asset wins over a band of a multi-band one,
    then the finest resolution; the others are named by their asset key (and, in a
    multi-band asset, the band's name: ``visual_B04``). A requested band may be a
    variable name, such a common name, or an asset key (all the bands of the asset).
    Without ``bands``, every single-band data asset is chosen, and each multi-band asset
    whose bands all keep their own names (NAIP's red, green, blue, nir; not a
    true-colour copy of bands that exist on their own).
    """
    per_asset: dict[str, list[_Band]] = {}
    for item in items:
        for key, asset in _data_assets(item).items():
            if key not in per_asset:
                per_asset[key] = _bands_of(key, asset)
    candidates = [band for group in per_asset.values() for band in group]
    winners: dict[str, _Band] = {}
    for band in sorted(candidates, key=_rank):
        winners.setdefault(band.name, band)
    named = {
        (winners[band.name] is band and band.name) or band.fallback: band for band in candidates
    }
    if bands is None:
        return {
            name: band
            for name, band in named.items()
            if band.count == 1 or all(winners[b.name] is b for b in per_asset[band.asset])
        }
    chosen: dict[str, _Band] = {}
    for request in bands:
        if request in per_asset:
            group = per_asset[request]
            chosen.update({n: b for n, b in named.items() if b in group})
        elif request in named:
            chosen[request] = named[request]
        else:
            have = ", ".join(f"{n} ({b.asset})" if n != b.asset else n for n, b in named.items())
            raise MissingBandError(
                f"band {request!r} is not among the items' data assets; they have: {have}. "
                "Name bands by STAC common name or by asset key."
            )
    return chosen


def _normalize_chunks(
    chunks: int | Mapping[str, int] | None, bands: Sequence[_Band] = ()
) -> tuple[int, int | tuple[int, ...], int, int]:
    """Stackstac's (time, band, y, x) chunks.

    Along ``band``, the bands of one multi-band asset share a chunk: one task reads
    them one after the other from one open file, so GDAL decodes a pixel-interleaved
    block once for all of them (see :mod:`lazyraster.load._reader`).
    """
    merged = dict(DEFAULT_CHUNKS)
    if isinstance(chunks, int):
        merged.update(y=chunks, x=chunks)
    elif chunks is not None:
        unknown = set(chunks) - set(merged)
        if unknown:
            raise ValueError(f"chunks may name time, y and x, not {sorted(unknown)}")
        merged.update(chunks)
    for axis, size in merged.items():
        if isinstance(size, bool) or not isinstance(size, int) or not (size >= 1 or size == -1):
            raise ValueError(
                f"chunks: {axis}={size!r} must be a whole number of pixels (at least 1), "
                "or -1 for the whole axis, e.g. chunks=1024"
            )
    groups = tuple(len(list(g)) for _, g in itertools.groupby(bands, key=lambda b: b.asset))
    band = groups if any(n > 1 for n in groups) else 1
    return (merged["time"], band, merged["y"], merged["x"])


def _output_crs(crs: Any) -> int | None:
    """The output CRS as stackstac's integer key (see :func:`lazyraster.load._reader.crs_key`)."""
    if crs is None:
        return None
    try:
        with rasterio.Env():  # GDAL's error is the CRSError, not also a line on stderr
            return crs_key(CRS.from_user_input(crs))
    except CRSError as err:
        raise MissingCRSError(
            f"crs={crs!r} is not a CRS PROJ knows ({err}); pass an EPSG code such as 32631, "
            "an 'AUTHORITY:CODE' string, a WKT or a pyproj.CRS"
        ) from None


def _item_crs_key(item: pystac.Item, key: str) -> int | None:
    """CRS key of an asset (its own ``proj:*`` fields, else the item's), or None."""
    crs = _crs_of(item.assets[key].extra_fields) or _crs_of(item.properties)
    return crs_key(crs) if crs is not None else None


def _stackstac_dict(
    item: pystac.Item,
    dtype: np.dtype,
    chosen: Mapping[str, _Band],
    nodata: Mapping[str, float | None],
) -> dict[str, Any]:
    """The item as a dict stackstac can read, with one single-band asset per band.

    Each asset is keyed by its variable's key in ``chosen`` and read from the item's own
    band of that variable (see :func:`_item_bands`).

    Hrefs are made absolute and carry the band to read and its nodata (see
    :func:`lazyraster.load._reader.source_url`); ``proj:epsg`` is the CRS key of whatever
    ``proj:*`` field the item has; ``raster:bands`` holds the band's scale and offset as
    scalars of the output dtype (stackstac refuses to rescale into float32 when they are
    Python floats).
    """
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    local = _item_bands(item, chosen)
    values = {  # nodata of each band: load(nodata=...), else the catalog's
        name: nodata[name]
        if name in nodata
        else _number(
            _band_fields(d["assets"][band.asset])[band.index - 1]["nodata"],
            f"item {item.id!r} asset {band.asset!r}: nodata ",
            "; fix the catalog, or override it with load(nodata=...)",
        )
        for name, band in local.items()
    }
    assets = {}
    for name, band in local.items():
        fields = dict(d["assets"][band.asset])
        per_band = _band_fields(fields)[band.index - 1]
        value = values[name]
        group = [
            b.index
            for n, b in local.items()
            if b.asset == band.asset and json.dumps(values[n]) == json.dumps(value)
        ]
        fields["href"] = source_url(
            item.assets[band.asset].get_absolute_href(),
            band=band.index,
            nodata=value,
            group=group,
            listed=any(fields.get(k) for k in ("raster:bands", "eo:bands", "bands")),
        )
        fields["raster:bands"] = [
            {
                "scale": dtype.type(1 if per_band["scale"] is None else per_band["scale"]),
                "offset": dtype.type(0 if per_band["offset"] is None else per_band["offset"]),
            }
        ]
        key = _item_crs_key(item, band.asset)
        if key is not None:
            fields["proj:epsg"] = key
        assets[chosen[name].key] = fields
    d["assets"] = assets
    crs = _crs_of(d["properties"])
    if crs is not None:  # a new dict: the item's own properties must not change
        d["properties"] = {**d["properties"], "proj:epsg": crs_key(crs)}
    return d


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
                grids.append((epsg, tuple(transform[:6]), tuple(shape)))
    return grids


def _aligned_bounds(
    grids: list[tuple], epsg: int | None, resolution: float | None, bbox: Sequence[float] | None
) -> tuple[tuple[float, float, float, float] | None, int | None, tuple[float, float] | None]:
    """Output bounds aligned to the assets' own pixel grid, where there is one.

    stackstac snaps bounds to multiples of the resolution, which shifts a grid whose
    origin is not such a multiple by part of a pixel (and resamples every pixel). When
    the output CRS and resolution are those of the assets, align the bounds to the
    assets' origin instead, so that pixels are read as they are. Pixels need not be
    square (Copernicus DEM's are 10 times wider than high near the poles).
    """
    res = (resolution, resolution) if resolution is not None else None
    if not grids:
        return None, epsg, res
    epsgs = {g[0] for g in grids}
    out_epsg = epsg if epsg is not None else (epsgs.pop() if len(epsgs) == 1 else None)
    if out_epsg is None:
        return None, epsg, res
    native = [g for g in grids if g[0] == out_epsg and g[1][1] == 0 and g[1][3] == 0]
    if res is None and native:
        finest = min(native, key=lambda g: abs(g[1][0]))
        res = (abs(finest[1][0]), abs(finest[1][4]))
    if res is None:
        return None, out_epsg, res
    rx, ry = res
    same = [g for g in native if (abs(g[1][0]), abs(g[1][4])) == (rx, ry)]
    anchors = {(g[1][2] % rx, g[1][5] % ry) for g in same}
    if len(anchors) != 1:
        return None, out_epsg, res
    ax, ay = anchors.pop()
    if bbox is not None:
        left, bottom, right, top = transform_bounds("EPSG:4326", as_crs(out_epsg), *bbox)
    else:
        left = min(g[1][2] for g in native)
        top = max(g[1][5] for g in native)
        right = max(g[1][2] + g[1][0] * g[2][1] for g in native)
        bottom = min(g[1][5] + g[1][4] * g[2][0] for g in native)
    left = ax + math.floor(round((left - ax) / rx, 6)) * rx
    bottom = ay + math.floor(round((bottom - ay) / ry, 6)) * ry
    right = ax + math.ceil(round((right - ax) / rx, 6)) * rx
    top = ay + math.ceil(round((top - ay) / ry, 6)) * ry
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


def check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """Check a (west, south, east, north) box in longitude/latitude degrees.

    Examples
    --------
    >>> check_bbox([5, 52, 5.2, 52.1])
    (5.0, 52.0, 5.2, 52.1)
    >>> check_bbox((5, 52.1, 5.2, 52))
    Traceback (most recent call last):
    ...
    ValueError: bbox (5.0, 52.1, 5.2, 52.0): south 52.1 is not below north 52.0; \
give bbox as (west, south, east, north)
    """
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise TypeError(
            f"bbox must be 4 numbers (west, south, east, north), not {bbox!r}"
        ) from None
    if len(values) != 4 or not all(map(math.isfinite, values)):
        raise ValueError(f"bbox must be 4 finite numbers (west, south, east, north), not {bbox!r}")
    west, south, east, north = values
    for name, value, limit in (("west", west, 180), ("east", east, 180)):
        if not -limit <= value <= limit:
            raise ValueError(
                f"bbox {values}: {name} {value} is not a longitude in -180..180; bbox is in "
                "degrees (west, south, east, north), not in the CRS's units"
            )
    for name, value in (("south", south), ("north", north)):
        if not -90 <= value <= 90:
            raise ValueError(
                f"bbox {values}: {name} {value} is not a latitude in -90..90; bbox is "
                "(west, south, east, north) in degrees"
            )
    if south >= north:
        raise ValueError(
            f"bbox {values}: south {south} is not below north {north}; give bbox as "
            "(west, south, east, north)"
        )
    if west > east:
        raise ValueError(
            f"bbox {values} crosses the antimeridian (west {west} > east {east}); load "
            f"the two sides separately, bbox=({west}, {south}, 180, {north}) and "
            f"bbox=(-180, {south}, {east}, {north})"
        )
    if west == east:
        raise ValueError(f"bbox {values}: west equals east; the box has no width")
    return values


def _nodata_overrides(
    nodata: float | Mapping[str, float] | None, chosen: Mapping[str, _Band]
) -> dict[str, float | None]:
    """Variable name -> nodata given by ``load(nodata=...)``."""
    if nodata is None:
        return {}
    if not isinstance(nodata, Mapping):
        return {name: _number(nodata, "nodata=") for name in chosen}
    out = {}
    for label, value in nodata.items():
        names = [n for n, b in chosen.items() if label in (n, b.asset)]
        if not names:
            raise MissingBandError(
                f"nodata= names {label!r}, which is not a loaded band; the bands are "
                f"{', '.join(chosen)}"
            )
        out.update({name: _number(value, f"nodata[{label!r}]=") for name in names})
    return out


def _check_complete(
    items: Sequence[pystac.Item], chosen: Mapping[str, _Band], missing: str
) -> None:
    """Refuse an item that lacks one of the chosen bands, unless ``missing="nan"``."""
    if missing == "nan":
        return
    for item in items:
        absent = sorted(set(chosen) - set(_item_bands(item, chosen)))
        if absent:
            raise MissingBandError(
                f"item {item.id!r} has no asset for band(s) {', '.join(absent)} (the other "
                "items have it); leave the item out, choose other bands=, or pass "
                'missing="nan" to load that band as NaN there'
            )


def _common_crs(items: Sequence[pystac.Item], chosen: Mapping[str, _Band], out: int | None) -> None:
    """Check that the assets' CRSs allow an output grid, before stackstac guesses."""
    keys = {}
    for item in items:
        for band in _item_bands(item, chosen).values():
            key = _item_crs_key(item, band.asset)
            if key is None and out is None:
                raise MissingCRSError(
                    f"item {item.id!r}: asset {band.asset!r} has no proj:code, proj:epsg, "
                    "proj:wkt2 or proj:projjson; pass crs= (e.g. crs='EPSG:32631') to load"
                )
            keys.setdefault(key, item.id)
    keys.pop(None, None)
    if out is None and len(keys) > 1:
        found = ", ".join(f"{as_crs(k).to_string()} ({i})" for k, i in keys.items())
        raise MissingCRSError(
            f"the items are in several CRSs ({found}); pass crs= to load them onto one grid"
        )
    for item in items:
        for band in _item_bands(item, chosen).values():
            transform = _transform_of(item, item.assets[band.asset])
            if transform is not None and (transform[1] != 0 or transform[3] != 0):
                raise ValueError(
                    f"item {item.id!r}: asset {band.asset!r} has proj:transform "
                    f"{list(transform[:6])}, which is not north-up (rotated, or written in "
                    "GDAL's order c, a, b, f, d, e instead of STAC's a, b, c, d, e, f); fix "
                    "the catalog, or drop proj:transform to read the grid from the file"
                )
    target = out if out is not None else next(iter(keys), None)
    odd = [k for k in keys if k != target and (isinstance(k, CRSKey) or isinstance(target, CRSKey))]
    if odd:
        raise MissingCRSError(
            f"cannot reproject between {as_crs(odd[0]).to_string()[:80]} and "
            f"{as_crs(target).to_string()[:80]}, which have no EPSG code; load on the "
            "assets' own CRS (leave crs= unset) and reproject with ds.rio.reproject"
        )


def _items_extent(items: Sequence[pystac.Item], epsg: Any) -> tuple[float, ...] | None:
    """The union of the items' ``bbox`` in the output CRS (None where it does not map)."""
    west = min(item.bbox[0] for item in items)
    south = min(item.bbox[1] for item in items)
    east = max(item.bbox[2] for item in items)
    north = max(item.bbox[3] for item in items)
    try:
        extent = transform_bounds("EPSG:4326", as_crs(epsg), west, south, east, north)
    except Exception:  # PROJ cannot map the extent into this CRS: no estimate
        return None
    return extent if all(math.isfinite(v) for v in extent) else None


def _check_grid_size(shape: Sequence[int]) -> None:
    limit = int(dask.config.get("lazyraster.load.max-pixels"))
    height, width = shape[-2:]
    if height * width > limit:
        raise ValueError(
            f"the requested grid is {height} x {width} = {height * width:,} pixels per band "
            f"and time step, more than lazyraster.load.max-pixels ({limit:,}); narrow bbox=, "
            "coarsen resolution=, or raise the limit with "
            "dask.config.set({'lazyraster.load.max-pixels': N})"
        )


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
        Output pixel size in CRS units. Default: the finest of the assets.
    chunks : int or dict, optional
        Dask chunk sizes; an int for y and x, or a dict with ``time``, ``y``, ``x``.
        Default ``{"time": 1, "y": 1024, "x": 1024}``.
    groupby : {None, "solar_day"}
        ``"solar_day"`` mosaics the items of one local solar day (neighbouring tiles of
        one overpass) into one time step; the first valid pixel wins.
    resampling : str, optional
        Rasterio resampling name used when reprojecting or resampling (``"nearest"``).
    dtype : dtype, optional
        Floating output dtype (float32 by default).
    scale : bool
        Apply ``raster:bands`` scale and offset (per item, so Sentinel-2 processing
        baselines with different offsets come out alike).
    fill : float
        Value for nodata and for pixels outside an item's footprint.
    nodata : float or dict, optional
        Nodata of the DNs, overriding the catalog: one value for every band, or a dict
        band (variable name or asset key) -> value. Default: ``raster:bands`` ``nodata``
        (or STAC 1.1 ``nodata``), else the file's nodata tag, else none.
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
        is not a positive number, or a grid larger than ``lazyraster.load.max-pixels``.

    Examples
    --------
    >>> import lazyraster
    >>> ds = lazyraster.load("catalogs/sample/catalog.json", bands=["red", "nir"])  # doctest: +SKIP
    >>> ds.geo.ndvi()  # doctest: +SKIP
    """
    options = {"groupby": groupby, "resampling": resampling, "dtype": dtype, "gdal": gdal}
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
        refused = {k: v for k, v in options.items() if v is not None}
        refused.update(
            {k: v for k, v in (("scale", scale), ("nodata", nodata)) if v not in (True, None)}
        )
        if not (isinstance(fill, numbers.Real) and math.isnan(fill)):
            refused["fill"] = fill
        if refused:
            raise ValueError(
                f"{', '.join(f'{k}={v!r}' for k, v in refused.items())}: not supported for "
                "netCDF/Zarr assets, which xarray decodes as their CF attributes say (scale, "
                "offset, _FillValue -> NaN) on their own grid; leave these options unset"
            )
        assets = {b.asset: name for name, b in chosen.items()}
        return _load_arrays(items, assets, chunks=chunks, bbox=bbox, crs=crs, resolution=resolution)
    if kinds != {"raster"}:
        raise ValueError(
            "cannot load raster (GeoTIFF/JPEG2000) and array (netCDF/Zarr) assets together; "
            "choose one kind with bands=[...]"
        )
    out_crs = _output_crs(crs)
    _common_crs(items, chosen, out_crs)
    overrides = _nodata_overrides(nodata, chosen)
    stac_dicts = [_stackstac_dict(item, dtype, chosen, overrides) for item in items]
    keys = [band.key for band in chosen.values()]
    bounds, epsg, res = _aligned_bounds(_native_grids(stac_dicts, keys), out_crs, resolution, bbox)
    snap = bounds is None
    if snap and bbox is not None and isinstance(epsg, CRSKey):  # stackstac cannot transform
        bounds = transform_bounds("EPSG:4326", as_crs(epsg), *bbox)
    extent = bounds
    if extent is None and bbox is not None and epsg is not None:
        extent = transform_bounds("EPSG:4326", as_crs(epsg), *bbox)
    if extent is None and epsg is not None and all(item.bbox for item in items):
        extent = _items_extent(items, epsg)
    if extent is not None and res is not None:  # refuse a huge grid before building it
        left, bottom, right, top = extent
        _check_grid_size((math.ceil((top - bottom) / res[1]), math.ceil((right - left) / res[0])))
    stack = functools.partial(
        stackstac.stack,
        stac_dicts,
        assets=keys,
        epsg=epsg,
        resolution=res,
        bounds=bounds,
        bounds_latlon=bbox if bounds is None else None,
        snap_bounds=snap,
        resampling=Resampling[resampling or "nearest"],
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
    try:
        data = stack(chunksize=_normalize_chunks(chunks, list(chosen.values())))
    except ValueError as err:
        if "Chunks do not add up" not in str(err):
            raise
        # stackstac left out assets outside the bounds, so the band groups no longer fit
        data = stack(chunksize=_normalize_chunks(chunks))
        keys = list(data.band.values)
        chosen = {n: b for n, b in chosen.items() if b.key in keys}
    _check_grid_size(data.shape)
    out = as_crs(data.attrs["spec"].epsg)
    ds = data.to_dataset(dim="band").rename_vars({b.key: n for n, b in chosen.items()})
    ds = ds.drop_vars([c for c in ds.coords if c not in {"time", "y", "x", "id"}])
    ds.attrs = {}
    for name, band in chosen.items():
        ds[name].attrs = {"long_name": name, "stac_asset": band.asset}
        if band.count > 1:
            ds[name].attrs["stac_band"] = band.index
    if groupby == "solar_day":
        ds = _mosaic_solar_days(ds, items)
    # the transform as rioxarray records it, so a grid one pixel wide keeps its resolution
    return ds.rio.write_crs(out).rio.write_transform(data.attrs["transform"])


def asset_kind(asset: pystac.Asset) -> str | None:
    """``"raster"``, ``"array"`` (netCDF, Zarr), or None for an asset ``load`` does not read.

    By media type; an asset without one by the suffix of its file.

    Examples
    --------
    >>> asset_kind(pystac.Asset("B04.tif")), asset_kind(pystac.Asset("a.nc", media_type="text/xml"))
    ('raster', None)
    """
    media_type = (asset.media_type or "").lower()
    if media_type:
        if media_type in RASTER_MEDIA_TYPES:
            return "raster"
        return "array" if media_type in ARRAY_MEDIA_TYPES else None
    path = urllib.parse.urlsplit(asset.href).path.lower().rstrip("/")
    if path.endswith(RASTER_SUFFIXES):
        return "raster"
    return "array" if path.endswith(ARRAY_SUFFIXES) else None


def _open_array_asset(asset: pystac.Asset, key: str, chunks: Mapping[str, int]) -> xr.Dataset:
    """One netCDF or Zarr asset as a lazy Dataset holding the asset's variable(s)."""
    href = asset.get_absolute_href()
    media_type = (asset.media_type or "").lower()
    if "zarr" in media_type or (not media_type and href.rstrip("/").lower().endswith(".zarr")):
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


def _load_arrays(
    items: Sequence[pystac.Item],
    assets: Mapping[str, str],
    *,
    chunks: int | Mapping[str, int] | None,
    bbox: Sequence[float] | None,
    crs: Any,
    resolution: float | None,
) -> xr.Dataset:
    """netCDF/Zarr assets through xarray + fsspec, concatenated along time across items.

    The CRS is the files' CF grid mapping, else the item's ``proj:*`` fields, else
    ``crs``; a ``crs`` that contradicts the files is refused.
    """
    if resolution is not None:
        raise ValueError(
            "netCDF/Zarr assets are loaded on their own grid; leave resolution unset "
            "(resample afterwards with ds.rio.reproject if needed)"
        )
    given = _output_crs(crs)
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
        stated = part.rio.crs or _crs_of(item.properties)
        if (
            stated is not None
            and given is not None
            and crs_key(CRS.from_user_input(stated)) != given
        ):
            raise MissingCRSError(
                f"item {item.id!r}: its files (CF grid mapping) or proj fields give a CRS "
                f"other than crs={crs!r}; netCDF/Zarr assets are loaded on their own grid: "
                "leave crs= unset and reproject afterwards with ds.rio.reproject"
            )
        crs_of_item = stated if stated is not None else crs
        if crs_of_item is None:
            hrefs = ", ".join(
                item.assets[k].get_absolute_href() for k in assets if k in item.assets
            )
            raise MissingCRSError(
                f"item {item.id!r}: no CF grid mapping in its files ({hrefs}) and no "
                "proj:code, proj:wkt2 or proj:projjson; pass crs= to load (e.g. "
                "crs='EPSG:4326') or add one to the catalog"
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
