"""Reference values made outside the code under test, shared by several test modules.

The bundled sample's NDVI straight from its GeoTIFFs with rasterio and numpy (as the
course scripts compute it), plain-loop focal statistics, NDVI of Sentinel-2 SAFE folders
from their band files and XML with the SCL classes ESA defines, and the spring indices
the ML_SI toolbox published for six real stations.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "catalogs" / "sample" / "catalog.json"
SIX_STATIONS = ROOT / "tests" / "data" / "six-stations"
ITEM_DIR = SAMPLE.parent / "sentinel-2-l2a-composite" / "S2_L3B_21JXN_20210319"

#: SCL classes that are not a clear view of the ground (ESA's Level-2A product
#: definition): no data, saturated or defective, cloud shadow, cloud of medium and high
#: probability, thin cirrus, snow or ice.
SCL_NOT_CLEAR = (0, 1, 3, 8, 9, 10, 11)


def ndvi_of(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """(nir - red) / (nir + red) in float64, NaN where either input is NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (nir - red) / (nir + red)


def sample_ndvi() -> tuple[np.ndarray, rasterio.Affine, rasterio.crs.CRS]:
    """NDVI of the sample item in float64, NaN where either band is nodata (0)."""
    with rasterio.open(ITEM_DIR / "B04.tif") as r, rasterio.open(ITEM_DIR / "B08.tif") as n:
        red = r.read(1).astype(np.float64) / 10000
        nir = n.read(1).astype(np.float64) / 10000
        transform, crs = r.transform, r.crs
    ndvi = ndvi_of(red, nir)
    ndvi[(red == 0) | (nir == 0)] = np.nan
    return ndvi, transform, crs


def loop_focal(
    values: np.ndarray,
    size: int = 3,
    *,
    shape: str = "square",
    edge: str = "nodata",
    min_count: int | str = 1,
    stat=np.mean,
) -> np.ndarray:
    """``stat`` of the valid pixels of each window, one pixel at a time.

    ``shape="circle"`` keeps the offsets with ``dy**2 + dx**2 <= (size // 2)**2``.
    Beyond the border: missing (``edge="nodata"``), mirrored with the edge pixel repeated
    (``"reflect"``, numpy's ``pad(mode="symmetric")``) or the edge pixel repeated
    (``"nearest"``, ``pad(mode="edge")``). A window with fewer than ``min_count`` valid
    pixels (``"all"``: every pixel of the window) gives NaN.
    """
    radius = size // 2
    if edge == "nodata":
        padded = np.pad(values.astype(np.float64), radius, constant_values=np.nan)
    else:
        padded = np.pad(values.astype(np.float64), radius, mode={"reflect": "symmetric",
                        "nearest": "edge"}[edge])  # fmt: skip
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    footprint = dy**2 + dx**2 <= radius**2 if shape == "circle" else np.ones_like(dy, bool)
    need = int(footprint.sum()) if min_count == "all" else int(min_count)
    out = np.full(values.shape, np.nan)
    rows, cols = values.shape
    for i in range(rows):
        for j in range(cols):
            window = padded[i : i + size, j : j + size][footprint]
            valid = window[np.isfinite(window)]
            if valid.size and valid.size >= need:
                out[i, j] = stat(valid)
    return out


def loop_focal_mean(values: np.ndarray, radius: int = 1) -> np.ndarray:
    """Mean of the valid pixels of each square window; outside the image counts as missing."""
    return loop_focal(values, 2 * radius + 1)


def safe_band(safe: Path, band: str, res: int) -> np.ndarray:
    """Reflectance of one band file of a SAFE folder on its own grid, NaN where DN is 0.

    The quantification value and the band's ``BOA_ADD_OFFSET`` (absent before
    processing baseline 04.00) are read from the product's ``MTD_MSIL2A.xml``.
    """
    path = next(safe.glob(f"GRANULE/*/IMG_DATA/R{res}m/*_{band}_{res}m.jp2"))
    with rasterio.open(path) as src:
        dn = src.read(1).astype(np.float64)
    if band == "SCL":
        dn[dn == 0] = np.nan
        return dn
    root = ET.parse(safe / "MTD_MSIL2A.xml").getroot()
    quantification = float(next(e.text for e in root.iter() if e.tag == "BOA_QUANTIFICATION_VALUE"))
    band_id = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
               "B11", "B12"].index(band)  # fmt: skip
    offsets = {e.attrib["band_id"]: float(e.text) for e in root.iter() if e.tag == "BOA_ADD_OFFSET"}
    reflectance = (dn + offsets.get(str(band_id), 0.0)) / quantification
    reflectance[dn == 0] = np.nan
    return reflectance


#: Real ESA metadata (``MTD_MSIL2A.xml``, ``MTD_TL.xml``) of Sentinel-2 L2A products.
REAL_SAFE = ROOT / "tests" / "data" / "sentinel2-safe-metadata"


def xml_fields(path: Path, tags: tuple[str, ...]) -> dict[str, list[str]]:
    """Element path (namespaces left out) -> values, of the elements named ``tags``."""
    found: dict[str, list[str]] = {}

    def walk(element: ET.Element, parent: str) -> None:
        here = f"{parent}/{element.tag.split('}')[-1]}"
        if here.rsplit("/", 1)[-1] in tags:
            found.setdefault(here, []).append(
                " ".join([*(f"{k}={v}" for k, v in element.attrib.items()), element.text or ""])
            )
        for child in element:
            walk(child, here)

    walk(ET.parse(path).getroot(), "")
    return found


def safe_masked_ndvi(safe: Path) -> np.ndarray:
    """NDVI of a SAFE folder on the 10 m grid, NaN where the 20 m SCL is not a clear view."""
    red, nir = safe_band(safe, "B04", 10), safe_band(safe, "B08", 10)
    scl = np.repeat(np.repeat(safe_band(safe, "SCL", 20), 2, axis=0), 2, axis=1)
    ndvi = ndvi_of(red, nir)
    ndvi[np.isnan(scl) | np.isin(scl, SCL_NOT_CLEAR)] = np.nan
    return ndvi


def ml_si_published(event: str) -> np.ndarray:
    """ML_SI's average first ``leaf`` or ``bloom`` day: (201 years 1850-2050, 6 stations).

    As archived with the stations' temperatures (``tests/data/six-stations``, see its
    PROVENANCE.md); NaN where ML_SI gave none.
    """
    files = [SIX_STATIONS / "ml_si_output" / f"station_{s}_{event}.csv" for s in range(1, 7)]
    return np.stack([np.loadtxt(f) for f in files], axis=1)
