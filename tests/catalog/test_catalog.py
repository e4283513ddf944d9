"""Building static STAC catalogs from SAFE products, COGs and netCDF files.

Inputs are real files written in tmp_path (JPEG2000 by GDAL's OpenJPEG driver, COGs
by GDAL's COG driver, netCDF4 files with CF metadata). Expected values come from the
file-writing parameters, from rasterio/pyproj reads of the files, from the published
Sentinel-2 reflectance rule and from hashlib.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyproj
import pystac
import pytest
import rasterio
import rasterio.crs
import rasterio.transform
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from tests.catalog._support import DAYMET

import lazyraster
from lazyraster.catalog import _build as build_module
from lazyraster.catalog import build_catalog, compile_pattern, describe_catalog, validate_catalog
from lazyraster.catalog._layout import group_id, parse_when
from lazyraster.catalog._stac import CatalogIO, format_datetime, parse_instant
from lazyraster.cli import main
from lazyraster.errors import CatalogError, OutputExistsError
from lazyraster.testing import write_daymet, write_safe, write_sample_cog

S2_NEW = dt.datetime(2023, 4, 30, 10, 46, 21, 24000)
S2_OLD = dt.datetime(2021, 6, 1, 10, 30, 21)
SIZE_10M = 12


# --------------------------------------------------------------------------- inputs
@pytest.fixture(scope="module")
def s2_dir(tmp_path_factory) -> Path:
    """Two L2A products of tile 31UFU: baseline 04.00 (2023) and 02.12 (2021)."""
    root = tmp_path_factory.mktemp("s2")
    write_safe(root, baseline="04.00", start=S2_NEW, size_10m=SIZE_10M, seed=1)
    write_safe(root, baseline="02.12", start=S2_OLD, size_10m=SIZE_10M, seed=2, cloud=87.5)
    return root


@pytest.fixture(scope="module")
def cog_dir(tmp_path_factory) -> Path:
    """Two dates of B04 and B08 COGs named {date}_{band}.tif."""
    root = tmp_path_factory.mktemp("cogs")
    for i, date in enumerate(("20230430", "20230515")):
        write_sample_cog(root / f"{date}_B04.tif", seed=10 + i, scale=0.0001, offset=-0.1)
        write_sample_cog(root / f"{date}_B08.tif", seed=20 + i, scale=0.0001, offset=-0.1)
    return root


@pytest.fixture(scope="module")
def daymet_dir(tmp_path_factory) -> Path:
    """Daymet-like files: regions na and hi, variables tmin and tmax, years 2020-2021."""
    root = tmp_path_factory.mktemp("daymet")
    for region, x0 in (("na", -1000.0), ("hi", -5_000_000.0)):
        for year in (2020, 2021):
            for variable in ("tmax", "tmin"):
                name = DAYMET.format(region=region, variable=variable, year=year)
                write_daymet(root / region / name, variable=variable, year=year, x0=x0)
    return root


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def items_of(out: Path) -> dict[str, tuple[Path, dict]]:
    """id -> (path, item) found by walking the catalog with pystac (an outside reader)."""
    catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
    found = {}
    for item in catalog.get_items(recursive=True):
        path = Path(item.get_self_href())
        found[item.id] = (path, read_json(path))
    return found


def href_path(item_path: Path, href: str) -> Path:
    assert not href.startswith("/"), "hrefs must be relative"
    return Path(os.path.normpath(item_path.parent / href))


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.json"))}


# ------------------------------------------------------------------- Sentinel-2 SAFE
@pytest.fixture(scope="module")
def s2_catalog(s2_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("s2cat") / "stac"
    report = build_catalog(s2_dir, out, layout="${year}/${tile}", collection="sentinel-2-l2a")
    assert report.ok and len(report.added) == 2
    return out


def test_safe_item_metadata_from_mtd(s2_catalog):
    items = items_of(s2_catalog)
    new_id = "S2A_MSIL2A_20230430T104621_N0400_R051_T31UFU_20230430T151154"
    old_id = "S2A_MSIL2A_20210601T103021_N0212_R051_T31UFU_20210601T145554"
    assert sorted(items) == [old_id, new_id]
    _, new = items[new_id]
    props = new["properties"]
    assert props["datetime"] == "2023-04-30T10:46:21.024000Z"
    assert props["platform"] == "sentinel-2a"
    assert props["eo:cloud_cover"] == 12.345678
    assert props["sat:relative_orbit"] == 51
    assert props["s2:mgrs_tile"] == "31UFU"
    assert props["s2:processing_baseline"] == "04.00"
    assert props["proj:code"] == "EPSG:32631" and "proj:epsg" not in props
    assert new["collection"] == "sentinel-2-l2a"
    _, old = items[old_id]
    assert old["properties"]["eo:cloud_cover"] == 87.5
    assert old["properties"]["s2:processing_baseline"] == "02.12"
    # layout ${year}/${tile}
    assert (s2_catalog / "sentinel-2-l2a" / "2023" / "31UFU" / f"{new_id}.json").is_file()
    assert (s2_catalog / "sentinel-2-l2a" / "2021" / "31UFU" / f"{old_id}.json").is_file()


def test_safe_assets_per_band_and_resolution(s2_catalog):
    path, item = next(v for k, v in items_of(s2_catalog).items() if "N0400" in k)
    assets = item["assets"]
    expected = {f"{b}_{res}" for res, bands in {
        "10m": ["AOT", "B02", "B03", "B04", "B08", "TCI", "WVP"],
        "20m": ["AOT", "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B11", "B12", "B8A",
                "SCL", "TCI", "WVP"],
        "60m": ["AOT", "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B09", "B11", "B12",
                "B8A", "SCL", "TCI", "WVP"],
    }.items() for b in bands}  # fmt: skip
    assert set(assets) == expected | {"product_metadata"}
    common = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B8A": "nir08",
              "B11": "swir16", "B12": "swir22", "B01": "coastal", "B09": "nir09"}  # fmt: skip
    for key, asset in assets.items():
        if key == "product_metadata":
            assert asset["roles"] == ["metadata"]
            continue
        band, res = key.split("_")
        metres = int(res[:-1])
        n = SIZE_10M * 10 // metres
        # grids: analytic, and equal to what rasterio reads from the href
        assert asset["proj:shape"] == [n, n]
        assert asset["proj:transform"] == [metres, 0, 600000, 0, -metres, 5700000]
        assert asset["proj:code"] == "EPSG:32631" and "proj:epsg" not in asset
        with rasterio.open(href_path(path, asset["href"])) as src:
            assert list(src.shape) == asset["proj:shape"]
            assert list(src.transform)[:6] == asset["proj:transform"]
            dtype = src.dtypes[0]
        assert asset["type"] == "image/jp2"
        if band == "TCI":
            assert asset["roles"] == ["visual"]
            assert [b["common_name"] for b in asset["eo:bands"]] == ["red", "green", "blue"]
            continue
        assert len(asset["raster:bands"]) == 1, "one band per asset"
        assert asset["raster:bands"][0]["nodata"] == 0
        assert asset["raster:bands"][0]["data_type"] == dtype
        if band in common:
            assert asset["eo:bands"] == [
                {**asset["eo:bands"][0], "name": band, "common_name": common[band]}
            ]
        assert asset["file:size"] == href_path(path, asset["href"]).stat().st_size


@pytest.mark.parametrize(("baseline", "dn_offset"), [("N0400", -1000), ("N0212", 0)])
def test_safe_reflectance_rule(s2_catalog, baseline, dn_offset):
    """reflectance = (DN + BOA_ADD_OFFSET) / 10000, offset -1000 from baseline 04.00 on."""
    path, item = next(v for k, v in items_of(s2_catalog).items() if baseline in k)
    for key in ("B04_10m", "B8A_20m", "B01_60m"):
        asset = item["assets"][key]
        band = asset["raster:bands"][0]
        assert band["scale"] == 0.0001
        assert band["offset"] == pytest.approx(dn_offset / 10000)
        with rasterio.open(href_path(path, asset["href"])) as src:
            dn = src.read(1)
        reflectance = dn * band["scale"] + band["offset"]
        np.testing.assert_allclose(reflectance, (dn.astype(float) + dn_offset) / 10000, atol=1e-12)
        for field in ("AOT", "WVP"):
            aot = item["assets"][f"{field}_20m"]["raster:bands"][0]
            assert aot["scale"] == pytest.approx(0.001) and aot["offset"] == 0


def test_safe_bbox_contains_reprojected_corners(s2_catalog):
    _, item = next(iter(items_of(s2_catalog).values()))
    to_wgs84 = pyproj.Transformer.from_crs(32631, 4326, always_xy=True)
    extent = SIZE_10M * 10
    lon, lat = to_wgs84.transform(
        [600000, 600000 + extent, 600000 + extent, 600000],
        [5700000, 5700000, 5700000 - extent, 5700000 - extent],
    )
    west, south, east, north = item["bbox"]
    assert west <= min(lon) and east >= max(lon) and south <= min(lat) and north >= max(lat)
    assert max(min(lon) - west, east - max(lon), min(lat) - south, north - max(lat)) < 1e-5
    assert item["geometry"]["coordinates"][0][0] == [west, south]


def test_safe_without_metadata_falls_back_on_name(tmp_path):
    write_safe(tmp_path / "src", baseline="05.09", size_10m=6, bands={"10m": ["B04"]},
               metadata=False, tile_metadata=False)  # fmt: skip
    report = build_catalog(tmp_path / "src", tmp_path / "out")
    assert report.ok
    (_, item) = next(iter(items_of(tmp_path / "out").values()))
    props = item["properties"]
    assert props["datetime"] == "2023-04-30T10:46:21Z"  # from the name: no milliseconds
    assert props["platform"] == "sentinel-2a"
    assert props["s2:processing_baseline"] == "05.09"
    assert props["sat:relative_orbit"] == 51
    assert "eo:cloud_cover" not in props
    assert item["assets"]["B04_10m"]["raster:bands"][0]["offset"] == -0.1


def test_catalog_loads_with_pystac_extensions(s2_catalog):
    catalog = pystac.Catalog.from_file(str(s2_catalog / "catalog.json"))
    collection = next(iter(catalog.get_children()))
    assert isinstance(collection, pystac.Collection)
    assert collection.extent.temporal.intervals[0][0] == S2_OLD.replace(tzinfo=dt.UTC)
    item = next(i for i in catalog.get_items(recursive=True) if "N0400" in i.id)
    asset = item.assets["B8A_20m"]
    assert ProjectionExtension.ext(asset).epsg == 32631
    assert ProjectionExtension.ext(asset).code == "EPSG:32631"
    assert ProjectionExtension.ext(asset).shape == [SIZE_10M // 2, SIZE_10M // 2]
    assert EOExtension.ext(asset).bands[0].common_name == "nir08"
    band = RasterExtension.ext(asset).bands[0]
    assert (band.nodata, band.scale, band.offset) == (0, 0.0001, -0.1)
    assert item.collection_id == "sentinel-2-l2a"


# ------------------------------------------------------------------------ GeoTIFF/COG
def test_cog_pattern_groups_bands_into_items(cog_dir, tmp_path):
    report = build_catalog(cog_dir, tmp_path / "out", pattern="{date}_{band}.tif")
    assert report.ok and report.added == ["20230430", "20230515"]
    items = items_of(tmp_path / "out")
    path, item = items["20230430"]
    assert item["properties"]["datetime"] == "2023-04-30T00:00:00Z"
    assert set(item["assets"]) == {"B04", "B08"}
    for key, common in (("B04", "red"), ("B08", "nir")):
        asset = item["assets"][key]
        assert asset["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
        assert asset["eo:bands"][0]["common_name"] == common
        assert asset["raster:bands"] == [
            {"nodata": 0, "data_type": "uint16", "spatial_resolution": 10,
             "scale": 0.0001, "offset": -0.1}
        ]  # fmt: skip
        with rasterio.open(href_path(path, asset["href"])) as src:
            assert list(src.shape) == asset["proj:shape"] == [32, 32]
            assert list(src.transform)[:6] == asset["proj:transform"]
            assert src.crs.to_string() == asset["proj:code"] == "EPSG:32631"
        expected = href_path(path, asset["href"])
        assert expected == cog_dir / f"20230430_{key}.tif"


def test_geotiff_per_file_datetime_from_tag_descriptions_and_option(tmp_path):
    src = tmp_path / "src"
    write_sample_cog(src / "scene.tif", count=2, descriptions=["red", "nir"],
              datetime_tag="2022:07:01 09:30:00", nodata=None)  # fmt: skip
    write_sample_cog(src / "dem.tif", dtype="float32", nodata=float("nan"))
    report = build_catalog(src, tmp_path / "out")
    assert [p.path for p in report.problems] == [str(src / "dem.tif")]
    assert "--datetime" in report.problems[0].message
    report = build_catalog(src, tmp_path / "out", datetime="2020-01-02T03:04:05Z")
    assert report.ok and report.added == ["dem"] and report.unchanged == ["scene"]
    items = items_of(tmp_path / "out")
    scene = items["scene"][1]
    assert scene["properties"]["datetime"] == "2022-07-01T09:30:00Z"
    assert [b["common_name"] for b in scene["assets"]["data"]["eo:bands"]] == ["red", "nir"]
    assert all("nodata" not in b for b in scene["assets"]["data"]["raster:bands"])
    dem = items["dem"][1]
    assert dem["properties"]["datetime"] == "2020-01-02T03:04:05Z"
    assert dem["assets"]["data"]["raster:bands"][0]["nodata"] == "nan"
    assert dem["assets"]["data"]["raster:bands"][0]["data_type"] == "float32"


def test_geotiff_bands_option_names_bands(tmp_path):
    write_sample_cog(tmp_path / "src" / "x.tif", count=2, datetime_tag="2022:07:01 09:30:00")
    build_catalog(tmp_path / "src", tmp_path / "out", bands=["swir16", "swir22"])
    item = items_of(tmp_path / "out")["x"][1]
    assert [b["name"] for b in item["assets"]["data"]["eo:bands"]] == ["swir16", "swir22"]
    report = build_catalog(tmp_path / "src", tmp_path / "out2", bands=["red"])
    assert "has 2 band(s) but 1 band name(s)" in report.problems[0].message


def test_plain_geotiff_media_type(tmp_path):
    path = tmp_path / "src" / "20230101_red.tif"
    path.parent.mkdir()
    with rasterio.open(path, "w", driver="GTiff", width=3, height=3, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=rasterio.transform.from_origin(5, 50, 0.1, 0.1),
                       ) as dst:  # fmt: skip
        dst.write(np.ones((1, 3, 3), "uint8"))
    build_catalog(path.parent, tmp_path / "out", pattern="{date}_{band}.tif")
    item = items_of(tmp_path / "out")["20230101"][1]
    assert item["assets"]["red"]["type"] == "image/tiff; application=geotiff"
    assert item["bbox"] == [5.0, 49.7, 5.3, 50.0]


# ------------------------------------------------------------------------------ netCDF
@pytest.fixture(scope="module")
def daymet_catalog(daymet_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dmcat") / "stac"
    report = build_catalog(daymet_dir, out, pattern=DAYMET, layout="${region}", checksum=True)
    assert report.ok
    return out


def test_netcdf_items_per_region_year_with_variable_assets(daymet_catalog, daymet_dir):
    items = items_of(daymet_catalog)
    assert sorted(items) == [f"daymet_v4_daily_{r}_{y}" for r in ("hi", "na") for y in (2020, 2021)]
    path, item = items["daymet_v4_daily_na_2021"]
    assert path.parent.name == "na"  # layout ${region}
    props = item["properties"]
    assert props["datetime"] is None
    # time_bnds: 365 days from 1 January at midnight
    start = np.datetime64("2021-01-01T00:00")
    assert props["start_datetime"] == "2021-01-01T00:00:00Z"
    end = start + np.timedelta64(365, "D")
    assert props["end_datetime"] == f"{np.datetime_as_string(end, unit='s')}Z"
    assert props["region"] == "na"
    assert set(item["assets"]) == {"tmin", "tmax"}
    for variable, asset in item["assets"].items():
        assert asset["type"] == "application/x-netcdf"
        file = href_path(path, asset["href"])
        assert file == daymet_dir / "na" / DAYMET.format(region="na", variable=variable, year=2021)
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        assert asset["file:checksum"] == "1220" + digest
        assert asset["file:size"] == file.stat().st_size
        assert asset["proj:shape"] == [6, 8]
        assert asset["proj:transform"] == [1000, 0, -1000, 0, -1000, 500]


def test_netcdf_crs_and_bbox_from_cf_grid_mapping(daymet_catalog, daymet_dir):
    import xarray as xr

    path, item = items_of(daymet_catalog)["daymet_v4_daily_na_2020"]
    asset = item["assets"]["tmax"]
    with xr.open_dataset(href_path(path, asset["href"])) as ds:
        reference = pyproj.CRS.from_cf(ds["lambert_conformal_conic"].attrs)
        x, y = ds["x"].values, ds["y"].values
    assert asset["proj:code"] is None and "proj:epsg" not in asset
    assert pyproj.CRS.from_wkt(asset["proj:wkt2"]) == reference
    # edges of the grid, densified, reprojected with pyproj
    xe = np.linspace(x[0] - 500, x[-1] + 500, 50)
    ye = np.linspace(y[0] + 500, y[-1] - 500, 50)
    xs = np.concatenate([xe, xe, np.full(50, xe[0]), np.full(50, xe[-1])])
    ys = np.concatenate([np.full(50, ye[0]), np.full(50, ye[-1]), ye, ye])
    lon, lat = pyproj.Transformer.from_crs(reference, 4326, always_xy=True).transform(xs, ys)
    np.testing.assert_allclose(item["bbox"], [lon.min(), lat.min(), lon.max(), lat.max()],
                               atol=1e-4)  # fmt: skip


def test_netcdf_lat_lon_grid_and_missing_grid_mapping(tmp_path):
    import xarray as xr

    src = tmp_path / "src"
    src.mkdir()
    lat = np.array([50.75, 50.25])
    lon = np.array([4.25, 4.75, 5.25])
    time = np.array(["2001-01-01", "2001-01-02"], dtype="datetime64[ns]")
    ds = xr.Dataset({"pr": (("time", "lat", "lon"), np.zeros((2, 2, 3), "f4"))},
                    coords={"time": time, "lat": lat, "lon": lon})  # fmt: skip
    ds.to_netcdf(src / "pr.nc")
    write_daymet(src / "nogrid.nc", grid_mapping=False, days=3)
    report = build_catalog(src, tmp_path / "out")
    assert [Path(p.path).name for p in report.problems] == ["nogrid.nc"]
    assert "grid_mapping" in report.problems[0].message
    item = items_of(tmp_path / "out")["pr"][1]
    assert item["bbox"] == [4.0, 50.0, 5.5, 51.0]
    assert item["assets"]["pr"]["proj:code"] == "EPSG:4326"
    assert item["properties"]["start_datetime"] == "2001-01-01T00:00:00Z"
    assert item["properties"]["end_datetime"] == "2001-01-02T00:00:00Z"


# ------------------------------------------------------------------------- determinism
def test_output_is_byte_identical_and_thread_independent(s2_dir, cog_dir, tmp_path):
    out = tmp_path / "out"
    options = {"pattern": "{date}_{band}.tif", "layout": "${year}/${month}", "checksum": True}
    build_catalog([cog_dir], out, workers=1, **options)
    first = snapshot(out)
    shutil.rmtree(out)
    build_catalog([cog_dir], out, workers=8, **options)
    assert snapshot(out) == first
    text = "".join(v.decode() for v in first.values())
    assert str(tmp_path) not in text and str(cog_dir) not in text, "hrefs must be relative"
    build_catalog([s2_dir], tmp_path / "s2a", workers=1)
    build_catalog([s2_dir], tmp_path / "s2b", workers=6)
    assert snapshot(tmp_path / "s2a").keys() == snapshot(tmp_path / "s2b").keys()
    for (ka, va), (_, vb) in zip(snapshot(tmp_path / "s2a").items(),
                                 snapshot(tmp_path / "s2b").items(), strict=True):  # fmt: skip
        assert va.replace(b'"s2a"', b'"s2b"') == vb, ka


# --------------------------------------------------------------- incremental and prune
def test_incremental_add_update_missing_prune(tmp_path):
    src = tmp_path / "src"
    write_sample_cog(src / "20230101_red.tif", seed=1)
    write_sample_cog(src / "20230102_red.tif", seed=2)
    out = tmp_path / "out"
    build_catalog(src, out, pattern="{date}_{band}.tif")
    before = snapshot(out)
    write_sample_cog(src / "20230103_red.tif", seed=3)
    report = build_catalog(src, out, pattern="{date}_{band}.tif")
    assert report.added == ["20230103"] and report.unchanged == ["20230101", "20230102"]
    after = snapshot(out)
    for name in ("20230101.json", "20230102.json"):
        assert after[name] == before[name]
    # a changed file is read again
    write_sample_cog(src / "20230102_red.tif", seed=2, shape=(16, 16))
    report = build_catalog(src, out, pattern="{date}_{band}.tif")
    assert report.updated == ["20230102"]
    assert items_of(out)["20230102"][1]["assets"]["red"]["proj:shape"] == [16, 16]
    # vanished files: reported and kept, then pruned
    (src / "20230101_red.tif").unlink()
    report = build_catalog(src, out, pattern="{date}_{band}.tif")
    assert report.missing == ["20230101"] and "20230101" in items_of(out)
    report = build_catalog(src, out, pattern="{date}_{band}.tif", prune=True)
    assert report.pruned == ["20230101"]
    assert sorted(items_of(out)) == ["20230102", "20230103"]
    assert not (out / "20230101.json").exists()


def test_incremental_follows_a_changed_collection(cog_dir, tmp_path):
    out = tmp_path / "out"
    build_catalog(cog_dir, out, pattern="{date}_{band}.tif", collection="first")
    build_catalog(cog_dir, out, pattern="{date}_{band}.tif")
    item = items_of(out)["20230430"][1]
    assert "collection" not in item
    assert [link["rel"] for link in item["links"]] == ["root", "parent"]
    assert not (out / "first").exists()


def test_unchanged_rerun_keeps_the_files_and_new_settings_rewrite_them(cog_dir, tmp_path):
    out = tmp_path / "out"
    pattern = "{date}_{band}.tif"
    build_catalog(cog_dir, out, pattern=pattern)
    first = snapshot(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    report = build_catalog(cog_dir, out, pattern=pattern)
    assert report.unchanged == ["20230430", "20230515"] and snapshot(out) == first
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.json")} == mtimes
    build_catalog(cog_dir, out, pattern=pattern, title="Mine")
    assert read_json(out / "catalog.json")["title"] == "Mine"
    build_catalog(cog_dir, out, pattern=pattern, title="Mine", layout="${year}")
    assert sorted(items_of(out)) == ["20230430", "20230515"] and (out / "2023").is_dir()
    build_catalog(cog_dir, out, pattern=pattern, title="Mine", description="again")
    assert not (out / "2023").exists() and read_json(out / "catalog.json")["description"] == "again"
    build_catalog(cog_dir, out, pattern=pattern)
    assert snapshot(out) == first


def test_incremental_keeps_items_of_sources_not_rescanned(tmp_path, cog_dir, s2_dir):
    out = tmp_path / "out"
    build_catalog(cog_dir, out, pattern="{date}_{band}.tif")
    report = build_catalog(s2_dir, out, pattern="{date}_{band}.tif")
    assert report.unchanged == ["20230430", "20230515"] and len(report.added) == 2
    assert len(items_of(out)) == 4


# --------------------------------------------------------------------------- bad files
@pytest.fixture
def messy_dir(tmp_path) -> Path:
    src = tmp_path / "src"
    write_sample_cog(src / "20230101_red.tif")
    good = write_sample_cog(src / "20230102_red.tif")
    data = good.read_bytes()
    (src / "20230103_red.tif").write_bytes(data[: len(data) // 2])  # truncated copy
    (src / "20230104_red.tif").write_bytes(b"this is not a tiff")  # unknown format
    (src / "20230105_red.nc").write_bytes(b"")  # empty
    with rasterio.open(src / "20230106_red.tif", "w", driver="GTiff", width=2, height=2,
                       count=1, dtype="uint8") as dst:  # fmt: skip
        dst.write(np.ones((1, 2, 2), "uint8"))  # no CRS
    write_safe(src, size_10m=6, bands={"10m": []})  # a SAFE without band files
    (src / "notes.txt").write_text("ignored")
    return src


def test_bad_files_are_reported_one_line_each_and_skipped(messy_dir, tmp_path):
    report = build_catalog(messy_dir, tmp_path / "out", datetime="2023-01-01T00:00:00Z")
    assert report.added == ["20230101_red", "20230102_red"]
    problems = {Path(p.path).name: p.message for p in report.problems}
    assert set(problems) == {
        "20230103_red.tif", "20230104_red.tif", "20230105_red.nc", "20230106_red.tif",
        "S2A_MSIL2A_20230430T104621_N0509_R051_T31UFU_20230430T151154.SAFE",
    }  # fmt: skip
    assert "truncated" in problems["20230103_red.tif"]
    assert "not a readable raster" in problems["20230104_red.tif"]
    assert "netCDF" in problems["20230105_red.nc"]
    assert "no CRS" in problems["20230106_red.tif"]
    assert (
        "no band files"
        in problems["S2A_MSIL2A_20230430T104621_N0509_R051_T31UFU_20230430T151154.SAFE"]
    )
    assert all("\n" not in str(p) for p in report.problems)


def test_unknown_file_given_explicitly_is_reported(messy_dir, tmp_path):
    report = build_catalog([messy_dir / "notes.txt", messy_dir / "20230101_red.tif"],
                           tmp_path / "out", datetime="2023-01-01T00:00:00Z")  # fmt: skip
    assert report.added == ["20230101_red"]
    assert [(Path(p.path).name, p.message.split(":")[0]) for p in report.problems] == [
        ("notes.txt", "unknown format")
    ]


def test_strict_fails_on_first_bad_file_and_keeps_old_catalog(messy_dir, tmp_path):
    out = tmp_path / "out"
    build_catalog(messy_dir / "20230101_red.tif", out)
    before = snapshot(out)
    with pytest.raises(CatalogError, match="without --strict"):
        build_catalog(messy_dir, out, pattern="{date}_{band}.tif", strict=True)
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_failure_while_writing_leaves_old_catalog_intact(cog_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    build_catalog(cog_dir, out, pattern="{date}_{band}.tif")
    before = snapshot(out)
    calls = []

    def failing_dumps(obj):
        calls.append(1)
        if len(calls) > 2:
            raise OSError("disk full")
        return json.dumps(obj)

    monkeypatch.setattr(build_module._stac, "dumps", failing_dumps)
    monkeypatch.setattr(build_module._stac, "dumps_compact", failing_dumps)
    with pytest.raises(OSError, match="disk full"):
        build_catalog(cog_dir, out, pattern="{date}_{band}.tif", rebuild=True)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_and_source_guards(cog_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="not a catalog"):
        build_catalog(cog_dir, other)
    out = tmp_path / "out"
    build_catalog(cog_dir, out, pattern="{date}_{band}.tif")
    (out / "stray.tif").write_text("x")
    with pytest.raises(OutputExistsError, match=r"stray\.tif"):
        build_catalog(cog_dir, out, pattern="{date}_{band}.tif")
    with pytest.raises(ValueError, match="inside the catalog folder"):
        build_catalog(out / "stray.tif", out)
    with pytest.raises(ValueError, match="only local folders"):
        build_catalog("s3://bucket/scenes", tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_catalog(tmp_path / "nope", tmp_path / "x")
    with pytest.raises(ValueError, match="valid template"):
        build_catalog(cog_dir, tmp_path / "x", layout="${year")
    with pytest.raises(ValueError, match=r"no \{field\}"):
        build_catalog(cog_dir, tmp_path / "x", pattern="plain.tif")


def test_output_folder_may_be_deep_in_folders_yet_to_make(cog_dir, tmp_path):
    report = build_catalog(cog_dir, tmp_path / "a" / "b" / "stac", pattern="{date}_{band}.tif")
    assert report.ok and len(items_of(tmp_path / "a" / "b" / "stac")) == 2


def test_catalog_inside_source_folder_is_not_scanned(tmp_path):
    write_sample_cog(tmp_path / "20230101_red.tif")
    build_catalog(tmp_path, tmp_path / "stac", pattern="{date}_{band}.tif")
    report = build_catalog(tmp_path, tmp_path / "stac", pattern="{date}_{band}.tif")
    assert report.ok and report.unchanged == ["20230101"]


def test_layout_field_missing_is_reported(cog_dir, tmp_path):
    report = build_catalog(cog_dir, tmp_path / "out", pattern="{date}_{band}.tif",
                           layout="${tile}")  # fmt: skip
    assert len(report.problems) == 2 and "${tile}" in report.problems[0].message
    assert report.n_items == 0


# ---------------------------------------------------------------------------- helpers
@settings(max_examples=40, deadline=None)
@given(
    date=st.dates(dt.date(1980, 1, 1), dt.date(2100, 1, 1)),
    band=st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,5}", fullmatch=True),
    region=st.from_regex(r"[a-z]{1,4}", fullmatch=True),
)
def test_pattern_roundtrip(date, band, region):
    pattern = "{region}_{date}_{band}.tif"
    name = f"{region}_{date:%Y%m%d}_{band}.tif"
    values = compile_pattern(pattern).fullmatch(name).groupdict()
    assert values == {"region": region, "date": f"{date:%Y%m%d}", "band": band}
    assert group_id(pattern, values) == f"{region}_{date:%Y%m%d}"
    assert parse_when(values) == dt.datetime(date.year, date.month, date.day)


@settings(max_examples=40, deadline=None)
@given(st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)))
def test_datetime_text_roundtrip(value):
    text = format_datetime(value)
    assert text.endswith("Z")
    assert parse_instant(text) == value


# -------------------------------------------------- what a stackstac-based loader reads
def raw_items(out: Path) -> list[dict]:
    """Item dicts as stored (pystac >= 1.12 drops ``proj:epsg`` when it reads items)."""
    found = []
    for path in sorted(out.rglob("*.json")):
        doc = read_json(path)
        if doc["type"] == "Feature":
            for asset in doc["assets"].values():
                asset["href"] = str(href_path(path, asset["href"]))
            found.append(doc)
    return found


@pytest.mark.parametrize("assets", [["B04_10m", "B08_10m"], ["B8A_20m", "SCL_20m"]])
def test_stackstac_reads_safe_assets_with_scale_offset(s2_catalog, assets):
    stackstac = pytest.importorskip("stackstac")
    items = sorted(raw_items(s2_catalog), key=lambda i: i["properties"]["datetime"])
    for item in items:  # stackstac 0.5 reads proj:epsg only; projection v2.0 has proj:code
        for asset in item["assets"].values():
            if asset.get("proj:code"):
                asset["proj:epsg"] = int(asset["proj:code"].removeprefix("EPSG:"))
    stack = stackstac.stack(items, assets=assets, rescale=True, dtype="float64",
                            fill_value=np.nan, resolution=int(assets[0][4:6]))  # fmt: skip
    assert stack.sizes["band"] == 2 and stack.rio.crs.to_epsg() == 32631
    values = stack.compute()
    for t, item in enumerate(items):
        for b, key in enumerate(assets):
            with rasterio.open(item["assets"][key]["href"]) as src:
                dn = src.read(1).astype(float)
            offset = -0.1 if "N0400" in item["id"] else 0.0
            scale = 1e-4 if key.startswith("B") else 1.0
            expected = np.where(dn == 0, np.nan, dn * scale + (offset if scale != 1 else 0))
            np.testing.assert_allclose(values[t, b].values, expected, atol=1e-9)


# ------------------------------------------------ concurrency, kill, hostile paths (#14)
BUILD = "from lazyraster.cli import main; main()"


def build_process(*args: object) -> subprocess.Popen:
    """`lazyraster catalog build ARGS` in a process of its own (this checkout's source)."""
    env = {**os.environ, "PYTHONPATH": str(Path(lazyraster.__file__).parents[1])}
    command = [sys.executable, "-c", BUILD, "catalog", "build", *map(str, args)]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def hold_lock(out: Path):
    """Take the build lock of ``out`` as a builder would (the file is the protocol)."""
    fd = os.open(out.with_name(f".{out.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_concurrent_builds_into_one_folder_lose_no_item(tmp_path):
    for name in ("a", "b"):
        for day in range(1, 21):
            write_sample_cog(
                tmp_path / name / f"{name}{day:02d}_202301{day:02d}_red.tif", shape=(8, 8)
            )
    out = tmp_path / "out"
    fd = hold_lock(out)  # both builders start while the folder is busy
    procs = [
        build_process(tmp_path / name, "--out", out, "--pattern", "{site}_{date}_{band}.tif")
        for name in ("a", "b")
    ]
    waiting = [p.stderr.readline() for p in procs]
    os.close(fd)
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    expected = {f"{name}{day:02d}_202301{day:02d}" for name in "ab" for day in range(1, 21)}
    assert set(items_of(out)) == expected
    assert all("waiting for the build" in line for line in waiting), waiting
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "out"]


def test_second_builder_refuses_with_no_wait(cog_dir, tmp_path, runner):
    out = tmp_path / "out"
    fd = hold_lock(out)
    try:
        with pytest.raises(CatalogError, match=rf"another .* is writing {out}"):
            build_catalog(cog_dir, out, pattern="{date}_{band}.tif", wait=False)
        result = runner.invoke(
            main, ["catalog", "build", str(cog_dir), "--out", str(out), "--no-wait"]
        )
    finally:
        os.close(fd)
    assert result.exit_code == 1 and "another `lazyraster catalog build`" in result.output
    assert not out.exists()


def test_killed_build_keeps_the_old_catalog_and_the_next_run_cleans_up(tmp_path):
    src = tmp_path / "src"
    write_sample_cog(src / "20230101_red.tif", shape=(8, 8))
    out = tmp_path / "out"
    build_catalog(src, out, pattern="{date}_{band}.tif")
    before = snapshot(out)
    for i in range(400):
        day = dt.date(2023, 1, 2) + dt.timedelta(days=i)
        write_sample_cog(src / f"{day:%Y%m%d}_red.tif", shape=(8, 8), seed=i)
    proc = build_process(src, "--out", out, "--pattern", "{date}_{band}.tif", "--workers", "1")
    staging: list[Path] = []
    while not staging and proc.poll() is None:  # until the new catalog is being written
        staging = list(tmp_path.glob(".out.building-*"))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert staging, "the build ended before its staging folder was seen"
    assert snapshot(out) == before, "a killed build must leave the old catalog whole"
    report = build_catalog(src, out, pattern="{date}_{band}.tif")
    assert report.ok and report.n_items == 401 and report.unchanged == ["20230101"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"], "stale folder left"
    assert re.fullmatch(r"\.out\.building-[0-9a-f]{16}", staging[0].name), "predictable"


def test_catalog_left_aside_by_a_kill_between_two_renames_is_put_back(cog_dir, tmp_path):
    out = tmp_path / "out"
    build_catalog(cog_dir, out, pattern="{date}_{band}.tif")
    before = snapshot(out)
    os.replace(out, tmp_path / ".out.old-0123456789abcdef")  # where the fallback swap was
    report = build_catalog(cog_dir, out, pattern="{date}_{band}.tif")
    assert report.unchanged == ["20230430", "20230515"] and snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.fixture
def runner():
    return CliRunner()


def test_hrefs_are_percent_encoded_and_work_over_http(nginx):
    src = nginx.root / "my data #1 100%"
    for band, seed in (("B04", 1), ("B08", 2)):
        write_sample_cog(src / f"20230430_{band}.tif", seed=seed)
    out = nginx.root / "stac"
    report = build_catalog(src, out, pattern="{date}_{band}.tif")
    assert report.ok
    # an outside reader over HTTP: pystac for the JSON, GDAL for the pixels
    catalog = pystac.Catalog.from_file(nginx.url_for(out / "catalog.json"))
    (item,) = catalog.get_items(recursive=True)
    href = item.assets["B04"].get_absolute_href()
    assert href.startswith("http://")
    with rasterio.open(href) as remote, rasterio.open(src / "20230430_B04.tif") as local:
        np.testing.assert_array_equal(remote.read(), local.read())
    written = snapshot(out)
    assert "../my%20data%20%231%20100%25/20230430_B04.tif" in written["20230430.json"].decode()
    # lazyraster.load, over HTTP and from the local folder
    with rasterio.open(src / "20230430_B08.tif") as f:
        expected = f.read(1)
    for where in (nginx.url_for(out / "catalog.json"), out / "catalog.json"):
        ds = lazyraster.load(where, bands=["nir"], scale=False)
        np.testing.assert_array_equal(ds["nir"].isel(time=0).values, expected)
    # the package's own readers of the local catalog decode the hrefs again
    again = build_catalog(src, out, pattern="{date}_{band}.tif")
    assert again.unchanged == ["20230430"] and snapshot(out) == written
    assert describe_catalog(out)["items"] == 1
    assert validate_catalog(out).ok


def test_catalog_io_encodes_link_hrefs_for_http(nginx):
    catalog = pystac.Catalog("root", "a sub-catalog whose folder needs encoding")
    catalog.add_child(pystac.Catalog("a b", "below"))
    catalog.normalize_and_save(str(nginx.root / "cat"), pystac.CatalogType.SELF_CONTAINED,
                               stac_io=CatalogIO())  # fmt: skip
    assert "./a%20b/catalog.json" in (nginx.root / "cat" / "catalog.json").read_text()
    for where in (nginx.url_for("cat/catalog.json"), str(nginx.root / "cat" / "catalog.json")):
        io = None if where.startswith("http") else CatalogIO()
        read = pystac.Catalog.from_file(where, stac_io=io)
        assert [child.id for child in read.get_children()] == ["a b"]


def test_checksum_rebuild_renews_a_stale_checksum(tmp_path):
    src = tmp_path / "src"
    path = src / "20230101_red.tif"
    src.mkdir()

    def write(value: int) -> None:  # uncompressed: the same size whatever the pixels
        grid = rasterio.transform.from_origin(0, 80, 10, 10)
        with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1,
                           dtype="uint16", crs="EPSG:32631", transform=grid) as dst:  # fmt: skip
            dst.write(np.full((1, 8, 8), value, "uint16"))

    write(1)
    out = tmp_path / "out"
    build_catalog(src, out, pattern="{date}_{band}.tif", checksum=True)
    size = path.stat().st_size
    write(2)
    assert path.stat().st_size == size
    report = build_catalog(src, out, pattern="{date}_{band}.tif", checksum=True)
    assert report.updated == ["20230101"]
    asset = items_of(out)["20230101"][1]["assets"]["red"]
    assert asset["file:checksum"] == "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_crs_without_epsg_code_is_written_as_wkt2_and_projjson(tmp_path):
    lcc = "+proj=lcc +lat_1=25 +lat_2=60 +lat_0=42.5 +lon_0=-100 +x_0=0 +y_0=0 +ellps=WGS84"
    path = tmp_path / "src" / "20230101_tmax.tif"
    path.parent.mkdir()
    grid = rasterio.transform.from_origin(0, 0, 1000, 1000)
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32",
                       crs=rasterio.crs.CRS.from_proj4(lcc), transform=grid) as dst:  # fmt: skip
        dst.write(np.ones((1, 4, 4), "float32"))
        file_crs = pyproj.CRS.from_wkt(dst.crs.to_wkt())
    assert file_crs.to_epsg() is None
    build_catalog(path.parent, tmp_path / "out", pattern="{date}_{band}.tif")
    item = items_of(tmp_path / "out")["20230101"][1]
    for fields in (item["assets"]["tmax"], item["properties"]):
        assert fields["proj:code"] is None
        assert pyproj.CRS.from_wkt(fields["proj:wkt2"]) == file_crs
        assert pyproj.CRS.from_json_dict(fields["proj:projjson"]) == file_crs


def test_overwrite_refuses_a_catalog_the_builder_did_not_write(cog_dir, tmp_path):
    out = tmp_path / "theirs"
    catalog = pystac.Catalog("theirs", "written by pystac, not by lazyraster")
    catalog.add_item(pystac.Item("x", None, None, dt.datetime(2020, 1, 1), {}))
    catalog.normalize_and_save(str(out), pystac.CatalogType.SELF_CONTAINED)
    before = snapshot(out)
    with pytest.raises(OutputExistsError, match=f"{out} holds a catalog that"):
        build_catalog(cog_dir, out, pattern="{date}_{band}.tif")
    assert snapshot(out) == before
