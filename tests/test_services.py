"""The real servers the tests use: nginx with range requests, and a STAC API.

Expected answers come from outside the servers: the bytes of the files on disk, a local
rasterio read, and the test items filtered by plain Python.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pystac_client import Client
from rasterio.transform import from_origin
from rasterio.windows import Window
from tests.conftest import ROOT
from tests.services import (
    NGINX_SH,
    STAC_API_SH,
    AccessLogEntry,
    NginxForTest,
    StacApi,
    free_port,
    nginx_installed,
    run_script,
)


def http_get(url: str, headers: dict[str, str] | None = None):
    """GET with the standard library: (status, headers, body); HTTP errors are answers too."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def process_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ---------------------------------------------------------------------------- nginx


@pytest.fixture
def blob(nginx: NginxForTest) -> bytes:
    data = np.random.default_rng(42).integers(0, 256, 100_003, dtype=np.uint8).tobytes()
    (nginx.root / "blob.tif").write_bytes(data)
    return data


def test_nginx_serves_whole_file_and_json_mime(nginx: NginxForTest, blob: bytes) -> None:
    (nginx.root / "catalog.json").write_text('{"type": "Catalog"}')
    status, headers, body = http_get(nginx.url_for("blob.tif"))
    assert (status, body) == (200, blob)
    assert headers["Content-Type"] == "image/tiff"
    assert headers["Accept-Ranges"] == "bytes"
    status, headers, body = http_get(nginx.url_for("catalog.json"))
    assert status == 200
    assert headers["Content-Type"].split(";")[0] == "application/json"
    assert json.loads(body) == {"type": "Catalog"}


def test_nginx_range_request_returns_206_and_exactly_those_bytes(
    nginx: NginxForTest, blob: bytes
) -> None:
    status, headers, body = http_get(nginx.url_for("blob.tif"), {"Range": "bytes=1000-4999"})
    assert status == 206
    assert body == blob[1000:5000]
    assert headers["Content-Range"] == f"bytes 1000-4999/{len(blob)}"
    # suffix and open-ended ranges, as GDAL and fsspec send them
    assert http_get(nginx.url_for("blob.tif"), {"Range": "bytes=-16"})[2] == blob[-16:]
    assert http_get(nginx.url_for("blob.tif"), {"Range": "bytes=99990-"})[2] == blob[99990:]
    # a range past the end is refused, not silently answered with the whole file
    assert http_get(nginx.url_for("blob.tif"), {"Range": f"bytes={len(blob)}-"})[0] == 416


def test_nginx_access_log_records_request_status_and_range(
    nginx: NginxForTest, blob: bytes
) -> None:
    http_get(nginx.url_for("blob.tif"), {"Range": "bytes=0-99"})
    http_get(nginx.url_for("blob.tif"))
    http_get(nginx.url_for("missing.tif"))
    entries = nginx.requests()
    path = urllib.parse.urlsplit(nginx.url_for("blob.tif")).path
    assert [(e.method, e.uri, e.status, e.range) for e in entries] == [
        ("GET", path, 206, "bytes=0-99"),
        ("GET", path, 200, None),
        ("GET", path.replace("blob.tif", "missing.tif"), 404, None),
    ]
    assert entries[0].request == f"GET {path} HTTP/1.1"
    assert (entries[0].bytes, entries[1].bytes) == (100, len(blob))


def test_nginx_is_read_only(nginx: NginxForTest, blob: bytes) -> None:
    url = nginx.url_for("blob.tif")
    for method in ("PUT", "DELETE", "POST"):
        request = urllib.request.Request(url, data=b"x", method=method)
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=10)
        assert error.value.code in {403, 405}
    assert (nginx.root / "blob.tif").read_bytes() == blob


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(start=st.integers(0, 100_002), length=st.integers(1, 5000))
def test_nginx_any_range_matches_the_file(
    nginx: NginxForTest, blob: bytes, start: int, length: int
) -> None:
    end = start + length - 1
    status, headers, body = http_get(nginx.url_for("blob.tif"), {"Range": f"bytes={start}-{end}"})
    assert status == 206
    assert body == blob[start : end + 1]
    assert headers["Content-Range"] == f"bytes {start}-{min(end, len(blob) - 1)}/{len(blob)}"


