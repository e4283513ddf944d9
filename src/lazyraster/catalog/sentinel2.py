"""Sentinel-2 L2A SAFE products: one item per product, one asset per band file.

Metadata comes from ``MTD_MSIL2A.xml`` (datetime, platform, relative orbit, cloud
cover, processing baseline, ``BOA_QUANTIFICATION_VALUE`` and ``BOA_ADD_OFFSET``), with
the product name as fall-back. Grids come from the granule's ``MTD_TL.xml``
(``Tile_Geocoding``) or, without it, from opening each band file, so the 10, 20 and
60 m assets each carry their own ``proj:shape`` and ``proj:transform``.

Reflectance = DN * scale + offset, with scale = 1 / BOA_QUANTIFICATION_VALUE and offset
= BOA_ADD_OFFSET / BOA_QUANTIFICATION_VALUE: -0.1 from processing baseline 04.00 on, 0
before. DN 0 is nodata.
"""

from __future__ import annotations

import datetime as _dt
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import rasterio
import rasterio.crs
import rasterio.errors
from affine import Affine

from lazyraster.catalog import _stac
from lazyraster.catalog._stac import ReadProblem
from lazyraster.catalog.geotiff import S2_BANDS, eo_band

_NAME = re.compile(
    r"^(?P<platform>S2[A-D])_MSIL2A_(?P<datetime>\d{8}T\d{6})_N(?P<baseline>\d{4})"
    r"_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})_(?P<discriminator>\d{8}T\d{6})$"
)
_BAND_FILE = re.compile(r"_(?P<band>B\d\d|B8A|SCL|AOT|WVP|TCI)_(?P<res>\d\d)m\.jp2$")
#: Order of bands in ``BOA_ADD_OFFSET band_id`` (the product's Spectral_Information list).
_BAND_IDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
             "B11", "B12"]  # fmt: skip
#: Data type and band count of the L2A band files (Product Specification Document).
_DTYPES = {"SCL": ("uint8", 1), "TCI": ("uint8", 3)}
_DESCRIPTIONS = {
    "SCL": "Scene classification map",
    "AOT": "Aerosol optical thickness",
    "WVP": "Water vapour",
    "TCI": "True colour image",
}


def is_safe(path: Path) -> bool:
    """True for a directory named ``*.SAFE`` (a Sentinel-2 product folder)."""
    return path.suffix.upper() == ".SAFE" and path.is_dir()


def safe_id(path: Path) -> str:
    """Item id of a product: its folder name without ``.SAFE``."""
    return path.name[: -len(".SAFE")]


def band_files(path: Path) -> dict[str, Path]:
    """Asset key (``B04_10m``) -> band file, for every band file of the product."""
    found: dict[str, Path] = {}
    for jp2 in sorted(path.glob("GRANULE/*/IMG_DATA/R*m/*.jp2")):
        match = _BAND_FILE.search(jp2.name)
        if match:
            found[f"{match['band']}_{match['res']}m"] = jp2
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
        elif (
            tag
            in {
                "PRODUCT_START_TIME",
                "DATATAKE_SENSING_START",
                "SPACECRAFT_NAME",
                "SENSING_ORBIT_NUMBER",
                "PROCESSING_BASELINE",
                "Cloud_Coverage_Assessment",
                "BOA_QUANTIFICATION_VALUE",
                "AOT_QUANTIFICATION_VALUE",
                "WVP_QUANTIFICATION_VALUE",
                "PRODUCT_URI",
            }
            and text
            and tag not in found
        ):
            found[tag] = text
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


def _read_jp2(jp2: Path) -> tuple[Any, Affine, tuple[int, int], str, int]:
    try:
        with rasterio.open(jp2) as src:
            found = (src.crs, src.transform, src.shape, src.dtypes[0], src.count)
    except rasterio.errors.RasterioError as exc:
        raise ReadProblem(
            f"band file {jp2.name} is not readable ({exc}); download the product again"
        ) from None
    if found[0] is None:
        raise ReadProblem(f"band file {jp2.name} has no CRS")
    return found


