"""Sentinel-2 L2A SAFE products: one item per product, one asset per band file.

Metadata comes from ``MTD_MSIL2A.xml`` (datetime, platform, orbit, cloud cover,
processing baseline, ``BOA_QUANTIFICATION_VALUE``, ``BOA_ADD_OFFSET`` per band, the
product footprint), with the product name as fall-back. Every band file (JPEG2000 as
ESA ships it, or GeoTIFF/COG as some reprocessed products hold) is opened, checked to
be complete and decoded at its smallest overview; its grid must equal the one the
granule's ``MTD_TL.xml`` (``Tile_Geocoding``) states, so the 10, 20 and 60 m assets
each carry their own ``proj:shape`` and ``proj:transform``.

The geometry is the product footprint (``Global_Footprint``), split at the
antimeridian into a MultiPolygon as GeoJSON (RFC 7946) asks, with a bbox whose west
edge is then greater than its east edge; without a footprint it is the tile's extent.

Reflectance = DN * scale + offset, with scale = 1 / BOA_QUANTIFICATION_VALUE and offset
= BOA_ADD_OFFSET / BOA_QUANTIFICATION_VALUE: -0.1 from processing baseline 04.00 on, 0
before. DN 0 is nodata in every band file; the files themselves carry no nodata tag.
Level-1C products are refused with a message naming the Level-2A alternative.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import rasterio
import rasterio.crs
import rasterio.errors
import shapely.affinity
import shapely.geometry
import shapely.geometry.polygon
from affine import Affine

from lazyraster.catalog import _stac
from lazyraster.catalog._stac import ReadProblem
from lazyraster.catalog.formats.geotiff import S2_BANDS, check_decodes, eo_band

_NAME = re.compile(
    r"^(?P<platform>S2[A-D])_MSI(?P<level>L1C|L2A)_(?P<datetime>\d{8}T\d{6})_N(?P<baseline>\d{4})"
    r"_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})_(?P<discriminator>\d{8}T\d{6})$"
)
_BAND_FILE = re.compile(
    r"_(?P<band>B\d\d|B8A|SCL|AOT|WVP|TCI)_(?P<res>\d\d)m\.(?P<suffix>jp2|tif|tiff)$"
)
#: Order of bands in ``BOA_ADD_OFFSET band_id`` (the product's Spectral_Information list).
_BAND_IDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
             "B11", "B12"]  # fmt: skip
_DESCRIPTIONS = {
    "SCL": "Scene classification map",
    "AOT": "Aerosol optical thickness",
    "WVP": "Water vapour",
    "TCI": "True colour image",
}
MGRS_EXT = "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json"
GRID_EXT = "https://stac-extensions.github.io/grid/v1.1.0/schema.json"
S2_EXT = "https://stac-extensions.github.io/sentinel-2/v1.0.0/schema.json"
#: Elements of ``MTD_MSIL2A.xml`` read as text (the first occurrence of each).
_TEXT_FIELDS = frozenset(
    [
        "PRODUCT_START_TIME",
        "DATATAKE_SENSING_START",
        "SPACECRAFT_NAME",
        "SENSING_ORBIT_NUMBER",
        "SENSING_ORBIT_DIRECTION",
        "PROCESSING_BASELINE",
        "PROCESSING_LEVEL",
        "PRODUCT_TYPE",
        "GENERATION_TIME",
        "Cloud_Coverage_Assessment",
        "BOA_QUANTIFICATION_VALUE",
        "AOT_QUANTIFICATION_VALUE",
        "WVP_QUANTIFICATION_VALUE",
        "PRODUCT_URI",
        "EXT_POS_LIST",
    ]
)
#: Attributes read as fields: element -> {attribute: field}.
_ATTRIBUTE_FIELDS = {
    "Datatake": {"datatakeIdentifier": "datatake_id"},
    "Granule": {"datastripIdentifier": "datastrip_id", "granuleIdentifier": "tile_id"},
}


#: Product metadata files: a folder holding one is a product, whatever its name.
_PRODUCT_FILES = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")


def is_safe(path: Path) -> bool:
    """True for a Sentinel-2 product folder: named ``*.SAFE``, or holding its metadata.

    Unpacked products whose ``.SAFE`` was dropped from the name are products too (their
    band files are not loose JPEG2000s).
    """
    if not path.is_dir():
        return False
    return path.suffix.upper() == ".SAFE" or any((path / n).is_file() for n in _PRODUCT_FILES)


def safe_id(path: Path) -> str:
    """Item id of a product: its folder name without ``.SAFE``."""
    return path.name[: -len(".SAFE")] if path.suffix.upper() == ".SAFE" else path.name


def band_files(path: Path) -> dict[str, Path]:
    """Asset key (``B04_10m``) -> band file, for every band file of the product.

    Band files are JPEG2000 (``.jp2``, as ESA ships them) or GeoTIFF (``.tif``, as
    products reprocessed to COGs hold them).
    """
    found: dict[str, Path] = {}
    for image in sorted(path.glob("GRANULE/*/IMG_DATA/R*m/*")):
        match = _BAND_FILE.search(image.name)
        if match:
            found.setdefault(f"{match['band']}_{match['res']}m", image)
    return found


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_metadata(path: Path) -> dict[str, Any]:
    """The fields this module needs from ``MTD_MSIL2A.xml``, namespace-agnostic.

    Missing elements are left out; an unparsable file raises :class:`ReadProblem`.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ReadProblem(
            f"{path.name} is not valid XML ({exc}); download the product again"
        ) from None
    found: dict[str, Any] = {}
    offsets: dict[int, float] = {}
    for element in root.iter():
        tag, text = _local(element.tag), (element.text or "").strip()
        if tag == "BOA_ADD_OFFSET" and "band_id" in element.attrib:
            offsets[int(element.attrib["band_id"])] = float(text)
        elif tag in _TEXT_FIELDS and text and tag not in found:
            found[tag] = text
        for attribute, name in _ATTRIBUTE_FIELDS.get(tag, {}).items():
            if attribute in element.attrib and name not in found:
                found[name] = element.attrib[attribute]
    if offsets:
        found["BOA_ADD_OFFSET"] = offsets
    return found


