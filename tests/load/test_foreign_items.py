"""Items and catalogs made elsewhere load as pystac reads them, or fail naming the fix.

Recorded items of real STAC APIs (``tests/data/stac-api-items/``, see its PROVENANCE.md)
with small local files behind them (:mod:`tests.load._support`), catalogs built here
from sample SAFE products, and items of GeoTIFFs as other tools describe them: without
``eo:bands``, without a media type, with a nodata that is no number.
"""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from affine import Affine
from tests.load._support import expected_variable, localize, make_item, read_item, write_raster

import lazyraster
from lazyraster.catalog import build_catalog
from lazyraster.errors import CatalogError, MissingBandError, MissingCRSError, ReadError
from lazyraster.testing import write_safe

# pystac's migration of storage v1 fields cannot parse the rewritten hrefs; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:Could not parse bucket:UserWarning")


def test_one_load_over_two_apis_names_bands_by_common_name(nginx):
    """Planetary Computer calls Sentinel-2's red ``B04``, Earth Search ``red``: one load of
    both by common name reads each item's own asset, not NaN (missing="nan") or a refusal
    saying the item has no red. The Earth Search item is moved onto the Planetary
    Computer tile (its proj fields and footprint), so that both share one grid."""
    pc = read_item("planetarycomputer__sentinel-2-l2a")
    es = read_item("earth-search__sentinel-2-l2a")
    es["properties"]["proj:epsg"] = pc["properties"]["proj:epsg"]
    es["bbox"], es["geometry"] = pc["bbox"], pc["geometry"]
    for key in ("red", "nir"):
        es["assets"][key]["proj:transform"] = pc["assets"]["B04"]["proj:transform"]
    localize(pc, {"B04", "B08"}, nginx.root, nginx)
    localize(es, {"red", "nir"}, nginx.root, nginx)
    items = [pystac.Item.from_dict(pc), pystac.Item.from_dict(es)]
    for missing in ("error", "nan"):
        ds = lazyraster.load(items, bands=["red", "nir"], missing=missing).compute()
        assert list(ds.data_vars) == ["red", "nir"]
        for item, keys in ((pc, ("B04", "B08")), (es, ("red", "nir"))):
            at = list(ds.id.values).index(item["id"])
            for var, key in zip(("red", "nir"), keys, strict=True):
                got = ds[var].isel(time=at).values
                np.testing.assert_array_equal(got, expected_variable(item, key, 1, ds))
                assert np.isfinite(got).any()


def test_an_item_collection_file_loads(nginx, tmp_path):
    """What ``stac-client search ... > items.json`` (and pystac's
    ``ItemCollection.save_object``) writes: a FeatureCollection file. ``load`` reads its
    items; relative asset hrefs resolve against the file, as pystac resolves an item's."""
    landsat = read_item("earth-search__landsat-c2-l2")
    localize(landsat, {"red"}, nginx.root, nginx)
    expected = lazyraster.load([pystac.Item.from_dict(landsat)], bands=["red"]).compute()
    response = tmp_path / "items.json"
    response.write_text(json.dumps({"type": "FeatureCollection", "features": [landsat]}))
    got = lazyraster.load(response, bands=["red"]).compute()
    xr.testing.assert_identical(got, expected)
    # relative hrefs, no self link: resolved against the file
    local = json.loads(json.dumps(landsat))
    local["links"] = []
    tif = Path(local["assets"]["red"]["_local"])
    shutil.copy(tif, tmp_path / "red.tif")
    local["assets"] = {"red": {**local["assets"]["red"], "href": "./red.tif"}}
    pystac.ItemCollection([pystac.Item.from_dict(local)]).save_object(str(response))
    got = lazyraster.load(str(response), bands=["red"]).compute()
    np.testing.assert_array_equal(got.red.values, expected.red.values)


def test_a_product_missing_its_10m_red_is_refused_not_read_at_20m(tmp_path):
    """Naming bands by common name across items does not quietly swap in another
    resolution: a product that lacks B04_10m (a damaged download) is refused by name."""
    write_safe(tmp_path / "in", size_10m=12, bands={"10m": ["B04", "B08"], "20m": ["B04"]})
    write_safe(
        tmp_path / "in",
        size_10m=12,
        start=datetime.datetime(2023, 5, 5, 10, 46, 21),
        bands={"10m": ["B08"], "20m": ["B04"]},
    )
    assert build_catalog(tmp_path / "in", tmp_path / "stac").ok
    with pytest.raises(MissingBandError, match=r"20230505.* has no asset for band\(s\) red"):
        lazyraster.load(tmp_path / "stac" / "catalog.json", bands=["red", "nir"])


def test_load_takes_a_catalog_folder_as_describe_and_validate_do(tmp_path):
    """``lazyraster.load("stac")`` reads ``stac/catalog.json``, as ``catalog describe`` and
    ``catalog validate`` take the folder."""
    write_safe(tmp_path / "in", size_10m=12, bands={"10m": ["B04", "B08"]})
    build_catalog(tmp_path / "in", tmp_path / "stac")
    by_file = lazyraster.load(tmp_path / "stac" / "catalog.json", bands=["red"])
    xr.testing.assert_identical(lazyraster.load(tmp_path / "stac", bands=["red"]), by_file)
    with pytest.raises(CatalogError, match=r"no catalog\.json"):
        lazyraster.load(tmp_path / "in", bands=["red"])


