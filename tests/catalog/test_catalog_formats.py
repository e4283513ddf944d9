"""Cataloguing what real folders hold: damaged band files, Level-1C products, netCDF
files without a grid mapping.

Inputs are real files written in tmp_path with GDAL (JPEG2000, COG) and netCDF4, then
damaged the way copies get damaged: bytes cut off the end, or bytes overwritten.
Expected values come from the files themselves (sizes, the block offsets GDAL wrote)
and from rasterio/pyproj, not from the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyproj
import pystac
import pytest
import rasterio
import rasterio.warp
from click.testing import CliRunner
from tests.catalog._support import DAYMET

from lazyraster.catalog import build_catalog
from lazyraster.cli import EXIT_SKIPPED, main
from lazyraster.errors import CatalogError
from lazyraster.testing import DAYMET_LCC, write_daymet, write_safe, write_sample_cog

START = dt.datetime(2023, 4, 30, 10, 46, 21, 24000)


def _truncate(path: Path, fraction: float = 0.5) -> int:
    """Cut the end off a file, as an interrupted copy does; return the new size."""
    data = path.read_bytes()
    size = int(len(data) * fraction)
    path.write_bytes(data[:size])
    return size


def _item_ids(out: Path) -> set[str]:
    return {
        doc["id"]
        for doc in (json.loads(p.read_text()) for p in out.rglob("*.json"))
        if doc["type"] == "Feature"
    }


@pytest.fixture
def two_safes(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two L2A products of one tile, five days apart, in ``tmp_path / "s2"``."""
    good = write_safe(tmp_path / "s2", start=START, size_10m=60, seed=1)
    bad = write_safe(tmp_path / "s2", start=START + dt.timedelta(days=5), size_10m=60, seed=2)
    return tmp_path / "s2", good, bad


# ------------------------------------------------------------------ damaged rasters
def test_truncated_jp2_band_file_is_reported_and_its_product_left_out(two_safes, tmp_path):
    folder, good, bad = two_safes
    (band,) = bad.glob("GRANULE/*/IMG_DATA/R10m/*_B04_10m.jp2")
    full = band.stat().st_size
    cut = _truncate(band)
    report = build_catalog(folder, tmp_path / "stac", checksum=True)
    assert report.added == [good.name[: -len(".SAFE")]]
    (problem,) = report.problems
    line = str(problem)
    assert "\n" not in line
    assert line.startswith(str(bad))
    assert band.name in line and "truncated" in line
    assert f"ends at byte {full}" in line and f"has {cut} bytes" in line
    assert _item_ids(tmp_path / "stac") == {good.name[: -len(".SAFE")]}


def test_truncated_tif_band_file_of_a_reprocessed_product_is_reported(two_safes, tmp_path):
    """Products reprocessed to GeoTIFF band files are checked the same way."""
    folder, good, bad = two_safes
    (jp2,) = bad.glob("GRANULE/*/IMG_DATA/R10m/*_B08_10m.jp2")
    with rasterio.open(jp2) as src:
        profile = {"crs": src.crs, "transform": src.transform, "width": src.width}
        data = src.read()
    tif = jp2.with_suffix(".tif")
    jp2.unlink()
    with rasterio.open(
        tif, "w", driver="COG", height=data.shape[1], count=1, dtype=data.dtype, **profile
    ) as dst:
        dst.write(data)
    _truncate(tif, 0.8)
    report = build_catalog(folder, tmp_path / "stac")
    (problem,) = report.problems
    assert tif.name in str(problem) and "truncated" in str(problem)
    assert _item_ids(tmp_path / "stac") == {good.name[: -len(".SAFE")]}


def test_band_file_whose_grid_is_not_the_one_mtd_tl_states_is_reported(two_safes, tmp_path):
    folder, _, bad = two_safes
    (band,) = bad.glob("GRANULE/*/IMG_DATA/R20m/*_B05_20m.jp2")
    with rasterio.open(band) as src:
        data, crs, transform = src.read(), src.crs, src.transform
    band.unlink()
    shifted = rasterio.Affine(transform.a, 0, transform.c + 20, 0, transform.e, transform.f)
    with rasterio.open(
        band, "w", driver="JP2OpenJPEG", width=data.shape[2], height=data.shape[1], count=1,
        dtype=data.dtype, crs=crs, transform=shifted, QUALITY=100, REVERSIBLE="YES",
    ) as dst:  # fmt: skip
        dst.write(data)
    report = build_catalog(folder, tmp_path / "stac")
    (problem,) = report.problems
    assert band.name in str(problem) and "MTD_TL.xml states" in str(problem)


