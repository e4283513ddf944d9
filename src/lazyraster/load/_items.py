"""Items to bands: what ``load`` reads from each item, and under which name.

Asset kinds (by media type, else file suffix), the per-band fields of STAC's raster,
eo and 1.1 ``bands`` conventions, band naming by common name (Earth Search's ``red`` is
Planetary Computer's ``B04``), CRS fields, nodata overrides and the missing-band rule.
Shared by the raster path (:mod:`lazyraster.load._rasters`) and the array path
(:mod:`lazyraster.load._arrays`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pystac
import rasterio
from rasterio.crs import CRS
from rasterio.errors import CRSError

from lazyraster.errors import CatalogError, MissingBandError, MissingCRSError

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

ItemsLike = str | os.PathLike[str] | pystac.ItemCollection | Sequence[pystac.Item] | pystac.Item


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
