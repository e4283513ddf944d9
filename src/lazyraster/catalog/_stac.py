"""STAC building blocks shared by the catalog readers and writers.

The item producers (Sentinel-2, GeoTIFF, netCDF) return plain ``dict`` items with
absolute asset paths; the builder turns them into :class:`pystac.Item` objects and
pystac writes the catalog. What pystac lacks lives here: :class:`CatalogIO`, a
:class:`pystac.StacIO` that writes deterministic JSON (byte-identical for the same
input) and percent-encodes relative hrefs (decoding them again on reading), and the
grid, footprint and file-field helpers of the producers.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import math
import os
import re
import secrets
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pystac
import pystac.utils
import rasterio.crs
import rasterio.warp
from affine import Affine

STAC_VERSION = "1.1.0"
PROJ_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
EO_EXT = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
FILE_EXT = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
SAT_EXT = "https://stac-extensions.github.io/sat/v1.0.0/schema.json"

#: Multihash prefix of a SHA2-256 digest (code 0x12, length 0x20), as the file extension wants.
SHA256_MULTIHASH_PREFIX = "1220"

#: ``eo:common_name`` values of the STAC eo extension.
COMMON_NAMES = frozenset(
    [
        "coastal",
        "blue",
        "green",
        "red",
        "rededge",
        "yellow",
        "pan",
        "nir",
        "nir08",
        "nir09",
        "cirrus",
        "swir16",
        "swir22",
        "lwir",
        "lwir11",
        "lwir12",
    ]
)

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
GEOTIFF_MEDIA_TYPE = "image/tiff; application=geotiff"
JP2_MEDIA_TYPE = "image/jp2"
NETCDF_MEDIA_TYPE = "application/x-netcdf"
XML_MEDIA_TYPE = "application/xml"
JSON_MEDIA_TYPE = "application/json"


class ReadProblem(Exception):
    """A source file cannot be catalogued; the message says why in one line."""


def dumps(obj: Any) -> str:
    """Serialise a STAC document deterministically (2-space indent, final newline).

    Examples
    --------
    >>> print(dumps({"id": "a", "bbox": [1.0, 2]}), end="")
    {
      "id": "a",
      "bbox": [
        1.0,
        2
      ]
    }
    """
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def dumps_compact(obj: Any) -> str:
    r"""Serialise on one line with the C encoder (items: 10 times faster than indented).

    Examples
    --------
    >>> dumps_compact({"id": "a", "bbox": [1.0, 2]})
    '{"id":"a","bbox":[1.0,2]}\n'
    """
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically (temporary file with a random name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
    text = dumps_compact(obj) if obj.get("type") == "Feature" else dumps(obj)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_PLAIN_HREF = re.compile(r"[A-Za-z0-9._~/-]*")


def encode_href(href: str) -> str:
    """Percent-encode a relative href (a URI reference); URLs are left as they are.

    Examples
    --------
    >>> encode_href("../my data/#1 100%.tif")
    '../my%20data/%231%20100%25.tif'
    >>> encode_href("https://example.com/a%20b.tif")
    'https://example.com/a%20b.tif'
    """
    if "://" in href or _PLAIN_HREF.fullmatch(href):
        return href
    return urllib.parse.quote(href)


def decode_href(href: str) -> str:
    """The path a relative href written by :func:`encode_href` stands for.

    Examples
    --------
    >>> decode_href("../my%20data/%231%20100%25.tif")
    '../my data/#1 100%.tif'
    """
    return href if "://" in href or "%" not in href else urllib.parse.unquote(href)


def _map_hrefs(doc: dict[str, Any], convert: Any) -> dict[str, Any]:
    """``doc`` with ``convert`` applied to the href of every link and asset (a new dict)."""
    out = dict(doc)
    if doc.get("links"):
        out["links"] = [{**link, "href": convert(link["href"])} for link in doc["links"]]
    if doc.get("assets"):
        out["assets"] = {
            key: {**asset, "href": convert(asset["href"])} for key, asset in doc["assets"].items()
        }
    return out


def absolute_asset_hrefs(item: dict[str, Any], href: str) -> dict[str, Any]:
    """Make the relative asset hrefs of the item dict read from ``href`` absolute paths.

    Done with :mod:`os.path`, not pystac, whose href functions parse paths as URLs
    and would cut a ``#`` in a folder name.

    Examples
    --------
    >>> absolute_asset_hrefs({"assets": {"a": {"href": "../d #1/a.tif"}}}, "/c/x/i.json")
    {'assets': {'a': {'href': '/c/d #1/a.tif'}}}
    """
    if "://" in href:
        return item
    base = os.path.dirname(href)
    for asset in item.get("assets", {}).values():
        if "://" not in asset["href"]:
            asset["href"] = os.path.normpath(os.path.join(base, asset["href"]))
    return item


class CatalogIO(pystac.StacIO):
    """Local STAC JSON for pystac: deterministic output, percent-encoded relative hrefs.

    Items are written on one line (the C encoder: ten times faster than indented),
    catalogs and collections indented. Relative hrefs of links and assets are
    percent-encoded on writing (``my data/#1.tif`` becomes ``my%20data/%231.tif``,
    which HTTP clients need) and decoded on reading a local file, so that in memory
    they are plain paths again; local asset hrefs of items read are made absolute.
    Items of the current STAC version are taken as written, not migrated (pystac's
    migration would drop the ``proj:epsg`` that items of other catalogs still carry and
    stackstac reads). URLs are read with
    pystac's default reader.

    Examples
    --------
    >>> import tempfile, pathlib, pystac
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> catalog = pystac.Catalog("c", "demo")
    >>> catalog.normalize_and_save(str(tmp / "my cat"), pystac.CatalogType.SELF_CONTAINED,
    ...                            stac_io=CatalogIO())
    >>> pystac.Catalog.from_file(str(tmp / "my cat" / "catalog.json"), stac_io=CatalogIO()).id
    'c'
    """

    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
        """Text of a local file (``file://`` allowed) or, through pystac, of a URL."""
        href = str(os.fspath(source))
        if "://" in href and not href.startswith("file://"):
            return pystac.StacIO.default().read_text(href, *args, **kwargs)
        with open(href.removeprefix("file://"), encoding="utf-8") as f:
            return f.read()

    def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
        """Write ``txt`` to a local file (the builder writes into a staging folder)."""
        path = Path(os.fspath(dest))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(txt, encoding="utf-8")

    def stac_object_from_dict(
        self,
        d: dict[str, Any],
        href: Any = None,
        root: pystac.Catalog | None = None,
        preserve_dict: bool = True,
    ) -> pystac.STACObject:
        """Current-version items as written, local asset hrefs absolute; else as pystac does."""
        if d.get("type") != "Feature" or d.get("stac_version") != pystac.get_stac_version():
            return super().stac_object_from_dict(d, href, root, preserve_dict)
        where = None if href is None else str(os.fspath(href))
        if where is not None:
            absolute_asset_hrefs(d, where)
        return pystac.Item.from_dict(
            d, href=where, root=root, migrate=False, preserve_dict=preserve_dict
        )

    def read_json(self, source: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Parse a STAC file; the relative hrefs of a local one come back decoded."""
        doc = super().read_json(source, *args, **kwargs)
        href = str(os.fspath(source))
        return (
            doc
            if "://" in href and not href.startswith("file://")
            else _map_hrefs(doc, decode_href)
        )

    def json_dumps(self, json_dict: dict[str, Any], *args: Any, **kwargs: Any) -> str:
        """Serialise deterministically; relative hrefs are percent-encoded."""
        doc = _map_hrefs(json_dict, encode_href)
        return dumps_compact(doc) if doc.get("type") == "Feature" else dumps(doc)


def format_datetime(value: _dt.datetime) -> str:
    """RFC 3339 text in UTC with a ``Z``; microseconds only when non-zero.

    Examples
    --------
    >>> format_datetime(_dt.datetime(2023, 4, 30, 10, 46, 21, 24000))
    '2023-04-30T10:46:21.024000Z'
    >>> format_datetime(_dt.datetime(2020, 1, 1, tzinfo=_dt.UTC))
    '2020-01-01T00:00:00Z'
    """
    if value.tzinfo is not None:
        value = value.astimezone(_dt.UTC)
    return pystac.utils.datetime_to_str(value)


def parse_instant(text: str) -> _dt.datetime:
    """Parse an RFC 3339 / ISO 8601 instant (``Z`` allowed) to a naive UTC datetime.

    What :func:`build_catalog`'s ``datetime=`` (and ``lazyraster catalog build
    --datetime``) takes: one instant, not a range (for a search's time range see
    :func:`parse_datetime`).

    Parameters
    ----------
    text : str
        A date (``2023-04-30``) or a date and time, with or without an offset.

    Returns
    -------
    datetime
        In UTC, without ``tzinfo`` (an offset is converted; none means UTC).

    Raises
    ------
    ValueError
        If ``text`` is no ISO 8601 date or date and time.

    Examples
    --------
    >>> from lazyraster.catalog import parse_instant
    >>> parse_instant("2023-04-30T10:46:21.024Z")
    datetime.datetime(2023, 4, 30, 10, 46, 21, 24000)
    >>> parse_instant("2023-04-30T12:46:21+02:00")
    datetime.datetime(2023, 4, 30, 10, 46, 21)
    """
    try:
        value = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is no ISO 8601 date or time such as 2023-04-30T10:46:21Z"
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(_dt.UTC).replace(tzinfo=None)
    return value


def file_fields(path: Path, *, checksum: bool) -> dict[str, Any]:
    """``file:size`` and, if asked, ``file:checksum`` (SHA2-256 multihash, hex)."""
    fields: dict[str, Any] = {"file:size": path.stat().st_size}
    if checksum:
        fields["file:checksum"] = sha256_multihash(path)
    return fields


def sha256_multihash(path: str | os.PathLike[str], *, opener: Any = open) -> str:
    """Hex multihash of the SHA2-256 digest of a file, as ``file:checksum`` wants.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_multihash(p)[:12]
    '1220ba7816bf'
    """
    digest = hashlib.sha256()
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return SHA256_MULTIHASH_PREFIX + digest.hexdigest()


@functools.lru_cache(maxsize=64)
def _crs_info(wkt: str) -> tuple[int | None, str, str]:
    crs = rasterio.crs.CRS.from_wkt(wkt)
    return crs.to_epsg(), crs.to_wkt(version="WKT2_2019"), json.dumps(crs.to_dict(projjson=True))


def proj_fields(crs: rasterio.crs.CRS, transform: Affine, shape: Sequence[int]) -> dict[str, Any]:
    """Projection-extension fields of one grid: code, EPSG, shape, transform, bbox.

    The fields are those of projection v2.0.0, which has no ``proj:epsg`` (its schema
    refuses one; :func:`lazyraster.load` derives it from ``proj:code`` for stackstac). A
    CRS without an EPSG code is written as ``proj:wkt2`` and ``proj:projjson`` with
    ``proj:code`` null, so that a loader can still build the grid.

    Examples
    --------
    >>> from rasterio.crs import CRS
    >>> from affine import Affine
    >>> lcc = CRS.from_proj4("+proj=lcc +lat_1=25 +lat_2=60 +lat_0=42.5 +lon_0=-100 +ellps=WGS84")
    >>> fields = proj_fields(lcc, Affine(1000, 0, 0, 0, -1000, 0), (2, 3))
    >>> fields["proj:code"], CRS.from_wkt(fields["proj:wkt2"]) == lcc, "proj:projjson" in fields
    (None, True, True)
    """
    epsg, wkt, projjson = _crs_info(crs.to_wkt())
    height, width = int(shape[0]), int(shape[1])
    left, bottom, right, top = grid_bounds(transform, (height, width))
    fields: dict[str, Any] = {
        "proj:code": f"EPSG:{epsg}" if epsg else None,
    }
    if epsg is None:
        fields["proj:wkt2"] = wkt
        fields["proj:projjson"] = json.loads(projjson)
    fields["proj:shape"] = [height, width]
    fields["proj:transform"] = [_clean(v) for v in tuple(transform)[:6]]
    fields["proj:bbox"] = [_clean(v) for v in (left, bottom, right, top)]
    return fields


def grid_bounds(transform: Affine, shape: Sequence[int]) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a grid with an axis-aligned or rotated transform."""
    height, width = shape
    xs, ys = zip(
        *(transform @ (c, r) for c, r in ((0, 0), (width, 0), (width, height), (0, height))),
        strict=True,
    )
    return min(xs), min(ys), max(xs), max(ys)


def _clean(value: float) -> float | int:
    """Integral floats become ints (shorter, stable JSON); others stay floats."""
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def footprint(
    crs: rasterio.crs.CRS, transform: Affine, shape: Sequence[int]
) -> tuple[list[float], dict[str, Any]]:
    """WGS84 bbox and polygon geometry of a grid (edges densified before reprojection)."""
    bounds = grid_bounds(transform, shape)
    return bbox_geometry(_wgs84_bounds(crs.to_wkt(), bounds))


@functools.lru_cache(maxsize=1024)
def _wgs84_bounds(wkt: str, bounds: tuple[float, float, float, float]) -> list[float]:
    """Cached: files of one tile or region share their grid."""
    return list(rasterio.warp.transform_bounds(wkt, "EPSG:4326", *bounds, densify_pts=21))


def bbox_geometry(bbox: Sequence[float]) -> tuple[list[float], dict[str, Any]]:
    """Round a WGS84 bbox outwards to 7 decimals (about 1 cm) and make its polygon.

    Examples
    --------
    >>> bbox, geom = bbox_geometry([1.0, 2.0, 3.0, 4.0])
    >>> geom["coordinates"][0][:2]
    [[1.0, 2.0], [3.0, 2.0]]
    """
    west, south = (math.floor(round(float(v) * 1e7, 3)) / 1e7 for v in bbox[:2])
    east, north = (math.ceil(round(float(v) * 1e7, 3)) / 1e7 for v in bbox[2:4])
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return [west, south, east, north], {"type": "Polygon", "coordinates": [ring]}


def union_bbox(bboxes: Iterable[Sequence[float]]) -> list[float]:
    """Smallest bbox containing all ``bboxes``.

    Examples
    --------
    >>> union_bbox([[0, 0, 1, 1], [-1, 0.5, 0.5, 2]])
    [-1, 0, 1, 2]
    """
    boxes = list(bboxes)
    return [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]


def new_item(
    item_id: str,
    *,
    bbox: list[float],
    geometry: dict[str, Any],
    properties: Mapping[str, Any],
    assets: Mapping[str, dict[str, Any]],
    extensions: Iterable[str],
) -> dict[str, Any]:
    """A STAC Item dict with its fields in the usual order; links are added on writing."""
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": sorted(set(extensions)),
        "id": item_id,
        "geometry": geometry,
        "bbox": bbox,
        "properties": dict(properties),
        "links": [],
        "assets": {key: assets[key] for key in sorted(assets)},
    }


_SAFE_ID = re.compile(r"^[A-Za-z0-9._~-]+$")


def check_item_id(item_id: str) -> str:
    """Return ``item_id`` if it is safe as a file name, else raise :class:`ReadProblem`.

    Examples
    --------
    >>> check_item_id("S2A_MSIL2A_20230430")
    'S2A_MSIL2A_20230430'
    """
    if not item_id or not _SAFE_ID.match(item_id) or item_id in {".", ".."}:
        raise ReadProblem(
            f"item id {item_id!r} is not usable as a file name: use letters, digits, '._~-'"
        )
    return item_id