def read_tile_grids(path: Path) -> dict[int, tuple[Any, Affine, tuple[int, int]]]:
    """Grids per resolution (metres) from a granule's ``MTD_TL.xml``; {} if unusable.

    ``Tile_Geocoding`` gives ``HORIZONTAL_CS_CODE`` and, per resolution, ``Size``
    (``NROWS``, ``NCOLS``) and ``Geoposition`` (``ULX``, ``ULY``, ``XDIM``, ``YDIM``):
    the grids of the band files without opening them.
    """
    if not path.is_file():
        return {}
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return {}
    code = None
    sizes: dict[int, tuple[int, int]] = {}
    origins: dict[int, Affine] = {}
    try:
        for element in root.iter():
            tag = _local(element.tag)
            if tag == "HORIZONTAL_CS_CODE":
                code = (element.text or "").strip()
            elif tag in ("Size", "Geoposition"):
                res = int(element.attrib["resolution"])
                values = {_local(c.tag): float(c.text or "nan") for c in element}
                if tag == "Size":
                    sizes[res] = (int(values["NROWS"]), int(values["NCOLS"]))
                else:
                    origins[res] = Affine(
                        values["XDIM"], 0.0, values["ULX"], 0.0, values["YDIM"], values["ULY"]
                    )
        crs = rasterio.crs.CRS.from_string(code) if code else None
    except (KeyError, ValueError, rasterio.errors.CRSError):
        return {}
    if crs is None:
        return {}
    return {res: (crs, origins[res], sizes[res]) for res in sizes if res in origins}


def _read_band(image: Path) -> dict[str, Any]:
    """Header of one band file, after checking that it is complete and decodes."""
    try:
        with (
            rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
            rasterio.open(image) as src,
        ):
            check_decodes(src, image)
            found = {
                "crs": src.crs,
                "transform": src.transform,
                "shape": src.shape,
                "dtypes": list(src.dtypes),
                "driver": src.driver,
                "cog": src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "").upper() == "COG",
            }
    except ReadProblem as exc:
        raise ReadProblem(f"band file {image.name}: {exc}") from None
    except rasterio.errors.RasterioError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReadProblem(
            f"band file {image.name} is not readable ({reason}); download the product again"
        ) from None
    if found["crs"] is None:
        raise ReadProblem(f"band file {image.name} has no CRS")
    return found