def test_gdal_reads_a_cog_window_over_http_with_range_requests(nginx: NginxForTest) -> None:
    data = np.arange(512 * 384, dtype=np.uint16).reshape(512, 384) % 9973
    path = nginx.root / "red.tif"
    profile = {
        "driver": "COG",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32631",
        "transform": from_origin(600000, 5700000, 10, 10),
        "compress": "deflate",
        "blocksize": 128,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    window = Window(col_off=130, row_off=260, width=70, height=90)
    with rasterio.open(path) as local:
        expected = local.read(1, window=window)
    env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MULTIRANGE": "NO"}
    with rasterio.Env(**env), rasterio.open(nginx.url_for("red.tif")) as remote:
        assert remote.crs == "EPSG:32631"
        np.testing.assert_array_equal(remote.read(1, window=window), expected)
    np.testing.assert_array_equal(expected, data[260:350, 130:200])
    tif = [e for e in nginx.requests() if e.uri.endswith("red.tif") and e.method == "GET"]
    assert tif, "GDAL made no GET request for the COG"
    assert all(e.status == 206 and e.range for e in tif), tif
    # only part of the file travelled: the header and the tiles under the window
    assert sum(e.bytes for e in tif) < path.stat().st_size


def test_static_catalog_over_http_resolves_relative_hrefs_and_pixels(
    nginx: NginxForTest,
) -> None:
    sample = ROOT / "catalogs" / "sample"
    url = nginx.publish(sample, "sample") + "/catalog.json"
    catalog = pystac.Catalog.from_file(url)
    items = list(catalog.get_items(recursive=True))
    local_items = {
        i.id: i
        for i in pystac.Catalog.from_file(str(sample / "catalog.json")).get_items(recursive=True)
    }
    assert sorted(i.id for i in items) == sorted(local_items)
    item = items[0]
    key = next(k for k, a in item.assets.items() if a.href.endswith(".tif"))
    href = item.assets[key].get_absolute_href()
    assert href.startswith(nginx.url + "/sample/")  # relative hrefs resolved against HTTP
    local_href = local_items[item.id].assets[key].get_absolute_href()
    with rasterio.open(local_href) as local, rasterio.open(href) as remote:
        window = Window(3, 5, min(40, local.width - 3), min(30, local.height - 5))
        np.testing.assert_array_equal(remote.read(1, window=window), local.read(1, window=window))
        assert (remote.crs, remote.transform) == (local.crs, local.transform)
    tif = [e for e in nginx.requests() if e.uri.endswith(".tif")]
    assert tif and all(e.status == 206 for e in tif if e.method == "GET")


@pytest.mark.skipif(not nginx_installed(), reason="nginx is not installed")
def test_nginx_script_start_is_idempotent_and_stop_ends_only_its_own(tmp_path) -> None:
    env = {"LAZYRASTER_NGINX_STATE": str(tmp_path / "state")}
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "a.json").write_text("[1, 2]")
    port = str(free_port())
    assert run_script(NGINX_SH, "status", env=env).returncode == 1
    first = run_script(NGINX_SH, "start", str(tmp_path / "root"), port, env=env)
    try:
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == f"http://127.0.0.1:{port}"
        pid = (tmp_path / "state" / "nginx.pid").read_text().strip()
        again = run_script(NGINX_SH, "start", str(tmp_path / "root"), port, env=env)
        assert again.returncode == 0 and "already serving" in again.stderr
        assert (tmp_path / "state" / "nginx.pid").read_text().strip() == pid
        assert run_script(NGINX_SH, "status", env=env).returncode == 0
        assert http_get(f"http://127.0.0.1:{port}/a.json")[2] == b"[1, 2]"
    finally:
        run_script(NGINX_SH, "stop", env=env)
    assert run_script(NGINX_SH, "status", env=env).returncode == 1
    assert not process_alive(int(pid))
    lines = (tmp_path / "state" / "access.log").read_text().splitlines()
    assert AccessLogEntry.parse(lines[-1]).uri == "/a.json"


