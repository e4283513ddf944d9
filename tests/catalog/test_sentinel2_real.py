"""Real ESA Sentinel-2 L2A metadata: our items against the ones stactools-sentinel2 makes.

``tests/data/sentinel2-safe-metadata/`` holds the real ``MTD_MSIL2A.xml``,
``MTD_TL.xml`` and ``manifest.safe`` of five products (baselines 02.12, 02.14, 05.09;
two tiles across the antimeridian, southern and Antarctic tiles) and the STAC item
stactools-sentinel2 made from each (``expected_output.json``). Each test copies one
tree, writes every band file the manifest lists -- JPEG2000 via GDAL's JP2OpenJPEG
driver, or COG for the two products Esri reprocessed to GeoTIFF; no nodata tag, as ESA
ships them -- on exactly the grid ``MTD_TL.xml`` states (full 10980 x 10980 pixels at
10 m; the pixels are zeros with one small patch, so the files are a few kB and decode),
runs ``build_catalog`` and compares the item field by field.

Deliberate differences from stactools, not compared:

- item id: ours is the SAFE folder name (what the user sees on disk, unique per
  reprocessing); stactools builds ``S2A_T07HFE_20190212T192646_L2A``.
- asset keys: ours are ``B04_10m`` (band and resolution, one per file); stactools
  uses ``red``, ``red_20m``. Assets are matched by file instead, and loading picks
  bands by ``eo:common_name`` either way.
- titles, ``gsd``, SCL ``classification:classes``, ``view:*`` angles, the
  ``s2:*_percentage`` quality fields, ``proj:centroid``, providers and licence links,
  and the granule/datastrip/INSPIRE/manifest/preview metadata assets: not written.
- extension versions: ours are fixed (projection v2.0.0, STAC 1.1.0); one expected
  item was made with STAC 1.0.0 and projection v1.1.0 (``proj:epsg`` only), so
  ``proj:code`` is compared with ``EPSG:<proj:epsg>`` there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely.geometry
from rasterio.transform import from_origin

from lazyraster.catalog import build_catalog

pytestmark = pytest.mark.slow  # full-size band files: about a minute to write

DATA = Path(__file__).parents[1] / "data" / "sentinel2-safe-metadata"
PRODUCTS = sorted(p.name for p in DATA.glob("*.SAFE"))
_IMAGE = re.compile(r'href="\.?/?(GRANULE/[^"]*/IMG_DATA/[^"]*\.(?:jp2|tif))"')


def _tile_grids(mtd_tl: Path) -> tuple[str, dict[int, tuple[tuple[int, int], tuple[float, float]]]]:
    """EPSG code and, per resolution, (rows, cols) and (ULX, ULY), read independently."""
    root = ET.parse(mtd_tl).getroot()
    code = next(e.text for e in root.iter() if e.tag.endswith("HORIZONTAL_CS_CODE"))
    grids: dict[int, list] = {}
    for element in root.iter():
        if element.tag.endswith("Size"):
            grids.setdefault(int(element.attrib["resolution"]), [None, None])[0] = (
                int(element.find("NROWS").text),
                int(element.find("NCOLS").text),
            )
        elif element.tag.endswith("Geoposition"):
            grids.setdefault(int(element.attrib["resolution"]), [None, None])[1] = (
                float(element.find("ULX").text),
                float(element.find("ULY").text),
            )
    return code, {res: tuple(v) for res, v in grids.items()}


def _layout(name: str) -> tuple[int, str]:
    band = re.search(r"_([A-Z0-9]{3})_\d\dm\.", name)[1]
    return (3 if band == "TCI" else 1), ("uint8" if band in ("TCI", "SCL") else "uint16")


def _write_band(path: Path, shape, count: int, dtype: str, crs: str, transform) -> Path:
    """Write one band file: zeros with a small patch of DN 17, no nodata tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.zeros((count, *shape), dtype=dtype)
    data[:, :16, :16] = 17  # a little content, so decoding reads something
    options = (
        {"driver": "JP2OpenJPEG", "QUALITY": 100, "REVERSIBLE": "YES", "RESOLUTIONS": 6}
        if path.suffix == ".jp2"
        # overviews still made (the catalog decodes the smallest); nearest is faster than cubic
        else {"driver": "COG", "compress": "deflate", "level": 1, "overview_resampling": "nearest"}
    )
    with rasterio.open(
        path,
        "w",
        width=shape[1],
        height=shape[0],
        count=count,
        dtype=dtype,
        crs=crs,
        transform=transform,
        **options,
    ) as dst:
        dst.write(data)
    return path