def _check_grid(image: Path, header: dict[str, Any], stated: tuple[Any, Affine, Any]) -> None:
    """Raise unless a band file's grid is the one ``MTD_TL.xml`` states."""
    crs, transform, shape = stated
    if (
        header["crs"] != crs
        or tuple(header["shape"]) != tuple(shape)
        or not header["transform"].almost_equals(transform, precision=1e-6)
    ):
        found = f"{tuple(header['shape'])} {tuple(header['transform'])[:6]} in {header['crs']}"
        raise ReadProblem(
            f"band file {image.name} has the grid {found} but MTD_TL.xml states "
            f"{tuple(shape)} {tuple(transform)[:6]} in {crs}; download the product again"
        )


def _media_type(header: dict[str, Any]) -> str:
    if header["driver"] == "GTiff":
        return _stac.COG_MEDIA_TYPE if header["cog"] else _stac.GEOTIFF_MEDIA_TYPE
    return _stac.JP2_MEDIA_TYPE


def _round_out(value: float, up: bool) -> float:
    scaled = round(float(value) * 1e7, 3)
    return (math.ceil(scaled) if up else math.floor(scaled)) / 1e7


def footprint_geometry(pos_list: str) -> tuple[list[float], dict[str, Any]]:
    """Bbox and GeoJSON geometry of an ``EXT_POS_LIST`` footprint (``lat lon`` pairs).

    A footprint that crosses the antimeridian is cut there into a MultiPolygon (one
    part on each side, RFC 7946 section 3.1.9) and its bbox has west > east (section
    5.2). Rings run counter-clockwise; coordinates are rounded to 7 decimals.

    Examples
    --------
    >>> bbox, geom = footprint_geometry("-16 179 -16 -179 -17 -179 -17 179 -16 179")
    >>> bbox, geom["type"], len(geom["coordinates"])
    ([179.0, -17.0, -179.0, -16.0], 'MultiPolygon', 2)
    """
    try:
        values = [float(v) for v in pos_list.split()]
    except ValueError:
        values = []
    if len(values) < 8 or len(values) % 2:
        raise ReadProblem("MTD_MSIL2A.xml has an unreadable footprint (EXT_POS_LIST)")
    points = [(lon, lat) for lat, lon in zip(values[0::2], values[1::2], strict=True)]
    lons = [lon for lon, _ in points]
    crosses = max(lons) - min(lons) > 180
    if crosses:
        points = [(lon + 360 if lon < 0 else lon, lat) for lon, lat in points]
    polygon = shapely.geometry.Polygon(points).buffer(0)
    parts = []
    if crosses:
        east = polygon.intersection(shapely.geometry.box(-180, -90, 180, 90))
        west = polygon.intersection(shapely.geometry.box(180, -90, 540, 90))
        parts = [*_polygons(east), *_polygons(shapely.affinity.translate(west, xoff=-360))]
    else:
        parts = _polygons(polygon)
    if not parts:
        raise ReadProblem("MTD_MSIL2A.xml has an empty footprint (EXT_POS_LIST)")
    rings = [
        [
            [round(x, 7), round(y, 7)]
            for x, y in shapely.geometry.polygon.orient(part).exterior.coords
        ]
        for part in parts
    ]
    south = _round_out(min(p.bounds[1] for p in parts), up=False)
    north = _round_out(max(p.bounds[3] for p in parts), up=True)
    if len(parts) == 1:
        west_x, _, east_x, _ = parts[0].bounds
        return [_round_out(west_x, False), south, _round_out(east_x, True), north], {
            "type": "Polygon",
            "coordinates": [rings[0]],
        }
    eastern = [p for p in parts if p.bounds[0] >= 0]
    western = [p for p in parts if p.bounds[0] < 0]
    bbox = [
        _round_out(min(p.bounds[0] for p in eastern), up=False),
        south,
        _round_out(max(p.bounds[2] for p in western), up=True),
        north,
    ]
    return bbox, {"type": "MultiPolygon", "coordinates": [[ring] for ring in rings]}


def _polygons(geometry: Any) -> list[shapely.geometry.Polygon]:
    """The polygons of positive area in a shapely geometry."""
    if isinstance(geometry, shapely.geometry.Polygon):
        return [geometry] if geometry.area > 0 else []
    return [g for g in getattr(geometry, "geoms", []) for g in _polygons(g)]


