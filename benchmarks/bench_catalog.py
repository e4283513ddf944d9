"""Catalog building: lazyraster.build_catalog against a plain pystac + rasterio loop.

Input (made once, deterministically, in a temporary folder): ``size`` small COGs named
``{date}_{band}.tif`` (64 x 64 uint16, 2 bands per date) and ``size // 20`` Sentinel-2
L2A SAFE products with all 36 band files per product as tiny JPEG2000s (6 x 6 pixels
at 10 m) and a real-format ``MTD_MSIL2A.xml``. At the default size that is 1,000 COGs
and 50 SAFE products: 1,000 + 50 x 37 = 2,850 files whose headers are read.

- ``pystac + rasterio loop`` (baseline): what the course notebooks do, one file after
  the other: open each file with rasterio for its grid, make a ``pystac.Item`` with
  projection, raster and file fields (and the SAFE metadata from the XML), add it to a
  ``pystac.Catalog`` and ``normalize_and_save`` it self-contained.
- ``build_catalog (fresh)``: the same catalog content with lazyraster, every header
  read again (``rebuild=True``), header reads in threads.
- ``build_catalog (1 thread)``: the same, ``workers=1``.
- ``build_catalog (incremental, unchanged)``: a re-run over unchanged files.
"""

from __future__ import annotations

import atexit
import datetime as dt
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pystac
import rasterio
import rasterio.warp
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterBand, RasterExtension

from harness import Case
from lazyraster.catalog import build_catalog
from lazyraster.testing import write_safe, write_sample_cog

DEFAULT_SIZE = 1000


def make_inputs(size: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    atexit.register(shutil.rmtree, root, True)
    start = dt.date(2020, 1, 1)
    for i in range(size):
        date = start + dt.timedelta(days=i // 2)
        band = ("B04", "B08")[i % 2]
        write_sample_cog(root / "cogs" / f"{date:%Y%m%d}_{band}.tif", shape=(64, 64), seed=i)
    for j in range(size // 20):
        when = dt.datetime(2021, 1, 1, 10, 30) + dt.timedelta(days=5 * j)
        write_safe(root / "s2", start=when, size_10m=6, seed=j, baseline="04.00")
    return root


def _asset(path: Path, media_type: str, key_band: str | None = None) -> pystac.Asset:
    asset = pystac.Asset(str(path), media_type=media_type, roles=["data"])
    with rasterio.open(path) as src:
        ProjectionExtension.ext(asset).apply(
            epsg=src.crs.to_epsg(), shape=list(src.shape), transform=list(src.transform)[:6]
        )
        bands = [RasterBand.create(nodata=0, data_type=src.dtypes[0])]
        bounds = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    RasterExtension.ext(asset).apply(bands=bands)
    FileExtension.ext(asset).apply(size=path.stat().st_size)
    asset.extra_fields["_bbox"] = list(bounds)
    return asset


def _item(item_id: str, when: dt.datetime, assets: dict[str, pystac.Asset]) -> pystac.Item:
    boxes = [a.extra_fields.pop("_bbox") for a in assets.values()]
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes)]  # fmt: skip
    ring = [[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]], [bbox[0], bbox[3]],
            [bbox[0], bbox[1]]]  # fmt: skip
    item = pystac.Item(item_id, {"type": "Polygon", "coordinates": [ring]}, bbox, when, {})
    for key, asset in assets.items():
        item.add_asset(key, asset)
    ProjectionExtension.add_to(item)
    RasterExtension.add_to(item)
    FileExtension.add_to(item)
    return item


def pystac_loop(root: Path, out: Path) -> None:
    catalog = pystac.Catalog("bench", "plain loop")
    groups: dict[str, dict[str, Path]] = {}
    for path in sorted((root / "cogs").glob("*.tif")):
        date, band = path.stem.split("_")
        groups.setdefault(date, {})[band] = path
    for date, files in groups.items():
        assets = {b: _asset(p, pystac.MediaType.COG) for b, p in files.items()}
        catalog.add_item(_item(date, dt.datetime.strptime(date, "%Y%m%d"), assets))
    for safe in sorted((root / "s2").glob("*.SAFE")):
        tree = ET.parse(safe / "MTD_MSIL2A.xml").getroot()
        start = next(e.text for e in tree.iter() if e.tag.endswith("PRODUCT_START_TIME"))
        when = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
        assets = {}
        for jp2 in sorted(safe.glob("GRANULE/*/IMG_DATA/R*m/*.jp2")):
            key = re.search(r"_([A-Z0-9]{3})_(\d\dm)\.jp2$", jp2.name)
            assets[f"{key[1]}_{key[2]}"] = _asset(jp2, pystac.MediaType.JPEG2000)
        catalog.add_item(_item(safe.stem, when, assets))
    catalog.normalize_and_save(str(out), pystac.CatalogType.SELF_CONTAINED)


def setup(size: int) -> list[Case]:
    root = make_inputs(size)
    sources = [root / "cogs", root / "s2"]
    pattern = "{date}_{band}.tif"

    def baseline() -> None:
        out = root / "out-pystac"
        shutil.rmtree(out, ignore_errors=True)
        pystac_loop(root, out)

    def fresh(workers: int | None) -> None:
        build_catalog(sources, root / "out-lazy", pattern=pattern, rebuild=True, workers=workers)

    build_catalog(sources, root / "out-incremental", pattern=pattern)
    return [
        Case("pystac + rasterio loop", baseline, baseline=True),
        Case("build_catalog (fresh)", lambda: fresh(None)),
        Case("build_catalog (1 thread)", lambda: fresh(1)),
        Case(
            "build_catalog (incremental, unchanged)",
            lambda: build_catalog(sources, root / "out-incremental", pattern=pattern),
        ),
    ]
