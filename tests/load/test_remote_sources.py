"""search() and load() against the real servers: a STAC API, and COGs over HTTP (nginx).

The expected items come from filtering the test items in plain Python; the expected
pixels from rasterio reads of the same files on the local disk. The nginx access log
shows when pixels are fetched.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import from_origin
from tests.conftest import ROOT
from tests.services import NginxForTest, StacApi

import lazyraster
from lazyraster.errors import ReadError
from lazyraster.testing import raise_if_dask_computes, raster_item, write_cog

UTC = dt.UTC
SCALE, OFFSET = 0.0001, -0.1


def expected_band(path, *, scale: float, offset: float) -> np.ndarray:
    """Reflectance from a local rasterio read: DN * scale + offset, NaN where nodata."""
    with rasterio.open(path) as src:
        dn = src.read(1)
        nodata = src.nodata
    out = dn.astype(np.float64) * scale + offset
    out[dn == nodata] = np.nan
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    """Three dates of red/nir uint16 COGs (5 % nodata) on one 300 x 260 grid, on disk."""
    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(7)
    transform = from_origin(600000, 5700000, 10, 10)
    scenes = {}
    for k, when in enumerate(
        [dt.datetime(2023, 4, 2, 10, 30), dt.datetime(2023, 5, 12), dt.datetime(2023, 6, 21)]
    ):
        name = f"S2_T31UFU_{when:%Y%m%d}"
        files = {}
        for band in ("B04", "B08"):
            dn = rng.integers(1, 10000, (260, 300), dtype=np.uint16)
            dn[rng.random(dn.shape) < 0.05] = 0
            files[band] = write_cog(root / name / f"{band}.tif", dn, transform=transform)
        scenes[name] = {"when": when.replace(tzinfo=UTC), "files": files, "cloud": 10.0 * k}
    return scenes


def make_items(scenes, collection_id: str, href_of) -> list[pystac.Item]:
    items = []
    for name, scene in scenes.items():
        assets = {
            band: {"href": str(path), "common_name": common, "scale": SCALE, "offset": OFFSET}
            for (band, common), path in zip(
                [("B04", "red"), ("B08", "nir")], scene["files"].values(), strict=True
            )
        }
        item = raster_item(
            name,
            scene["when"],
            assets,
            collection=collection_id,
            properties={"eo:cloud_cover": scene["cloud"], "platform": "sentinel-2a"},
        )
        for asset in item.assets.values():  # the same files, now over HTTP
            asset.href = href_of(asset.href)
        items.append(item)
    return items


@pytest.fixture
def published(scenes, nginx: NginxForTest, stac_api: StacApi):
    """The scenes served by nginx and their items loaded into the STAC API."""
    root = next(iter(scenes.values()))["files"]["B04"].parent.parent
    base = nginx.publish(root, "scenes")
    collection_id = stac_api.unique_id("lazyraster-remote")
    items = make_items(
        scenes, collection_id, lambda local: f"{base}/{Path(local).relative_to(root).as_posix()}"
    )
    collection = pystac.Collection(
        collection_id,
        "COGs over HTTP for the lazyraster tests",
        pystac.Extent(
            pystac.SpatialExtent([items[0].bbox]),
            pystac.TemporalExtent([[items[0].datetime, items[-1].datetime]]),
        ),
        license="CC0-1.0",
    )
    stac_api.load(collection, items)
    return stac_api, collection_id, items


def test_search_over_the_api_matches_plain_python(published) -> None:
    api, collection_id, items = published
    found = lazyraster.search(api.url, collections=collection_id)
    assert sorted(i.id for i in found) == sorted(i.id for i in items)
    found = lazyraster.search(
        api.url,
        collections=[collection_id],
        datetime="2023-05-01/2023-06-30",
        filter='"eo:cloud_cover" >= 10',
    )
    assert sorted(i.id for i in found) == sorted(
        i.id
        for i in items
        if dt.datetime(2023, 5, 1, tzinfo=UTC) <= i.datetime
        and i.properties["eo:cloud_cover"] >= 10
    )
    found = lazyraster.search(
        api.url, collections=[collection_id], query={"eo:cloud_cover": {"lt": 5}}
    )
    assert [i.id for i in found] == [items[0].id]
    assert len(lazyraster.search(api.url, collections=[collection_id], max_items=2)) == 2
    assert len(lazyraster.search(api.url, collections=[collection_id], bbox=[0, 0, 1, 1])) == 0


def test_load_from_the_api_is_lazy_then_equals_local_reads(published, nginx, scenes) -> None:
    api, collection_id, _items = published
    with raise_if_dask_computes():
        ds = lazyraster.load(api.url, collections=[collection_id], bands=["red", "nir"], chunks=128)
        ndvi = (ds.nir - ds.red) / (ds.nir + ds.red)
    # building the Dataset fetched no pixels: nginx saw no request for any COG
    assert [e for e in nginx.requests() if e.uri.endswith(".tif")] == []
    assert ds.red.dtype == np.float32
    assert ds.rio.crs.to_epsg() == 32631

    red, nir = ds.red.compute(), ds.nir.compute()
    tif = [e for e in nginx.requests() if e.uri.endswith(".tif") and e.method == "GET"]
    assert tif, "computing read nothing over HTTP"
    assert all(e.status == 206 and e.range for e in tif)  # range reads, never whole files
    for t, scene in enumerate(sorted(scenes.values(), key=lambda s: s["when"])):
        files = scene["files"]
        np.testing.assert_allclose(
            red.isel(time=t).values,
            expected_band(files["B04"], scale=SCALE, offset=OFFSET),
            rtol=1e-6,
            atol=1e-7,  # float32 arithmetic in the loader; the reference is float64
            equal_nan=True,
        )
        np.testing.assert_allclose(
            nir.isel(time=t).values,
            expected_band(files["B08"], scale=SCALE, offset=OFFSET),
            rtol=1e-6,
            atol=1e-7,  # float32 arithmetic in the loader; the reference is float64
            equal_nan=True,
        )
    first = sorted(scenes.values(), key=lambda s: s["when"])[0]["files"]
    r = expected_band(first["B04"], scale=SCALE, offset=OFFSET).astype(np.float64)
    n = expected_band(first["B08"], scale=SCALE, offset=OFFSET).astype(np.float64)
    well_posed = np.abs(n + r) > 1e-2  # the -0.1 offset makes some sums ~0: skip those
    np.testing.assert_allclose(
        ndvi.isel(time=0).values[well_posed],
        ((n - r) / np.where(well_posed, n + r, 1.0))[well_posed],
        rtol=1e-4,
        atol=1e-5,
        equal_nan=True,
    )


def test_load_a_static_catalog_over_http_equals_local_reads(nginx: NginxForTest) -> None:
    url = nginx.publish(ROOT / "catalogs" / "sample", "sample") + "/catalog.json"
    with raise_if_dask_computes():
        ds = lazyraster.load(url, bands=["red"])
    assert [e for e in nginx.requests() if e.uri.endswith(".tif")] == []
    local = ROOT / "catalogs/sample/sentinel-2-l2a-composite/S2_L3B_21JXN_20210319/B04.tif"
    np.testing.assert_allclose(
        ds.red.isel(time=0).values,
        expected_band(local, scale=0.0001, offset=0.0),
        rtol=1e-6,
        equal_nan=True,
    )


def test_search_pages_through_more_items_than_one_page(stac_api: StacApi) -> None:
    collection_id = stac_api.unique_id("lazyraster-many")
    items = [
        pystac.Item(
            f"tile-{k:03d}",
            {"type": "Point", "coordinates": [5.0 + k / 100, 52.0]},
            [5.0 + k / 100, 52.0, 5.0 + k / 100, 52.0],
            dt.datetime(2022, 1, 1, tzinfo=UTC) + dt.timedelta(days=k),
            {"eo:cloud_cover": float(k % 50)},
            collection=collection_id,
        )
        for k in range(25)
    ]
    collection = pystac.Collection(
        collection_id,
        "Point items for paging",
        pystac.Extent(
            pystac.SpatialExtent([[5.0, 52.0, 5.25, 52.0]]),
            pystac.TemporalExtent([[items[0].datetime, items[-1].datetime]]),
        ),
        license="CC0-1.0",
    )
    stac_api.load(collection, items)
    # one page of the API holds fewer items than the search returns
    with urllib.request.urlopen(f"{stac_api.url}/search?collections={collection_id}") as r:
        first_page = json.load(r)
    assert len(first_page["features"]) < len(items)
    assert any(link["rel"] == "next" for link in first_page["links"])
    found = lazyraster.search(stac_api.url, collections=collection_id)
    assert sorted(i.id for i in found) == [i.id for i in items]
    found = lazyraster.search(
        stac_api.url, collections=collection_id, query={"eo:cloud_cover": {"gte": 20}}
    )
    assert sorted(i.id for i in found) == [
        i.id for i in items if i.properties["eo:cloud_cover"] >= 20
    ]


def test_a_missing_remote_file_raises_an_error_naming_its_url(nginx: NginxForTest) -> None:
    url = nginx.publish(ROOT / "catalogs" / "sample", "sample404") + "/catalog.json"
    items = list(lazyraster.search(url))
    item = items[0].clone()
    gone = item.assets["B04"].get_absolute_href().replace("B04.tif", "B04-gone.tif")
    item.assets["B04"].href = gone
    ds = lazyraster.load([item], bands=["red"])  # lazy: nothing fetched yet
    with pytest.raises(ReadError, match=r"B04-gone\.tif: HTTP response code: 404") as failure:
        ds.red.compute()
    assert gone in str(failure.value)  # the whole URL, not only the file name
    assert any(e.uri.endswith("B04-gone.tif") and e.status == 404 for e in nginx.requests())