def _baseline_tuple(baseline: str) -> tuple[int, int]:
    major, _, minor = baseline.partition(".")
    return int(major), int(minor or 0)


def _refuse_level1c(path: Path, item_id: str, meta: dict[str, Any]) -> None:
    level1c = (
        (path / "MTD_MSIL1C.xml").is_file()
        or "_MSIL1C_" in item_id
        or meta.get("PROCESSING_LEVEL", "").upper() == "LEVEL-1C"
    )
    if level1c:
        raise ReadProblem(
            "is a Level-1C product (top-of-atmosphere reflectance, no scene classification); "
            "only Level-2A products are catalogued: download the L2A product or process this "
            "one with Sen2Cor"
        )


def _mgrs_fields(tile: str) -> dict[str, Any]:
    return {
        "mgrs:utm_zone": int(tile[:2]),
        "mgrs:latitude_band": tile[2],
        "mgrs:grid_square": tile[3:5],
        "grid:code": f"MGRS-{tile}",
    }


def safe_item(path: Path, *, checksum: bool = False) -> dict[str, Any]:
    """Make the STAC item of one Sentinel-2 L2A SAFE product folder.

    Raises :class:`ReadProblem` when the product is Level-1C, incomplete, or has a
    band file that is truncated, does not decode, or whose grid is not the one
    ``MTD_TL.xml`` states.
    """
    item_id = _stac.check_item_id(safe_id(path))
    mtd_path = path / "MTD_MSIL2A.xml"
    meta = read_metadata(mtd_path) if mtd_path.is_file() else {}
    _refuse_level1c(path, item_id, meta)
    uri = meta.get("PRODUCT_URI", "")
    name = _NAME.match(uri[: -len(".SAFE")] if uri.endswith(".SAFE") else uri) or _NAME.match(
        item_id
    )
    if not meta and name is None:
        raise ReadProblem(
            "has no MTD_MSIL2A.xml and its name does not follow the "
            "S2X_MSIL2A_<date>_N<baseline>_R<orbit>_T<tile>_<date> convention"
        )
    when_text = meta.get("PRODUCT_START_TIME") or meta.get("DATATAKE_SENSING_START")
    if when_text:
        when = _stac.parse_instant(when_text)
    elif name:
        when = _dt.datetime.strptime(name["datetime"], "%Y%m%dT%H%M%S")
    else:
        raise ReadProblem("MTD_MSIL2A.xml has no PRODUCT_START_TIME: download the product again")
    if "SPACECRAFT_NAME" in meta:
        platform = meta["SPACECRAFT_NAME"].lower()
    elif name:
        platform = "sentinel-2" + name["platform"][-1].lower()
    else:
        platform = None
    if "PROCESSING_BASELINE" in meta:
        baseline = meta["PROCESSING_BASELINE"]
    elif name:
        baseline = f"{name['baseline'][:2]}.{name['baseline'][2:]}"
    else:
        raise ReadProblem("MTD_MSIL2A.xml has no PROCESSING_BASELINE")
    orbit = int(meta["SENSING_ORBIT_NUMBER"]) if "SENSING_ORBIT_NUMBER" in meta else None
    if orbit is None and name:
        orbit = int(name["orbit"])
    tile = name["tile"] if name else None
    files = band_files(path)
    if not files:
        raise ReadProblem(
            "has no band files under GRANULE/*/IMG_DATA/R*m/; the product is incomplete"
        )
    if tile is None:
        tile = next(iter(files.values())).name[1:6]

    quant = float(meta.get("BOA_QUANTIFICATION_VALUE", 10000))
    offsets = meta.get("BOA_ADD_OFFSET")
    new_baseline = _baseline_tuple(baseline) >= (4, 0)

    def boa_offset(band: str) -> float:
        if offsets is not None:
            return offsets.get(_BAND_IDS.index(band), 0.0) / quant
        return -1000.0 / quant if new_baseline else 0.0

    assets: dict[str, dict[str, Any]] = {}
    boxes = []
    codes = set()
    tile_grids = read_tile_grids(next(iter(files.values())).parents[2] / "MTD_TL.xml")
    for key, image in files.items():
        band, res = key.split("_")[0], int(key.split("_")[1].rstrip("m"))
        header = _read_band(image)
        if res in tile_grids:
            _check_grid(image, header, tile_grids[res])
        crs, transform, shape = header["crs"], header["transform"], header["shape"]
        asset: dict[str, Any] = {
            "href": str(image),
            "type": _media_type(header),
            "title": f"{band} ({_DESCRIPTIONS.get(band, 'reflectance')}, {res} m)",
        }
        if band == "TCI":
            asset["roles"] = ["visual"]
            asset["eo:bands"] = [eo_band(b) for b in ("B04", "B03", "B02")]
        elif band in S2_BANDS:
            asset["roles"] = ["data", "reflectance"]
        else:
            asset["roles"] = ["data"]
        asset.update(_stac.proj_fields(crs, transform, shape))
        if band in S2_BANDS:
            asset["eo:bands"] = [eo_band(band)]
        elif band != "TCI":  # SCL, AOT, WVP: a band name, so loaders can call them "SCL"
            asset["eo:bands"] = [{"name": band, "description": _DESCRIPTIONS[band]}]
        raster_bands = [
            {"nodata": 0, "data_type": dtype, "spatial_resolution": res}
            for dtype in header["dtypes"]
        ]
        if band in S2_BANDS:
            raster_bands[0].update(scale=1 / quant, offset=boa_offset(band))
        elif band in {"AOT", "WVP"}:
            scale = 1 / float(meta.get(f"{band}_QUANTIFICATION_VALUE", 1000))
            raster_bands[0].update(scale=scale, offset=0.0)
            if band == "WVP":
                raster_bands[0]["unit"] = "cm"
        asset["raster:bands"] = raster_bands
        asset.update(_stac.file_fields(image, checksum=checksum))
        assets[key] = asset
        boxes.append(_stac.footprint(crs, transform, shape)[0])
        codes.add(asset["proj:code"])
    if mtd_path.is_file():
        assets["product_metadata"] = {
            "href": str(mtd_path),
            "type": _stac.XML_MEDIA_TYPE,
            "title": "Product metadata (MTD_MSIL2A.xml)",
            "roles": ["metadata"],
            **_stac.file_fields(mtd_path, checksum=checksum),
        }
    if "EXT_POS_LIST" in meta:
        bbox, geometry = footprint_geometry(meta["EXT_POS_LIST"])
    else:
        bbox, geometry = _stac.bbox_geometry(_stac.union_bbox(boxes))
    properties: dict[str, Any] = {"datetime": _stac.format_datetime(when)}
    if platform:
        properties["platform"] = platform
    properties["constellation"] = "sentinel-2"
    properties["instruments"] = ["msi"]
    if "Cloud_Coverage_Assessment" in meta:
        properties["eo:cloud_cover"] = float(meta["Cloud_Coverage_Assessment"])
    if orbit is not None:
        properties["sat:relative_orbit"] = orbit
    if "SENSING_ORBIT_DIRECTION" in meta:
        properties["sat:orbit_state"] = meta["SENSING_ORBIT_DIRECTION"].lower()
    if len(codes) == 1:
        properties["proj:code"] = codes.pop()
    properties.update(_mgrs_fields(tile))
    properties["s2:mgrs_tile"] = tile
    properties["s2:processing_baseline"] = baseline
    properties["s2:product_uri"] = uri or path.name
    for field, tag in (("product_type", "PRODUCT_TYPE"), ("generation_time", "GENERATION_TIME")):
        if tag in meta:
            properties[f"s2:{field}"] = meta[tag]
    for field in ("datatake_id", "datastrip_id", "tile_id"):
        if field in meta:
            properties[f"s2:{field}"] = meta[field]
    extensions = {
        _stac.PROJ_EXT,
        _stac.EO_EXT,
        _stac.RASTER_EXT,
        _stac.FILE_EXT,
        MGRS_EXT,
        GRID_EXT,
        S2_EXT,
    }
    if orbit is not None:
        extensions.add(_stac.SAT_EXT)
    return _stac.new_item(
        item_id,
        bbox=bbox,
        geometry=geometry,
        properties=properties,
        assets=assets,
        extensions=extensions,
    )
