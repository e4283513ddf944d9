"""Recorded items of real STAC APIs, with small local files behind the assets they load.

``read_item`` reads a recorded response (``tests/data/stac-api-items/``); ``localize``
writes a small file per asset that matches the item's metadata (dtype, band count, CRS,
``proj:transform``) and points the href at it, served by nginx; ``expected_variable``
is what loading a band must give, from a rasterio read of that file.

``write_raster`` and ``make_item`` write a small file and an item over it, for tests
that make their own data.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import from_origin
from tests.conftest import ROOT
from tests.services import NginxForTest

DATA = ROOT / "tests" / "data" / "stac-api-items"
PIXELS = 48  # rows and columns of the finest asset's small copy


def read_item(name: str) -> dict[str, Any]:
    """Return the first feature of the recorded response ``name``, as served."""
    return json.loads((DATA / f"{name}.json").read_text())["features"][0]


def crs_of(fields: dict[str, Any]) -> CRS | None:
    if fields.get("proj:epsg") is not None:
        return CRS.from_epsg(fields["proj:epsg"])
    if fields.get("proj:code"):
        return CRS.from_user_input(fields["proj:code"])
    return None


def band_list(asset: dict[str, Any]) -> list[dict[str, Any]]:
    """raster:bands entries, padded to the number of eo:bands."""
    raster = asset.get("raster:bands") or []
    count = max(len(raster), len(asset.get("eo:bands") or []), 1)
    return [raster[i] if i < len(raster) else {} for i in range(count)]


def localize(item: dict[str, Any], keys: set[str], root: Path, nginx: NginxForTest) -> dict:
    """Make small files for the assets behind ``keys``; point the item's hrefs at them."""
    props = item["properties"]

    def field(asset: dict[str, Any], name: str) -> Any:
        return asset.get(name, props.get(name))

    finest = min(abs(field(item["assets"][k], "proj:transform")[0]) for k in keys)
    rng = np.random.default_rng(abs(hash(item["id"])) % 2**32)
    for key in sorted(keys):
        asset = item["assets"][key]
        transform = field(asset, "proj:transform")
        cols = max(1, math.ceil(PIXELS * finest / abs(transform[0])))
        ratio = abs(transform[0]) / abs(transform[4])  # 10 for Copernicus DEM at 89 S
        shape = [cols * 2 if ratio > 2 else cols, cols]
        target = asset if "proj:shape" in asset or "proj:shape" not in props else props
        target["proj:shape"] = shape
        a = Affine(*transform[:6])
        box = [a.c, a.f + a.e * shape[0], a.c + a.a * shape[1], a.f]
        for level in (asset, props):
            if "proj:bbox" in level:
                level["proj:bbox"] = box
        bands = band_list(asset)
        dtype = bands[0].get("data_type") or ("uint8" if len(bands) > 1 else "uint16")
        if np.dtype(dtype).kind == "f":
            data = rng.normal(1000, 300, (len(bands), *shape)).astype(dtype)
        else:
            high = min(np.iinfo(dtype).max, 10000)
            data = rng.integers(2, high, (len(bands), *shape), dtype=dtype)
        for i, band in enumerate(bands):
            if band.get("nodata") is not None:
                data[i, : shape[0] // 4, : shape[1] // 3] = band["nodata"]
        jp2 = asset["type"] == "image/jp2"
        path = root / item["id"] / (f"{key}.jp2" if jp2 else f"{key}.tif")
        path.parent.mkdir(parents=True, exist_ok=True)
        options = {"QUALITY": 100, "REVERSIBLE": "YES"} if jp2 else {"BLOCKSIZE": 32}
        with rasterio.open(
            path,
            "w",
            driver="JP2OpenJPEG" if jp2 else "COG",
            width=shape[1],
            height=shape[0],
            count=len(bands),
            dtype=dtype,
            crs=crs_of(asset) or crs_of(props),
            transform=a,
            **options,
        ) as dst:  # no nodata tag: the item's raster:bands must say it
            dst.write(data)
        asset["href"] = nginx.url_for(path)
        asset["_local"] = str(path)
    return item


def expected_variable(item: dict[str, Any], key: str, band: int, ds) -> np.ndarray:
    """The band of the local file, scaled and masked as the item says, sampled at the
    output pixel centres (nearest neighbour by index arithmetic)."""
    asset = item["assets"][key]
    meta = band_list(asset)[band - 1]
    with rasterio.open(asset["_local"]) as src:
        dn = src.read(band)
        a = src.transform
    scale = np.float32(meta.get("scale", 1))
    offset = np.float32(meta.get("offset", 0))
    values = dn.astype(np.float32) * scale + offset
    if meta.get("nodata") is not None:
        values[dn == meta["nodata"]] = np.nan
    cols = np.floor((ds.x.values - a.c) / a.a + 1e-9).astype(int)
    rows = np.floor((ds.y.values - a.f) / a.e + 1e-9).astype(int)
    out = np.full((ds.sizes["y"], ds.sizes["x"]), np.nan, np.float32)
    ok_r = (rows >= 0) & (rows < dn.shape[0])
    ok_c = (cols >= 0) & (cols < dn.shape[1])
    out[np.ix_(ok_r, ok_c)] = values[np.ix_(rows[ok_r], cols[ok_c])]
    return out


WHEN = dt.datetime(2023, 5, 1, 10, 30, tzinfo=dt.UTC)
TRANSFORM = from_origin(600000, 5700000, 10, 10)
UTM = "EPSG:32631"


def write_raster(path: Path, data: np.ndarray, *, driver: str = "COG", crs=UTM, **extra) -> Path:
    """Write ``data`` (bands, rows, cols) with NO nodata tag, as ESA writes its JP2s."""
    count, height, width = data.shape
    options = {"QUALITY": 100, "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {}
    with rasterio.open(
        path,
        "w",
        driver=driver,
        width=width,
        height=height,
        count=count,
        dtype=data.dtype.name,
        crs=crs,
        transform=extra.pop("transform", TRANSFORM),
        **options,
        **extra,
    ) as dst:
        dst.write(data)
    with rasterio.open(path) as src:
        assert src.nodata is None, "the test needs files without a nodata tag"
    return path


def make_item(item_id: str, assets: dict[str, dict], *, when=WHEN, properties=None) -> pystac.Item:
    """An item whose assets carry the given fields; grid fields are read from the files."""
    item = pystac.Item(
        id=item_id,
        geometry={"type": "Point", "coordinates": [4.5, 51.4]},
        bbox=[4.4, 51.3, 4.6, 51.5],
        datetime=when,
        properties=dict(properties or {}),
    )
    for key, fields in assets.items():
        fields = dict(fields)
        href = str(fields.pop("href"))
        with rasterio.open(href) as src:
            grid = {
                "proj:shape": [src.height, src.width],
                "proj:transform": list(src.transform)[:6],
            }
            if src.crs.to_epsg() is not None:
                grid["proj:code"] = f"EPSG:{src.crs.to_epsg()}"
        media = pystac.MediaType.JPEG2000 if href.endswith(".jp2") else pystac.MediaType.COG
        item.add_asset(
            key,
            pystac.Asset(href, media_type=media, roles=["data"], extra_fields={**grid, **fields}),
        )
    return item
