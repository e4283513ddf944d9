"""Items of real STAC APIs load: grid, CRS, band names, scale/offset and nodata as the
items say.

Each item (``tests/data/stac-api-items/``, recorded from Planetary Computer, Earth
Search and others) keeps its own ``proj:*``, ``eo:bands`` and ``raster:bands``; only
the hrefs are rewritten to small files made here to match each asset (dtype, band
count, CRS, ``proj:transform``) with a small ``proj:shape``, served by nginx. The
expected pixels come from rasterio reads of those files, ``* scale + offset`` from the
item's JSON, nodata -> NaN, sampled at the output pixel centres by plain index
arithmetic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from tests.load._support import crs_of, expected_variable, localize, read_item

import lazyraster
from lazyraster.errors import MissingCRSError, ReadError

# pystac's migration of storage v1 fields cannot parse the rewritten hrefs; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:Could not parse bucket:UserWarning")

#: file -> (bands to load, the variables expected, in order)
LOADABLE = {
    "planetarycomputer__sentinel-2-l2a": (["red", "nir", "swir16"], ["red", "nir", "swir16"]),
    "earth-search__sentinel-2-l2a": (["red", "nir", "scl"], ["red", "nir", "scl"]),
    "earth-search__sentinel-2-c1-l2a": (
        ["red", "nir", "visual"],
        ["red", "nir", "visual_B04", "visual_B03", "visual_B02"],
    ),
    "earth-search__sentinel-2-l1c": (["red", "nir"], ["red", "nir"]),
    "earth-search__landsat-c2-l2": (["red", "nir08", "qa_pixel"], ["red", "nir08", "qa_pixel"]),
    "planetarycomputer__landsat-c2-l2": (["red", "nir08"], ["red", "nir08"]),
    "planetarycomputer__landsat-8-c2-l2": (["red", "nir08"], ["red", "nir08"]),
    "planetarycomputer__naip": (["red", "nir"], ["red", "nir"]),
    "earth-search__cop-dem-glo-30": (["data"], ["data"]),
    "earth-search__sentinel-s2-l2a-cogs": (["red", "nir"], ["red", "nir"]),
    "planetarycomputer__aster-l1t": (["VNIR"], ["green", "red", "nir08"]),
    "stac__WildFires-LosAngeles-Jan-2025": (["visual"], ["red", "green", "blue"]),
}


@pytest.mark.parametrize("name", sorted(LOADABLE))
def test_real_item_loads_as_its_metadata_says(name, nginx, tmp_path):
    bands, names = LOADABLE[name]
    item = read_item(name)
    probe = pystac.Item.from_dict(json.loads(json.dumps(item)))
    keys = {v.attrs["stac_asset"] for v in lazyraster.load([probe], bands=bands).data_vars.values()}
    localize(item, keys, nginx.root, nginx)
    loaded = lazyraster.load([pystac.Item.from_dict(item)], bands=bands)
    assert list(loaded.data_vars) == names
    # grid and CRS: what the proj fields say (pixel centres from proj:transform)
    props = item["properties"]
    finest = min(
        keys,
        key=lambda k: abs(item["assets"][k].get("proj:transform", props.get("proj:transform"))[0]),
    )
    transform = item["assets"][finest].get("proj:transform", props.get("proj:transform"))
    a = Affine(*transform[:6])
    assert loaded.rio.crs == (crs_of(item["assets"][finest]) or crs_of(props))
    assert loaded.rio.transform().almost_equals(a, precision=1e-9)
    np.testing.assert_allclose(loaded.x.values[:3], a.c + a.a * (np.arange(3) + 0.5))
    np.testing.assert_allclose(loaded.y.values[:3], a.f + a.e * (np.arange(3) + 0.5))
    # pixels: rasterio read * scale + offset, nodata -> NaN
    computed = loaded.isel(time=0).compute()
    for var in names:
        got = computed[var].values
        key = computed[var].attrs["stac_asset"]
        band = computed[var].attrs.get("stac_band", 1)
        np.testing.assert_array_equal(got, expected_variable(item, key, band, loaded))
        assert np.isfinite(got).any()


def test_landsat_c2_l2_surface_reflectance_scale_and_offset(nginx):
    """The figures the issue names: DN * 2.75e-05 - 0.2, nodata 0."""
    item = read_item("earth-search__landsat-c2-l2")
    band = item["assets"]["red"]["raster:bands"][0]
    assert (band["scale"], band["offset"], band["nodata"]) == (2.75e-05, -0.2, 0)
    localize(item, {"red"}, nginx.root, nginx)
    red = lazyraster.load([pystac.Item.from_dict(item)], bands=["red"]).red.isel(time=0)
    with rasterio.open(item["assets"]["red"]["_local"]) as src:
        dn = src.read(1)
    got = red.values[: dn.shape[0], : dn.shape[1]]
    valid = dn != 0
    np.testing.assert_allclose(got[valid], dn[valid] * 2.75e-05 - 0.2, rtol=2e-6, atol=1e-6)
    assert np.isnan(got[~valid]).all() and (~valid).any()


def test_projection_v2_proj_code_items_load(nginx):
    """The same item written with projection v2.0 (proj:code, no proj:epsg)."""
    item = read_item("earth-search__sentinel-2-c1-l2a")
    epsg = item["properties"].pop("proj:epsg")
    item["properties"]["proj:code"] = f"EPSG:{epsg}"
    item["stac_extensions"] = [
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
        if "projection" in e
        else e
        for e in item["stac_extensions"]
    ]
    localize(item, {"red"}, nginx.root, nginx)
    ds = lazyraster.load([pystac.Item.from_dict(item)], bands=["red"])
    assert ds.rio.crs == CRS.from_epsg(epsg)
    np.testing.assert_array_equal(ds.red.isel(time=0).values, expected_variable(item, "red", 1, ds))


def test_what_cannot_load_says_why():
    """Items whose metadata gives no usable grid fail with a message naming the fix."""
    # Landsat 8 L1 on GitHub: proj:transform written in GDAL's order (c, a, b, f, d, e)
    landsat = pystac.Item.from_dict(read_item("github-raw__landsat-8-l1"))
    with pytest.raises(ValueError, match=r"proj:transform.*not north-up"):
        lazyraster.load([landsat], bands=["red"])
    # an item with no proj fields at all: the CRS must be given
    bare = read_item("planetarycomputer__naip")
    for field in ("proj:epsg", "proj:bbox", "proj:shape", "proj:transform"):
        bare["properties"].pop(field)
    with pytest.raises(MissingCRSError, match=r"pass crs="):
        lazyraster.load([pystac.Item.from_dict(bare)], bands=["red"])


def test_sentinel_1_grd_in_radar_geometry_is_refused_not_all_nan(nginx):
    """Earth Search's GRD items state a lon/lat grid, but the files carry only ground
    control points (radar geometry): loading them must fail, naming the file, rather
    than warp nothing into an all-NaN array."""
    from rasterio.control import GroundControlPoint

    item = read_item("earth-search__sentinel-1-grd")
    localize(item, {"hh"}, nginx.root, nginx)
    path = Path(item["assets"]["hh"]["_local"])
    with rasterio.open(path) as src:
        data, (rows, cols) = src.read(), src.shape
    a = Affine(*item["properties"]["proj:transform"][:6])
    corners = [(0, 0), (0, cols), (rows, 0), (rows, cols)]
    gcps = [GroundControlPoint(r, c, *(a * (c, r))) for r, c in corners]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=cols,
        height=rows,
        count=1,
        dtype=data.dtype,
        gcps=gcps,
        crs=CRS.from_epsg(4326),
    ) as dst:
        dst.write(data)
    ds = lazyraster.load([pystac.Item.from_dict(item)], bands=["hh"])
    with pytest.raises(ReadError, match=r"hh\.tif: it has ground control points"):
        ds.hh.compute()