def test_scripts_refuse_bad_usage_and_report_status(tmp_path) -> None:
    assert run_script(NGINX_SH, "start").returncode != 0
    assert run_script(NGINX_SH, "start", str(tmp_path / "missing")).returncode != 0
    assert run_script(NGINX_SH, "start", str(ROOT), "eighty").returncode != 0
    assert run_script(NGINX_SH, "frobnicate").returncode != 0
    env = {"LAZYRASTER_STAC_API_STATE": str(tmp_path / "stac-api")}
    assert run_script(STAC_API_SH, "status", env=env).returncode == 1
    assert run_script(STAC_API_SH, "load", env=env).returncode != 0
    assert run_script(STAC_API_SH, "delete", env=env).returncode != 0
    assert run_script(STAC_API_SH, "frobnicate", env=env).returncode != 0
    # nothing was started, and nothing was left behind but (at most) the state directory
    assert not (tmp_path / "stac-api" / "uvicorn.pid").exists()


# ------------------------------------------------------------------------- STAC API

PLATFORMS = ["sentinel-2a", "sentinel-2b"]


def make_items(collection_id: str) -> list[pystac.Item]:
    """Twelve small items: two tiles side by side, six dates, varied cloud cover."""
    items = []
    tiles = {"west": (4.0, 51.0, 5.0, 52.0), "east": (6.0, 51.0, 7.0, 52.0)}
    for k in range(12):
        tile = "west" if k % 2 == 0 else "east"
        west, south, east, north = tiles[tile]
        when = dt.datetime(2023, 1 + k, 10, 10, 30, tzinfo=dt.UTC)
        geometry = {
            "type": "Polygon",
            "coordinates": [
                [[west, south], [east, south], [east, north], [west, north], [west, south]]
            ],
        }
        item = pystac.Item(
            id=f"scene-{k:02d}-{tile}",
            geometry=geometry,
            bbox=[west, south, east, north],
            datetime=when,
            properties={
                "eo:cloud_cover": float((k * 37) % 100),
                "platform": PLATFORMS[k % 3 == 0],
                "tile": tile,
            },
            collection=collection_id,
        )
        item.add_asset(
            "red", pystac.Asset(f"https://example.invalid/{k}/red.tif", media_type="image/tiff")
        )
        items.append(item)
    return items


def make_collection(collection_id: str, items: list[pystac.Item]) -> pystac.Collection:
    return pystac.Collection(
        id=collection_id,
        description="Synthetic items for the lazyraster tests",
        extent=pystac.Extent(
            pystac.SpatialExtent([[4.0, 51.0, 7.0, 52.0]]),
            pystac.TemporalExtent([[items[0].datetime, items[-1].datetime]]),
        ),
        license="CC0-1.0",
    )


@pytest.fixture(scope="module")
def stac(stac_api: StacApi):
    """The API with this module's collection loaded: (api, collection id, items)."""
    collection_id = stac_api.unique_id("lazyraster-test-s2")
    items = make_items(collection_id)
    stac_api.load(make_collection(collection_id, items), items)
    return stac_api, collection_id, items


def ids(items) -> list[str]:
    return sorted(item.id if hasattr(item, "id") else item["id"] for item in items)


def test_stac_collections_lists_the_loaded_collection(stac) -> None:
    api, collection_id, items = stac
    status, _, body = http_get(f"{api.url}/collections")
    assert status == 200
    assert collection_id in [c["id"] for c in json.loads(body)["collections"]]
    status, _, body = http_get(f"{api.url}/collections/{collection_id}")
    assert (status, json.loads(body)["id"]) == (200, collection_id)
    # The same through pystac-client, and all items of the collection come back
    client = Client.open(api.url)
    collection = client.get_collection(collection_id)
    assert collection.license == "CC0-1.0"
    assert ids(collection.get_items()) == ids(items)