def place_band_files(safe: Path) -> list[str]:
    """Write every band file that the product's manifest lists, on MTD_TL's grid.

    Files of one grid, band count and data type are identical but for their name, so
    each is encoded once and copied (full-size JPEG2000 encoding takes seconds).
    """
    (mtd_tl,) = safe.glob("GRANULE/*/MTD_TL.xml")
    code, grids = _tile_grids(mtd_tl)
    images = sorted(set(_IMAGE.findall((safe / "manifest.safe").read_text())))
    written: dict = {}
    for rel in images:
        res = int(re.search(r"_(\d\d)m\.", rel)[1])
        shape, (ulx, uly) = grids[res]
        count, dtype = _layout(rel)
        key = (res, count, dtype)
        if key in written:
            shutil.copyfile(written[key], safe / rel)
        else:
            transform = from_origin(ulx, uly, res, res)
            written[key] = _write_band(safe / rel, shape, count, dtype, code, transform)
    return images


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every product copied, given band files, and catalogued in one build."""
    root = tmp_path_factory.mktemp("real-safe")
    images = {}
    for name in PRODUCTS:
        safe = root / "products" / name
        shutil.copytree(DATA / name, safe, ignore=shutil.ignore_patterns("expected_output.json"))
        images[name] = place_band_files(safe)
    report = build_catalog(root / "products", root / "stac")
    assert report.ok, report.problems
    items = {}
    for path in (root / "stac").glob("*.json"):
        doc = json.loads(path.read_text())
        if doc["type"] == "Feature":
            items[doc["properties"]["s2:product_uri"]] = (path, doc)
    return {"root": root, "items": items, "images": images, "report": report}


def _expected(name: str) -> dict:
    return json.loads((DATA / name / "expected_output.json").read_text())


def _ours(built: dict, name: str) -> tuple[Path, dict]:
    return built["items"][_expected(name)["properties"]["s2:product_uri"]]


def test_every_real_product_is_catalogued(built: dict) -> None:
    assert len(built["items"]) == len(PRODUCTS) == 5
    assert len(built["report"].added) == 5


@pytest.mark.parametrize("name", PRODUCTS)
def test_item_properties_match_stactools(built: dict, name: str) -> None:
    expected = _expected(name)["properties"]
    _, item = _ours(built, name)
    props = item["properties"]
    assert dt.datetime.fromisoformat(props["datetime"]) == dt.datetime.fromisoformat(
        expected["datetime"]
    )
    for key in (
        "platform",
        "constellation",
        "instruments",
        "sat:relative_orbit",
        "sat:orbit_state",
        "mgrs:utm_zone",
        "mgrs:latitude_band",
        "mgrs:grid_square",
        "grid:code",
        "s2:processing_baseline",
        "s2:product_type",
        "s2:product_uri",
        "s2:datatake_id",
        "s2:datastrip_id",
        "s2:tile_id",
        "s2:generation_time",
    ):
        assert props[key] == expected[key], key
    assert props["eo:cloud_cover"] == pytest.approx(expected["eo:cloud_cover"], abs=1e-6)
    code = expected.get("proj:code") or f"EPSG:{expected['proj:epsg']}"
    assert props["proj:code"] == code and "proj:epsg" not in props  # projection v2.0.0
    assert props["s2:mgrs_tile"] == expected["grid:code"].removeprefix("MGRS-")


@pytest.mark.parametrize("name", PRODUCTS)
def test_geometry_and_bbox_match_stactools(built: dict, name: str) -> None:
    expected = _expected(name)
    _, item = _ours(built, name)
    assert item["geometry"]["type"] == expected["geometry"]["type"]
    ours = shapely.geometry.shape(item["geometry"])
    theirs = shapely.geometry.shape(expected["geometry"])
    assert ours.is_valid
    assert ours.hausdorff_distance(theirs) < 2e-6
    # stactools rounds to 6 decimals (0.1 m): the areas differ by that rounding only
    assert ours.symmetric_difference(theirs).area < 1e-5 * theirs.area
    assert item["bbox"] == pytest.approx(expected["bbox"], abs=2e-6)
    coordinates = np.array(
        [
            xy
            for polygon in (
                [item["geometry"]["coordinates"]]
                if item["geometry"]["type"] == "Polygon"
                else item["geometry"]["coordinates"]
            )
            for ring in polygon
            for xy in ring
        ]
    )
    assert (np.abs(coordinates[:, 0]) <= 180).all()


def test_antimeridian_products_are_split_with_a_crossing_bbox(built: dict) -> None:
    crossing = [n for n in PRODUCTS if "_T01W" in n or "_T01K" in n]
    assert len(crossing) == 2
    for name in crossing:
        _, item = _ours(built, name)
        west, _, east, _ = item["bbox"]
        assert west > 0 > east  # RFC 7946 5.2: west edge east of the east edge
        parts = item["geometry"]["coordinates"]
        sides = sorted(
            (max(x for x, _ in p[0]) <= 180 and min(x for x, _ in p[0]) >= 0) for p in parts
        )
        assert sides == [False, True]  # one part each side of the antimeridian
        for polygon in parts:  # counter-clockwise exterior rings (RFC 7946 3.1.6)
            assert shapely.geometry.Polygon(polygon[0]).exterior.is_ccw


@pytest.mark.parametrize("name", PRODUCTS)
def test_assets_match_stactools_per_band_file(built: dict, name: str) -> None:
    expected = _expected(name)
    path, item = _ours(built, name)
    safe = built["root"] / "products" / name
    ours = {
        Path(os.path.normpath(path.parent / a["href"])).relative_to(safe).as_posix(): a
        for a in item["assets"].values()
    }
    theirs = {
        a["href"].removeprefix("./"): a
        for a in expected["assets"].values()
        if "/IMG_DATA/" in a["href"]
    }
    assert set(theirs) <= set(ours)
    assert {k for k in ours if "/IMG_DATA/" in k} == set(built["images"][name])
    for href, want in theirs.items():
        got = ours[href]
        assert got["type"] == want["type"], href
        assert got["proj:shape"] == want["proj:shape"], href
        assert got["proj:transform"][:6] == pytest.approx(want["proj:transform"][:6]), href
        assert got["proj:bbox"] == pytest.approx(want["proj:bbox"]), href
        assert set(want["roles"]) <= set(got["roles"]), href
        if "eo:bands" in want:
            assert [(b["name"], b.get("common_name")) for b in got["eo:bands"]] == [
                (b["name"], b.get("common_name")) for b in want["eo:bands"]
            ], href
        assert len(got["raster:bands"]) == len(want["raster:bands"]), href
        for mine, ref in zip(got["raster:bands"], want["raster:bands"], strict=True):
            assert mine["nodata"] == ref["nodata"] == 0, href
            assert mine["data_type"] == ref["data_type"], href
            assert mine["spatial_resolution"] == ref["spatial_resolution"], href
            for key in ("scale", "offset"):
                assert mine.get(key, None) == pytest.approx(ref.get(key, None)), (href, key)
            assert mine.get("unit") == ref.get("unit"), href


@pytest.mark.parametrize("name", PRODUCTS)
def test_boa_offset_follows_the_baseline(built: dict, name: str) -> None:
    _, item = _ours(built, name)
    baseline = tuple(int(p) for p in item["properties"]["s2:processing_baseline"].split("."))
    want = -0.1 if baseline >= (4, 0) else 0.0
    reflectance = [a for a in item["assets"].values() if "reflectance" in a["roles"]]
    spectral = [i for i in built["images"][name] if re.search(r"_B[0-9][0-9A]_\d\dm\.", i)]
    assert len(reflectance) == len(spectral) >= 24
    for asset in reflectance:
        (band,) = asset["raster:bands"]
        assert band["scale"] == pytest.approx(1e-4)
        assert band["offset"] == pytest.approx(want)


def test_band_files_carry_no_nodata_tag_and_the_catalog_says_zero(built: dict) -> None:
    for name in PRODUCTS:
        path, item = _ours(built, name)
        for asset in item["assets"].values():
            if "raster:bands" not in asset:
                continue
            with rasterio.open(path.parent / asset["href"]) as src:
                assert src.nodata is None
            assert {b["nodata"] for b in asset["raster:bands"]} == {0}