GRID = Affine(10, 0, 600000, 0, -10, 5000000)


def item_of_files(
    files: dict[str, tuple[Path, np.ndarray]], media_type: str | None = "image/tiff", **asset_fields
) -> pystac.Item:
    """An item in EPSG:32631 on :data:`GRID`, one GeoTIFF asset per key, written here."""
    item = pystac.Item(
        "a",
        {"type": "Point", "coordinates": [3.0, 45.0]},
        [3.0, 45.0, 3.0, 45.0],
        datetime.datetime(2023, 4, 30),
        {"proj:code": "EPSG:32631", "proj:transform": list(GRID)[:6], "proj:shape": [8, 8]},
    )
    for key, (path, data) in files.items():
        with rasterio.open(
            path, "w", driver="GTiff", width=8, height=8, count=len(data),
            dtype=data.dtype, crs="EPSG:32631", transform=GRID,
        ) as dst:  # fmt: skip
            dst.write(data)
        item.add_asset(
            key, pystac.Asset(str(path), media_type=media_type, extra_fields=asset_fields)
        )
    return item


def test_a_multi_band_file_whose_asset_lists_no_bands_is_not_read_as_band_1(tmp_path):
    """A foreign catalog's 3-band ``visual`` COG with no eo:bands/raster:bands: loading
    only its band 1 under the name ``visual`` would drop the rest without a word; the
    read fails naming the file and the fix. A single-band file so described loads."""
    rgb = np.arange(3 * 8 * 8, dtype="uint8").reshape(3, 8, 8)
    item = item_of_files(
        {"visual": (tmp_path / "rgb.tif", rgb), "single": (tmp_path / "one.tif", rgb[:1])}
    )
    single = lazyraster.load([item], bands=["single"]).single.values[0]
    np.testing.assert_array_equal(single, rgb[0])
    ds = lazyraster.load([item], bands=["visual"])
    with pytest.raises(ReadError, match=r"rgb\.tif: the file has 3 bands but its STAC asset"):
        ds.compute()


def test_a_nodata_that_is_no_number_is_one_line_naming_where(tmp_path):
    """``"nodata": "none"`` in a foreign catalog (or ``load(nodata="x")``): an error of
    the package naming the item, asset and the fix, not float()'s bare ValueError."""
    item = item_of_files(
        {"b": (tmp_path / "b.tif", np.ones((1, 8, 8), "uint16"))},
        **{"raster:bands": [{"nodata": "none"}]},
    )
    with pytest.raises(CatalogError, match=r"item 'a' asset 'b'.*'none' is not a number.*nodata="):
        lazyraster.load([item])
    with pytest.raises(CatalogError, match=r"nodata='x' is not a number"):
        lazyraster.load([item], nodata="x")
    assert int(lazyraster.load([item], nodata="nan").b.isnull().sum()) == 0


def test_assets_without_a_media_type_load_by_their_file_suffix(tmp_path):
    """STAC makes an asset's ``type`` optional; pystac's own examples
    (``collectionless-item.json``: ``analytic.tif``) leave it out. Such a GeoTIFF asset
    loads; an untyped asset that is no raster (a ``.xml``) is still left out."""
    data = np.arange(64, dtype="uint16").reshape(1, 8, 8)
    item = item_of_files({"analytic": (tmp_path / "analytic.tif", data)}, media_type=None)
    item.add_asset("metadata", pystac.Asset(str(tmp_path / "meta.xml")))
    ds = lazyraster.load([item])
    assert list(ds.data_vars) == ["analytic"]
    np.testing.assert_array_equal(ds.analytic.values[0], data[0])


def test_items_without_data_assets_are_refused_as_such(tmp_path):
    """Items whose assets are all metadata: say so, not 'raster and array together'."""
    item = item_of_files({})
    item.add_asset("metadata", pystac.Asset(str(tmp_path / "MTD.xml"), media_type="text/xml"))
    with pytest.raises(MissingBandError, match=r"no data asset.*metadata"):
        lazyraster.load([item])


def test_an_unknown_crs_is_refused_naming_it(tmp_path):
    """``load(crs="EPSG:99999")``: a MissingCRSError naming the CRS (the CLI's
    ``--crs EPSG:99999``: tests/catalog/test_catalog_formats.py)."""
    with pytest.raises(MissingCRSError, match="EPSG:99999"):
        lazyraster.load(
            [item_of_files({"b": (tmp_path / "b.tif", np.ones((1, 8, 8), "uint16"))})],
            crs="EPSG:99999",
        )


def test_an_item_of_a_south_up_file_fails_naming_its_transform(tmp_path):
    """A south-up GeoTIFF (positive row step, as some netCDF-derived files are) and its
    item with that proj:transform: the load fails naming the transform and how to fix
    it, where it failed on default chunks it computed ("chunks: y=-20 ...")."""
    data = np.arange(1, 401, dtype=np.uint16).reshape(1, 20, 20)
    path = write_raster(
        tmp_path / "south-up.tif", data, transform=Affine(10, 0, 600000, 0, 10, 5699800)
    )
    item = make_item("s", {"b": {"href": path}})
    assert item.assets["b"].extra_fields["proj:transform"][4] == 10  # as rasterio reads it
    with pytest.raises(ValueError, match=r"not north-up \(rotated, south-up") as err:
        lazyraster.load([item])
    assert "gdalwarp" in str(err.value) and "chunks" not in str(err.value)