def test_stac_search_bbox_datetime_query_and_cql2_filter(stac) -> None:
    api, collection_id, items = stac
    client = Client.open(api.url)

    def search(**kwargs) -> list[str]:
        return ids(client.search(collections=[collection_id], **kwargs).items())

    # bbox over the west tile only
    assert search(bbox=[4.2, 51.2, 4.8, 51.8]) == ids(
        i for i in items if i.properties["tile"] == "west"
    )
    # datetime: the second quarter of 2023 (closed interval)
    start, end = dt.datetime(2023, 4, 1, tzinfo=dt.UTC), dt.datetime(2023, 6, 30, tzinfo=dt.UTC)
    assert search(datetime="2023-04-01/2023-06-30") == ids(
        i for i in items if start <= i.datetime <= end
    )
    # query extension
    assert search(query={"eo:cloud_cover": {"lt": 40}}) == ids(
        i for i in items if i.properties["eo:cloud_cover"] < 40
    )
    # CQL2-text over GET
    expected = ids(
        i
        for i in items
        if i.properties["eo:cloud_cover"] < 60 and i.properties["platform"] == "sentinel-2b"
    )
    assert 0 < len(expected) < len(items)
    assert (
        search(
            filter="\"eo:cloud_cover\" < 60 AND platform = 'sentinel-2b'",
            filter_lang="cql2-text",
            method="GET",
        )
        == expected
    )
    # the same filter as CQL2-JSON over POST (CQL2-text is for GET only)
    cql2_json = {
        "op": "and",
        "args": [
            {"op": "<", "args": [{"property": "eo:cloud_cover"}, 60]},
            {"op": "=", "args": [{"property": "platform"}, "sentinel-2b"]},
        ],
    }
    assert search(filter=cql2_json, filter_lang="cql2-json", method="POST") == expected
    # all together, and nothing from other collections
    assert search(
        bbox=[6.1, 51.1, 6.9, 51.9],
        datetime="2023-01-01/2023-08-31",
        filter='"eo:cloud_cover" >= 10',
        filter_lang="cql2-text",
        method="GET",
    ) == ids(
        i
        for i in items
        if i.properties["tile"] == "east"
        and i.datetime.month <= 8
        and i.properties["eo:cloud_cover"] >= 10
    )


def test_stac_search_plain_http_get_with_cql2_text(stac) -> None:
    api, collection_id, items = stac
    params = urllib.parse.urlencode(
        {
            "collections": collection_id,
            "filter": "platform = 'sentinel-2a'",
            "filter-lang": "cql2-text",
            "limit": 100,
        }
    )
    status, headers, body = http_get(f"{api.url}/search?{params}")
    assert status == 200
    assert headers["Content-Type"].startswith("application/geo+json")
    page = json.loads(body)
    expected = ids(i for i in items if i.properties["platform"] == "sentinel-2a")
    assert ids(page["features"]) == expected
    assert page["numberMatched"] == len(expected)  # the pgstac `context` setting is on


def test_stac_paging_follows_next_links_to_exactly_the_items(stac) -> None:
    api, collection_id, items = stac
    limit = 5
    url = f"{api.url}/search?" + urllib.parse.urlencode(
        {"collections": collection_id, "limit": limit}
    )
    pages = []
    while url:
        status, _, body = http_get(url)
        assert status == 200
        page = json.loads(body)
        pages.append(page)
        assert len(page["features"]) <= limit
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        assert len(pages) <= len(items), "the next links never end"
    seen = [f["id"] for page in pages for f in page["features"]]
    assert len(pages) == math.ceil(len(items) / limit)
    assert sorted(seen) == ids(items)  # every item once: no duplicate, none missing
    assert all(page["numberMatched"] == len(items) for page in pages)
    # pystac-client pages the same way
    search = Client.open(api.url).search(collections=[collection_id], limit=limit)
    result_pages = list(search.pages())
    assert [len(p.items) for p in result_pages] == [len(p["features"]) for p in pages]
    assert ids(i for p in result_pages for i in p.items) == ids(items)
    assert search.matched() == len(items)


def test_stac_delete_removes_a_collection_and_its_items(stac_api: StacApi) -> None:
    collection_id = stac_api.unique_id("lazyraster-test-throwaway")
    items = make_items(collection_id)[:3]
    stac_api.load(make_collection(collection_id, items), items)
    status, _, body = http_get(f"{stac_api.url}/collections/{collection_id}/items")
    assert (status, ids(json.loads(body)["features"])) == (200, ids(items))
    # loading again upserts: no duplicates
    stac_api.load(make_collection(collection_id, items), items)
    status, _, body = http_get(f"{stac_api.url}/search?collections={collection_id}")
    assert (status, ids(json.loads(body)["features"])) == (200, ids(items))
    stac_api.delete(collection_id)
    assert http_get(f"{stac_api.url}/collections/{collection_id}")[0] == 404
    status, _, body = http_get(f"{stac_api.url}/search?collections={collection_id}")
    assert (status, json.loads(body)["features"]) == (200, [])


def test_stac_load_refuses_items_of_another_collection(stac_api: StacApi) -> None:
    items = make_items("some-other-collection")[:1]
    with pytest.raises(ValueError, match="set item\\['collection'\\]"):
        stac_api.load(make_collection(stac_api.unique_id("x"), items), items)