def test_truncated_cog_is_reported(tmp_path):
    for date in ("20230430", "20230515"):
        for band in ("B04", "B08"):
            write_sample_cog(tmp_path / "cogs" / f"{date}_{band}.tif", shape=(256, 256))
    cut = tmp_path / "cogs" / "20230515_B08.tif"
    _truncate(cut, 0.9)
    report = build_catalog(tmp_path / "cogs", tmp_path / "stac", pattern="{date}_{band}.tif")
    assert report.added == ["20230430"]
    (problem,) = report.problems
    assert str(problem).startswith(str(tmp_path / "cogs" / "20230515_B0"))
    assert "truncated" in str(problem)
    assert _item_ids(tmp_path / "stac") == {"20230430"}


def test_cog_with_an_undecodable_block_is_reported(tmp_path):
    """A file of the right size whose compressed pixels are garbage: only decoding finds it."""
    path = write_sample_cog(tmp_path / "cogs" / "20230430_B04.tif", shape=(64, 64))
    with rasterio.open(path) as src:
        assert src.overviews(1) == []  # small: no overview, the first block is decoded
        offset = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        length = int(src.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset : offset + length] = bytes(range(256)) * (length // 256) + b"\xff" * (length % 256)
    path.write_bytes(bytes(data))
    report = build_catalog(tmp_path / "cogs", tmp_path / "stac", pattern="{date}_{band}.tif")
    assert report.added == []
    (problem,) = report.problems
    assert "cannot be decoded" in str(problem)


def test_truncated_netcdf_is_reported_naming_the_file(tmp_path):
    folder = tmp_path / "daymet"
    for variable in ("tmin", "tmax"):
        for region in ("na", "hi"):
            write_daymet(folder / DAYMET.format(region=region, variable=variable, year=2020),
                         variable=variable, shape=(40, 50))  # fmt: skip
    cut = folder / DAYMET.format(region="hi", variable="tmax", year=2020)
    _truncate(cut, 0.6)
    report = build_catalog(folder, tmp_path / "stac", pattern=DAYMET)
    assert report.added == ["daymet_v4_daily_na_2020"]
    (problem,) = report.problems
    assert str(problem).startswith(str(folder / "daymet_v4_daily_hi_t"))
    assert "\n" not in str(problem)


def test_strict_build_fails_on_a_truncated_band_file(two_safes, tmp_path):
    folder, _, bad = two_safes
    (band,) = bad.glob("GRANULE/*/IMG_DATA/R60m/*_SCL_60m.jp2")
    _truncate(band, 0.7)
    with pytest.raises(CatalogError, match=band.name):
        build_catalog(folder, tmp_path / "stac", strict=True, checksum=True)
    assert not (tmp_path / "stac").exists()


def test_cli_reports_the_truncated_file_and_strict_exits_non_zero(two_safes, tmp_path):
    folder, good, bad = two_safes
    (band,) = bad.glob("GRANULE/*/IMG_DATA/R20m/*_B8A_20m.jp2")
    _truncate(band)
    runner = CliRunner()
    strict = runner.invoke(
        main, ["catalog", "build", str(folder), "--out", str(tmp_path / "strict"), "--strict",
               "--checksum"],
    )  # fmt: skip
    assert strict.exit_code == 1
    (line,) = strict.stderr.strip().splitlines()
    assert band.name in line and "truncated" in line and "Traceback" not in strict.output
    assert not (tmp_path / "strict").exists()
    lenient = runner.invoke(
        main, ["catalog", "build", str(folder), "--out", str(tmp_path / "stac"), "--checksum"]
    )
    assert lenient.exit_code == EXIT_SKIPPED
    (skipped,) = [x for x in lenient.stderr.splitlines() if x.startswith("skipped")]
    assert str(bad) in skipped and band.name in skipped
    assert _item_ids(tmp_path / "stac") == {good.name[: -len(".SAFE")]}


def test_repaired_product_is_added_on_the_next_build(two_safes, tmp_path):
    folder, good, bad = two_safes
    (band,) = bad.glob("GRANULE/*/IMG_DATA/R10m/*_B02_10m.jp2")
    intact = band.read_bytes()
    _truncate(band)
    first = build_catalog(folder, tmp_path / "stac")
    assert len(first.problems) == 1
    band.write_bytes(intact)
    second = build_catalog(folder, tmp_path / "stac")
    assert second.ok
    assert second.added == [bad.name[: -len(".SAFE")]]
    assert second.unchanged == [good.name[: -len(".SAFE")]]


# ---------------------------------------------------------------------- Level-1C
def test_level1c_product_is_refused_naming_level2a(tmp_path):
    safe = tmp_path / "S2A_MSIL1C_20230430T104621_N0509_R051_T31UFU_20230430T125032.SAFE"
    img = safe / "GRANULE" / "L1C_T31UFU_A000000_20230430T104621" / "IMG_DATA"
    img.mkdir(parents=True)
    with rasterio.open(
        img / "T31UFU_20230430T104621_B04.jp2", "w", driver="JP2OpenJPEG", width=8, height=8,
        count=1, dtype="uint16", crs="EPSG:32631",
        transform=rasterio.transform.from_origin(600000, 5700000, 10, 10),
    ) as dst:  # fmt: skip
        dst.write(np.ones((1, 8, 8), "uint16"))
    (safe / "MTD_MSIL1C.xml").write_text("<Level-1C_User_Product/>")
    report = build_catalog(tmp_path, tmp_path / "stac")
    (problem,) = report.problems
    assert str(problem).startswith(str(safe))
    assert "Level-1C" in str(problem) and "Level-2A" in str(problem)


def test_a_safe_product_unpacked_without_the_suffix_is_still_a_product(tmp_path):
    """A product folder holding MTD_MSIL2A.xml is a SAFE product whatever its name (tools
    and users drop the ``.SAFE``); its band files are not catalogued as loose JP2s that
    'have no date'."""
    safe = write_safe(tmp_path / "in", size_10m=12, bands={"10m": ["B04", "B08"]})
    bare = safe.rename(safe.with_suffix(""))
    for source in (tmp_path / "in", bare):
        out = tmp_path / f"out-{source.name}"
        report = build_catalog(source, out)
        assert report.ok, report.problems
        assert report.added == [bare.name]
        [item] = pystac.Catalog.from_file(str(out / "catalog.json")).get_items(recursive=True)
        assert item.properties["s2:processing_baseline"] == "05.09"
        assert sorted(item.assets) == ["B04_10m", "B08_10m", "product_metadata"]


# ------------------------------------------------------- netCDF without a grid mapping
@pytest.fixture
def unmapped(tmp_path: Path) -> Path:
    """Daymet-like files (tmin, tmax of one region-year) without a CF grid mapping."""
    folder = tmp_path / "daymet"
    for variable in ("tmin", "tmax"):
        write_daymet(folder / DAYMET.format(region="na", variable=variable, year=2020),
                     variable=variable, grid_mapping=False)  # fmt: skip
    return folder


def test_skip_message_names_every_file_of_the_group_and_the_crs_option(unmapped, tmp_path):
    report = build_catalog(unmapped, tmp_path / "stac", pattern=DAYMET)
    assert report.added == []
    (problem,) = report.problems
    text = str(problem)
    for variable in ("tmin", "tmax"):
        assert DAYMET.format(region="na", variable=variable, year=2020) in text
    assert "--crs EPSG:XXXX" in text and "grid_mapping" in text


def test_crs_option_gives_the_crs_the_files_do_not(unmapped, tmp_path):
    report = build_catalog(unmapped, tmp_path / "stac", pattern=DAYMET, crs="EPSG:3035")
    assert report.ok and report.added == ["daymet_v4_daily_na_2020"]
    (item_path,) = (tmp_path / "stac").glob("daymet_v4_daily_na_2020.json")
    item = json.loads(item_path.read_text())
    assert item["properties"]["proj:code"] == "EPSG:3035"
    for asset in item["assets"].values():
        assert asset["proj:code"] == "EPSG:3035" and "proj:epsg" not in asset
    asset = item["assets"]["tmax"]
    west, south, east, north = rasterio.warp.transform_bounds(
        "EPSG:3035", "EPSG:4326", *asset["proj:bbox"], densify_pts=21
    )
    assert item["bbox"] == pytest.approx([west, south, east, north], abs=1e-6)


def test_crs_without_epsg_code_goes_into_wkt2(unmapped, tmp_path):
    lcc = pyproj.CRS.from_cf(DAYMET_LCC)
    report = build_catalog(unmapped, tmp_path / "stac", pattern=DAYMET, crs=lcc.to_wkt())
    assert report.ok
    (item_path,) = (tmp_path / "stac").glob("daymet_v4_daily_na_2020.json")
    asset = json.loads(item_path.read_text())["assets"]["tmin"]
    assert asset["proj:code"] is None
    assert pyproj.CRS.from_wkt(asset["proj:wkt2"]).equals(lcc)


def test_crs_option_does_not_override_a_stated_grid_mapping(tmp_path):
    folder = tmp_path / "daymet"
    write_daymet(folder / DAYMET.format(region="na", variable="tmin", year=2020))
    report = build_catalog(folder, tmp_path / "stac", pattern=DAYMET, crs="EPSG:3035")
    (problem,) = report.problems
    assert "--crs" in str(problem) and "grid mapping" in str(problem)


def test_cli_crs_option(unmapped, tmp_path):
    runner = CliRunner()
    out = tmp_path / "stac"
    ok = runner.invoke(
        main, ["catalog", "build", str(unmapped), "--out", str(out), "--pattern", DAYMET,
               "--crs", "EPSG:3035"],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert _item_ids(out) == {"daymet_v4_daily_na_2020"}
    bad = runner.invoke(
        main,
        ["catalog", "build", str(unmapped), "--out", str(tmp_path / "x"), "--crs", "EPSG:nope"],
    )
    assert bad.exit_code == 2 and "--crs" in bad.output and "EPSG:XXXX" in bad.output
    shutil.rmtree(out)
    missing = runner.invoke(
        main, ["catalog", "build", str(unmapped), "--out", str(out), "--pattern", DAYMET]
    )
    assert missing.exit_code == EXIT_SKIPPED
    assert "--crs" in missing.stderr


def test_an_unknown_crs_is_one_line_without_gdal_noise(tmp_path):
    """``--crs EPSG:99999``: click's one line, and no 'ERROR 1: PROJ ...' that GDAL
    prints on the process's stderr when no rasterio environment catches it (``load``'s
    ``crs=``: tests/load/test_foreign_items.py)."""
    (tmp_path / "in").mkdir()
    run = subprocess.run(
        [sys.executable, "-c", "from lazyraster.cli import main; main()", "catalog", "build",
         str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--crs", "EPSG:99999"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode != 0
    assert "ERROR 1" not in run.stderr, run.stderr


def test_unchanged_files_are_not_decoded_again(two_safes, tmp_path, monkeypatch):
    """The checks cost nothing on a re-run: unchanged items are kept without reading."""
    from lazyraster.catalog.formats import geotiff, sentinel2

    folder, _, _ = two_safes
    write_sample_cog(tmp_path / "cogs" / "20230430_B04.tif")
    original = geotiff.check_decodes
    opened: list[str] = []

    def counting(src, path):
        opened.append(path.name)
        return original(src, path)

    monkeypatch.setattr(sentinel2, "check_decodes", counting)
    monkeypatch.setattr(geotiff, "check_decodes", counting)
    sources = [folder, tmp_path / "cogs"]
    first = build_catalog(sources, tmp_path / "stac", pattern="{date}_{band}.tif")
    assert first.ok and len(opened) == 2 * 36 + 1
    opened.clear()
    again = build_catalog(sources, tmp_path / "stac", pattern="{date}_{band}.tif")
    assert again.ok and len(again.unchanged) == 3 and opened == []
