"""load() takes what the catalog says: nodata, bands of multi-band files, CRSs without an
EPSG code; and refuses what would come out wrong: bad boxes, huge grids, missing bands.

Expected pixels come from plain rasterio reads and numpy masks made here.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from tests.load._support import TRANSFORM, WHEN, make_item, write_raster

import lazyraster
from lazyraster.errors import LazyrasterError, MissingBandError, MissingCRSError, ReadError
from lazyraster.testing import raise_if_dask_computes


def reference(path: Path, band: int = 1, *, nodata=None, scale=1.0, offset=0.0) -> np.ndarray:
    """rasterio read * scale + offset in float32, NaN where DN == nodata (the mask made here)."""
    with rasterio.open(path) as src:
        dn = src.read(band)
    out = dn.astype(np.float32) * np.float32(scale) + np.float32(offset)
    if nodata is not None:
        out[dn == nodata] = np.nan
    return out


@pytest.fixture(scope="module")
def dn():
    rng = np.random.default_rng(11)
    data = rng.integers(1, 10000, (2, 48, 40), dtype=np.uint16)
    data[:, :9, :13] = 0  # the no-data corner of a tile edge
    data[1, 30:34, 20:25] = 0
    return data


# --------------------------------------------------------------------------- nodata


@pytest.mark.parametrize("driver,suffix", [("JP2OpenJPEG", "jp2"), ("COG", "tif")])
def test_nodata_from_raster_bands_where_the_file_has_no_tag(tmp_path, dn, driver, suffix):
    path = write_raster(tmp_path / f"B04.{suffix}", dn[:1], driver=driver)
    band = {"nodata": 0, "scale": 0.0001, "offset": -0.1, "data_type": "uint16"}
    item = make_item(
        "S2", {"B04": {"href": path, "eo:bands": [{"common_name": "red"}], "raster:bands": [band]}}
    )
    ds = lazyraster.load([item], bands=["red"])
    expected = reference(path, nodata=0, scale=0.0001, offset=-0.1)
    got = ds.red.isel(time=0).values
    np.testing.assert_array_equal(np.isnan(got), dn[0] == 0)
    np.testing.assert_array_equal(got, expected)
    # before: the corner came out as reflectance -0.1
    assert not (got == np.float32(-0.1)).any()


def test_nodata_from_stac_1_1_bands_and_asset_fields(tmp_path, dn):
    path = write_raster(tmp_path / "b.tif", dn[:1])
    item = make_item(
        "S2",
        {
            "B04": {
                "href": path,
                "bands": [
                    {"name": "B04", "eo:common_name": "red", "nodata": 0, "raster:scale": 0.0001}
                ],
            },
            "B08": {"href": path, "eo:common_name": "nir", "nodata": 0, "raster:scale": 0.0001},
        },
    )
    ds = lazyraster.load([item], bands=["red", "nir"])
    expected = reference(path, nodata=0, scale=0.0001)
    np.testing.assert_array_equal(ds.red.isel(time=0).values, expected)
    np.testing.assert_array_equal(ds.nir.isel(time=0).values, expected)


def test_catalog_nodata_wins_over_the_file_tag_and_load_nodata_over_both(tmp_path, dn):
    path = tmp_path / "tagged.tif"
    write_raster(path, dn[:1], driver="GTiff")
    with rasterio.open(path, "r+") as dst:
        dst.nodata = 9999  # a tag that disagrees with the catalog
    data = dn[0].copy()
    item = make_item("a", {"B04": {"href": path, "raster:bands": [{"nodata": 0}]}})
    got = lazyraster.load([item]).B04.isel(time=0).values
    np.testing.assert_array_equal(np.isnan(got), data == 0)
    # without raster:bands nodata, the file's tag counts
    untagged = make_item("b", {"B04": {"href": path, "raster:bands": [{"data_type": "uint16"}]}})
    got = lazyraster.load([untagged]).B04.isel(time=0).values
    np.testing.assert_array_equal(np.isnan(got), data == 9999)
    # load(nodata=...) overrides the catalog: a number, or per band
    value = int(data[20, 20])
    for override in (value, {"B04": value}):
        got = lazyraster.load([item], nodata=override).B04.isel(time=0).values
        np.testing.assert_array_equal(np.isnan(got), data == value)
    with pytest.raises(MissingBandError, match=r"nodata= names 'red'.*B04"):
        lazyraster.load([item], nodata={"red": 0})


def test_nodata_masks_before_resampling_onto_another_grid(tmp_path, dn):
    """A reprojected load must not spread DN 0 into valid pixels (the VRT knows nodata)."""
    path = write_raster(tmp_path / "b.jp2", dn[:1], driver="JP2OpenJPEG")
    item = make_item("a", {"B04": {"href": path, "raster:bands": [{"nodata": 0}]}})
    ds = lazyraster.load([item], resolution=20, resampling="average")
    got = ds.B04.isel(time=0).values
    # 20 m pixels wholly inside the 10 m no-data corner are NaN, none are 0
    assert np.isnan(got[:4, :6]).all()
    assert not (got == 0).any()


# ----------------------------------------------------------------------- multi-band


@pytest.fixture
def naip_like(tmp_path):
    """A 4-band uint8 GeoTIFF described like NAIP on Planetary Computer."""
    rng = np.random.default_rng(5)
    data = rng.integers(1, 255, (4, 36, 44), dtype=np.uint8)
    data[3, :5, :5] = 0
    path = write_raster(
        tmp_path / "naip.tif", data, driver="GTiff", tiled=True, blockxsize=16, blockysize=16
    )
    eo = [
        {"name": "Red", "common_name": "red"},
        {"name": "Green", "common_name": "green"},
        {"name": "Blue", "common_name": "blue"},
        {"name": "NIR", "common_name": "nir"},
    ]
    raster = [{"data_type": "uint8"}] * 3 + [{"data_type": "uint8", "nodata": 0, "scale": 0.5}]
    item = make_item("naip", {"image": {"href": path, "eo:bands": eo, "raster:bands": raster}})
    return item, path, data


def test_multi_band_asset_loads_one_variable_per_band(naip_like, backend):
    item, path, _ = naip_like
    ds = lazyraster.load([item], bands=["red", "nir"])
    assert list(ds.data_vars) == ["red", "nir"]
    assert ds.red.attrs["stac_asset"] == "image" and ds.nir.attrs["stac_band"] == 4
    np.testing.assert_array_equal(ds.red.isel(time=0).values, reference(path, 1))
    expected_nir = reference(path, 4, nodata=0, scale=0.5)
    np.testing.assert_array_equal(ds.nir.isel(time=0).values, expected_nir)
    # NDVI of the loaded bands equals NDVI of the rasterio reads, numpy and dask-uneven
    ndvi = backend(ds.isel(time=0)).geo.ndvi().values
    red = reference(path, 1).astype(np.float64)
    expected = (expected_nir - red) / (expected_nir + red)
    np.testing.assert_allclose(ndvi, expected, rtol=1e-6)


def test_multi_band_asset_by_key_and_by_default(naip_like):
    item, path, _ = naip_like
    by_key = lazyraster.load([item], bands=["image"])
    assert list(by_key.data_vars) == ["red", "green", "blue", "nir"]
    default = lazyraster.load([item])
    assert list(default.data_vars) == ["red", "green", "blue", "nir"]
    for i, name in enumerate(["red", "green", "blue"], start=1):
        np.testing.assert_array_equal(default[name].isel(time=0).values, reference(path, i))


def test_catalog_build_of_a_multi_band_geotiff_then_load(tmp_path, naip_like):
    _, path, _ = naip_like
    src = tmp_path / "src"
    src.mkdir()
    (src / "naip_20230501.tif").write_bytes(path.read_bytes())
    out = tmp_path / "catalog"
    from click.testing import CliRunner

    from lazyraster.cli import main

    result = CliRunner().invoke(
        main,
        [
            "catalog",
            "build",
            str(src),
            "--out",
            str(out),
            "--bands",
            "red,green,blue,nir",
            "--datetime",
            "2023-05-01T00:00:00Z",
        ],
    )
    assert result.exit_code == 0, result.output
    ds = lazyraster.load(out / "catalog.json", bands=["red", "nir"])
    for name, band in (("red", 1), ("nir", 4)):
        np.testing.assert_array_equal(ds[name].isel(time=0).values, reference(path, band))
    data_key = lazyraster.load(out / "catalog.json", bands=["data"])
    assert list(data_key.data_vars) == ["red", "green", "blue", "nir"]


def test_a_true_colour_copy_does_not_take_the_single_band_names(tmp_path, dn):
    single = write_raster(tmp_path / "B04.tif", dn[:1])
    visual = write_raster(
        tmp_path / "TCI.tif", (dn[:, :, :] // 40).astype(np.uint8), driver="GTiff"
    )
    item = make_item(
        "s2",
        {
            "B04": {"href": single, "eo:bands": [{"name": "B04", "common_name": "red"}]},
            "visual": {
                "href": visual,
                "eo:bands": [
                    {"name": "B04", "common_name": "red"},
                    {"name": "B03", "common_name": "green"},
                ],
            },
        },
    )
    ds = lazyraster.load([item])
    assert list(ds.data_vars) == ["red"]  # the copy is left out by default
    assert ds.red.attrs["stac_asset"] == "B04"
    both = lazyraster.load([item], bands=["red", "visual"])
    # the copy's red is named by its asset; its green, the only one, keeps its name
    assert list(both.data_vars) == ["red", "visual_B04", "green"]
    np.testing.assert_array_equal(both.visual_B04.isel(time=0).values, reference(visual, 1))
    np.testing.assert_array_equal(both.green.isel(time=0).values, reference(visual, 2))


# ------------------------------------------------------------------ read failures


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("driver,suffix", [("COG", "tif"), ("JP2OpenJPEG", "jp2")])
def test_a_truncated_file_fails_in_one_line_naming_it(tmp_path, driver, suffix):
    rng = np.random.default_rng(1)
    data = rng.integers(1, 10000, (1, 256, 256), dtype=np.uint16)
    extra = {"BLOCKSIZE": 64} if driver == "COG" else {"BLOCKXSIZE": 64, "BLOCKYSIZE": 64}
    path = write_raster(tmp_path / f"B04.{suffix}", data, driver=driver, **extra)
    item = make_item("a", {"B04": {"href": path, "raster:bands": [{"nodata": 0}]}})
    truncate(path, 0.4)
    ds = lazyraster.load([item])  # lazy: nothing read yet
    with pytest.raises(ReadError) as failure:
        ds.B04.compute()
    message = str(failure.value)
    # one line: what failed, the file, GDAL's reason; no window repr, no error repr
    assert message.startswith(f"cannot read {path}: ") or message.startswith(
        f"cannot open {path}: "
    )
    assert "\n" not in message and "Window(" not in message and "CPLE_" not in message
    assert isinstance(failure.value, LazyrasterError) and isinstance(failure.value, OSError)


def test_a_missing_file_fails_in_one_line_naming_it(tmp_path, dn):
    path = write_raster(tmp_path / "B04.tif", dn[:1])
    item = make_item("a", {"B04": {"href": path}})
    path.unlink()
    with pytest.raises(ReadError, match=r"^cannot open .*B04\.tif: ") as failure:
        lazyraster.load([item]).B04.compute()
    assert "\n" not in str(failure.value)


# ------------------------------------------------------------------------ bbox, grid


@pytest.fixture
def one_item(tmp_path, dn):
    path = write_raster(tmp_path / "B04.tif", dn[:1])
    return make_item("a", {"B04": {"href": path, "raster:bands": [{"nodata": 0}]}})


@pytest.mark.parametrize(
    "bbox,match",
    [
        ((4.6, 51.3, 4.4, 51.5), "crosses the antimeridian.*bbox=\\(4.6, 51.3, 180"),
        ((4.4, 51.5, 4.6, 51.3), "south 51.5 is not below north 51.3"),
        ((4.4, 51.3, 4.6, 95.0), "north 95.0 is not a latitude"),
        ((0, 0, 200, 100), "east 200.0 is not a longitude"),
        ((600000, 5690000, 600400, 5700000), "not in the CRS's units"),
        ((4.4, 51.3, 4.6), "4 finite numbers"),
        ((4.4, float("nan"), 4.6, 51.5), "4 finite numbers"),
    ],
)
def test_bad_bbox_is_refused_with_advice(one_item, bbox, match):
    with pytest.raises(ValueError, match=match):
        lazyraster.load([one_item], bbox=bbox)


def test_grid_larger_than_the_limit_is_refused_with_its_size(one_item, monkeypatch):
    limit = dask.config.set({"lazyraster.load.max-pixels": 1000})
    with limit, pytest.raises(ValueError, match=r"48 x 40 = 1,920 pixels.*max-pixels \(1,000\)"):
        lazyraster.load([one_item])
    with dask.config.set({"lazyraster.load.max-pixels": 1920}):
        assert lazyraster.load([one_item]).sizes["y"] == 48
    # the default limit stops a continental grid at 1 m before stackstac builds it
    import stackstac

    def no_stack(*args, **kwargs):
        raise AssertionError("stackstac.stack was called")

    monkeypatch.setattr(stackstac, "stack", no_stack)
    with raise_if_dask_computes(), pytest.raises(ValueError, match=r"pixels per band.*max-pixels"):
        lazyraster.load([one_item], bbox=(-10, 35, 30, 60), resolution=1)


# --------------------------------------------------------------- CRS without EPSG


def test_crs_without_an_epsg_code_loads(tmp_path, dn):
    """A custom transverse Mercator (no EPSG code) given as WKT, PROJJSON or proj:code."""
    import pyproj

    custom = pyproj.CRS.from_proj4(
        "+proj=tmerc +lat_0=0 +lon_0=4.7 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 +units=m"
    )
    assert custom.to_epsg() is None
    path = write_raster(tmp_path / "b.tif", dn[:1], crs=CRS.from_wkt(custom.to_wkt()))
    expected = reference(path, nodata=0)
    for fields in (
        {"proj:wkt2": custom.to_wkt()},
        {"proj:projjson": json.loads(custom.to_json())},
    ):
        item = make_item("a", {"B04": {"href": path, "raster:bands": [{"nodata": 0}]}})
        item.properties.update({"proj:code": None, **fields})
        w, so, e, n = transform_bounds(
            custom.to_wkt(), "EPSG:4326", 600000, 5699520, 600400, 5700000
        )
        item.bbox = [w, so, e, n]
        ring = [[w, so], [e, so], [e, n], [w, n], [w, so]]
        item.geometry = {"type": "Polygon", "coordinates": [ring]}
        ds = lazyraster.load([item])
        assert pyproj.CRS(ds.rio.crs.to_wkt()).equals(custom)
        assert ds.rio.transform() == TRANSFORM
        np.testing.assert_array_equal(ds.B04.isel(time=0).values, expected)
        # a bbox in lon/lat is transformed to the custom CRS: a box around the data
        box = lazyraster.load([item], bbox=(5.5, 51.0, 6.7, 51.8))
        left, bottom, right, top = box.rio.bounds()
        assert left < 600000 and right > 600400 and bottom < 5699520 and top > 5700000
        inner = box.B04.isel(time=0).sel(x=slice(600000, 600400), y=slice(5700000, 5699520))
        np.testing.assert_array_equal(inner.values, expected)
    # an IAU code: a grid on the Moon
    moon = CRS.from_user_input("IAU_2015:30100")
    moon_path = write_raster(
        tmp_path / "moon.tif", dn[:1], crs=moon, transform=from_origin(10, 20, 0.01, 0.01)
    )
    item = make_item(
        "moon", {"dem": {"href": moon_path}}, properties={"proj:code": "IAU_2015:30100"}
    )
    ds = lazyraster.load([item])
    assert ds.rio.crs == moon
    np.testing.assert_array_equal(ds.dem.isel(time=0).values, reference(moon_path))
    # reprojecting between it and an EPSG CRS is refused with advice, not a PROJ error
    with pytest.raises(MissingCRSError, match=r"no EPSG code.*crs= unset.*rio\.reproject"):
        lazyraster.load([item], crs="EPSG:4326")


def test_mixed_or_missing_crs_names_crs_not_epsg(tmp_path, dn):
    a = write_raster(tmp_path / "a.tif", dn[:1])
    b = write_raster(tmp_path / "b.tif", dn[:1], crs="EPSG:32632")
    items = [
        make_item("a", {"B04": {"href": a}}),
        make_item("b", {"B04": {"href": b}}, when=WHEN + dt.timedelta(days=1)),
    ]
    with pytest.raises(MissingCRSError, match=r"several CRSs.*pass crs=") as failure:
        lazyraster.load(items)
    assert "epsg=" not in str(failure.value)
    assert lazyraster.load(items, crs=32631, resolution=10).rio.crs == CRS.from_epsg(32631)
    bare = make_item("c", {"B04": {"href": a}})
    del bare.assets["B04"].extra_fields["proj:code"]
    with pytest.raises(MissingCRSError, match=r"item 'c'.*'B04'.*pass crs="):
        lazyraster.load([bare])


# -------------------------------------------------------------------- missing bands


def test_a_band_missing_from_one_item_is_an_error_unless_missing_nan(tmp_path, dn):
    a = write_raster(tmp_path / "a.tif", dn[:1])
    items = [
        make_item("full", {"B04": {"href": a}, "B08": {"href": a}}),
        make_item("partial", {"B04": {"href": a}}, when=WHEN + dt.timedelta(days=5)),
    ]
    with pytest.raises(MissingBandError, match=r"item 'partial'.*B08.*missing=\"nan\""):
        lazyraster.load(items, bands=["B04", "B08"])
    ds = lazyraster.load(items, bands=["B04", "B08"], missing="nan")
    assert np.isnan(ds.B08.sel(time=ds.time[1]).values).all()
    np.testing.assert_array_equal(ds.B08.isel(time=0).values, reference(a))
    # by default, only the bands every item has
    assert list(lazyraster.load(items).data_vars) == ["B04"]
    disjoint = [items[0].clone(), make_item("other", {"B11": {"href": a}}, when=WHEN)]
    del disjoint[0].assets["B04"]
    with pytest.raises(MissingBandError, match=r"no data asset in common.*missing=\"nan\""):
        lazyraster.load(disjoint)
    with pytest.raises(ValueError, match="missing must be"):
        lazyraster.load(items, missing="skip")


def test_nan_nodata_and_values_the_dtype_cannot_hold(tmp_path):
    data = np.arange(48 * 40, dtype=np.float32).reshape(1, 48, 40)
    data[0, 0, :5] = np.nan
    path = write_raster(tmp_path / "f.tif", data)
    item = make_item("f", {"v": {"href": path, "raster:bands": [{"nodata": "nan"}]}})
    got = lazyraster.load([item]).v.isel(time=0).values
    np.testing.assert_array_equal(np.isnan(got), np.isnan(data[0]))
    ints = write_raster(tmp_path / "i.tif", np.full((1, 48, 40), 7, np.uint16))
    item = make_item("i", {"v": {"href": ints, "raster:bands": [{"nodata": -9999}]}})
    assert (lazyraster.load([item]).v.values == 7).all()  # -9999 is no uint16: no mask
    assert math.isfinite(float(lazyraster.load([item]).v.max()))


def test_bands_of_a_multi_band_file_are_fetched_once(tmp_path, nginx):
    """Loading all four bands of a pixel-interleaved file fetches the bytes loading one
    band does (nginx's log counts them): one open, one decode per block for the group."""
    from tests.services import NginxForTest

    assert isinstance(nginx, NginxForTest)
    rng = np.random.default_rng(9)
    data = rng.integers(1, 255, (4, 512, 512), dtype=np.uint8)
    path = write_raster(nginx.root / "naip.tif", data, BLOCKSIZE=128, INTERLEAVE="PIXEL")
    eo = [{"common_name": n} for n in ("red", "green", "blue", "nir")]
    item = make_item("naip", {"image": {"href": path, "eo:bands": eo}})
    item.assets["image"].href = nginx.url_for(path)

    def fetched(bands):
        start = nginx.server.log_position()
        ds = lazyraster.load([item], bands=bands, chunks=256).compute()
        got = [e for e in nginx.server.requests(start) if e.uri.endswith("naip.tif")]
        return ds, sum(e.bytes for e in got if e.method == "GET")

    _, one_bytes = fetched(["red"])
    four, four_bytes = fetched(["red", "green", "blue", "nir"])
    for i, name in enumerate(("red", "green", "blue", "nir")):
        np.testing.assert_array_equal(four[name].isel(time=0).values, data[i].astype(np.float32))
    assert 0 < four_bytes <= one_bytes * 1.05


def test_catalog_build_over_a_crs_without_epsg_then_load(tmp_path, dn):
    """issue 14: such a CRS was catalogued (as proj:wkt2) but could not be loaded."""
    from click.testing import CliRunner

    from lazyraster.cli import main

    custom = CRS.from_proj4(
        "+proj=laea +lat_0=52 +lon_0=11.5 +x_0=4321000 +y_0=3210000 +ellps=GRS80"
    )
    assert custom.to_epsg() is None
    src = tmp_path / "src"
    src.mkdir()
    path = write_raster(
        src / "scene_20230501.tif",
        dn[:1],
        crs=custom,
        transform=from_origin(3900000, 3100000, 10, 10),
    )
    out = tmp_path / "catalog"
    result = CliRunner().invoke(
        main,
        ["catalog", "build", str(src), "--out", str(out), "--datetime", "2023-05-01T00:00:00Z"],
    )
    assert result.exit_code == 0, result.output
    ds = lazyraster.load(out / "catalog.json")
    (name,) = ds.data_vars
    assert ds.rio.crs == custom
    assert ds.rio.transform() == from_origin(3900000, 3100000, 10, 10)
    np.testing.assert_array_equal(ds[name].isel(time=0).values, reference(path))