def _baseline_tuple(baseline: str) -> tuple[int, int]:
    major, _, minor = baseline.partition(".")
    return int(major), int(minor or 0)


def safe_item(path: Path, *, checksum: bool = False) -> dict[str, Any]:
    """Make the STAC item of one Sentinel-2 L2A SAFE product folder."""
    item_id = _stac.check_item_id(safe_id(path))
    name = _NAME.match(item_id)
    mtd_path = path / "MTD_MSIL2A.xml"
    meta = read_metadata(mtd_path) if mtd_path.is_file() else {}
    if not meta and name is None:
        raise ReadProblem(
            "has no MTD_MSIL2A.xml and its name does not follow the "
            "S2X_MSIL2A_<date>_N<baseline>_R<orbit>_T<tile>_<date> convention"
        )
    when_text = meta.get("PRODUCT_START_TIME") or meta.get("DATATAKE_SENSING_START")
    if when_text:
        when = _stac.parse_datetime(when_text)
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
    if tile is None and files:
        tile = next(iter(files.values())).name[1:6]
    if not files:
        raise ReadProblem(
            "has no band files under GRANULE/*/IMG_DATA/R*m/; the product is incomplete"
        )

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
    for key, jp2 in files.items():
        band, res = key.split("_")[0], key.split("_")[1].rstrip("m")
        if int(res) in tile_grids:
            crs, transform, shape = tile_grids[int(res)]
            dtype, count = _DTYPES.get(band, ("uint16", 1))
            if jp2.stat().st_size == 0:
                raise ReadProblem(f"band file {jp2.name} is empty; download the product again")
        else:
            crs, transform, shape, dtype, count = _read_jp2(jp2)
        asset: dict[str, Any] = {
            "href": str(jp2),
            "type": _stac.JP2_MEDIA_TYPE,
            "title": f"{band} ({_DESCRIPTIONS.get(band, 'reflectance')}, {int(res)} m)",
        }
        if band == "TCI":
            asset["roles"] = ["visual"]
            asset["eo:bands"] = [eo_band(b) for b in ("B04", "B03", "B02")]
        else:
            asset["roles"] = ["data"]
        asset.update(_stac.proj_fields(crs, transform, shape))
        if band in S2_BANDS:
            asset["eo:bands"] = [eo_band(band)]
        elif band != "TCI":  # SCL, AOT, WVP: a band name, so loaders can call them "SCL"
            asset["eo:bands"] = [{"name": band, "description": _DESCRIPTIONS[band]}]
        if band != "TCI" and count == 1:
            raster: dict[str, Any] = {
                "nodata": 0,
                "data_type": dtype,
                "spatial_resolution": int(res),
            }
            if band in S2_BANDS:
                raster.update(scale=1 / quant, offset=boa_offset(band))
            elif band in {"AOT", "WVP"}:
                raster.update(scale=1 / float(meta.get(f"{band}_QUANTIFICATION_VALUE", 1000)),
                              offset=0.0)  # fmt: skip
            asset["raster:bands"] = [raster]
        asset.update(_stac.file_fields(jp2, checksum=checksum))
        assets[key] = asset
        boxes.append(_stac.footprint(crs, transform, shape)[0])
        codes.add((asset["proj:code"], asset["proj:epsg"]))
    if mtd_path.is_file():
        assets["product_metadata"] = {
            "href": str(mtd_path),
            "type": _stac.XML_MEDIA_TYPE,
            "title": "Product metadata (MTD_MSIL2A.xml)",
            "roles": ["metadata"],
            **_stac.file_fields(mtd_path, checksum=checksum),
        }
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
    if len(codes) == 1:
        properties["proj:code"], properties["proj:epsg"] = codes.pop()
    if tile:
        properties["s2:mgrs_tile"] = tile
    properties["s2:processing_baseline"] = baseline
    properties["s2:boa_quantification_value"] = _stac._clean(quant)
    properties["s2:boa_add_offset"] = _stac._clean(boa_offset("B04") * quant)
    properties["s2:product_uri"] = path.name
    extensions = {_stac.PROJ_EXT, _stac.EO_EXT, _stac.RASTER_EXT, _stac.FILE_EXT}
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
