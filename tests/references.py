"""Reference values made outside the code under test, shared by several test modules.

The bundled sample's NDVI straight from its GeoTIFFs with rasterio and numpy (as the
course scripts compute it), a plain-loop focal mean, and the spring indices the ML_SI
toolbox published for six real stations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "catalogs" / "sample" / "catalog.json"
SIX_STATIONS = ROOT / "tests" / "data" / "six-stations"
ITEM_DIR = SAMPLE.parent / "sentinel-2-l2a-composite" / "S2_L3B_21JXN_20210319"


def sample_ndvi() -> tuple[np.ndarray, rasterio.Affine, rasterio.crs.CRS]:
    """NDVI of the sample item in float64, NaN where either band is nodata (0)."""
    with rasterio.open(ITEM_DIR / "B04.tif") as r, rasterio.open(ITEM_DIR / "B08.tif") as n:
        red = r.read(1).astype(np.float64) / 10000
        nir = n.read(1).astype(np.float64) / 10000
        transform, crs = r.transform, r.crs
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
    ndvi[(red == 0) | (nir == 0)] = np.nan
    return ndvi, transform, crs


def loop_focal_mean(values: np.ndarray, radius: int = 1) -> np.ndarray:
    """Mean of the valid pixels of each window; outside the image counts as missing."""
    out = np.full(values.shape, np.nan)
    rows, cols = values.shape
    for i in range(rows):
        for j in range(cols):
            window = values[
                max(i - radius, 0) : i + radius + 1, max(j - radius, 0) : j + radius + 1
            ]
            valid = window[np.isfinite(window)]
            if valid.size:
                out[i, j] = valid.sum() / valid.size
    return out


def ml_si_published(event: str) -> np.ndarray:
    """ML_SI's average first ``leaf`` or ``bloom`` day: (201 years 1850-2050, 6 stations).

    As archived with the stations' temperatures (``tests/data/six-stations``, see its
    PROVENANCE.md); NaN where ML_SI gave none.
    """
    files = [SIX_STATIONS / "ml_si_output" / f"station_{s}_{event}.csv" for s in range(1, 7)]
    return np.stack([np.loadtxt(f) for f in files], axis=1)
