"""search() over a static catalog, with the STAC API's filter semantics applied client-side."""

import collections
import contextlib
import datetime as dt
import functools
import http.server
import json
import re
import threading
from pathlib import Path

import dask
import pystac
import pytest
from click.testing import CliRunner
from tests.references import SAMPLE
from tests.services import free_port

import lazyraster
from lazyraster.catalog._search import parse_datetime, read_items
from lazyraster.cli import main
from lazyraster.errors import CatalogError

UTC = dt.UTC


def make_catalog(root):
    catalog = pystac.Catalog("test", "test catalog")
    for name, collection_items in {
        "a": [
            ("a1", dt.datetime(2021, 1, 15, tzinfo=UTC), None, [0, 0, 1, 1], 5.0),
            ("a2", dt.datetime(2021, 6, 1, tzinfo=UTC), None, [10, 10, 11, 11], 50.0),
        ],
        "b": [
            # an interval item: only start/end
            (
                "b1",
                None,
                (dt.datetime(2020, 12, 1, tzinfo=UTC), dt.datetime(2021, 2, 1, tzinfo=UTC)),
                [0.5, 0.5, 2, 2],
                20.0,
            ),
        ],
    }.items():
        collection = pystac.Collection(
            name,
            f"collection {name}",
            pystac.Extent(
                pystac.SpatialExtent([[-180, -90, 180, 90]]),
                pystac.TemporalExtent([[dt.datetime(2020, 1, 1, tzinfo=UTC), None]]),
            ),
        )
        for item_id, when, interval, bbox, cloud in collection_items:
            w, s, e, n = bbox
            props = {"eo:cloud_cover": cloud, "platform": f"sat-{item_id[0]}"}
            if interval:
                props["start_datetime"] = interval[0].isoformat()
                props["end_datetime"] = interval[1].isoformat()
            geometry = {
                "type": "Polygon",
                "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
            }
            collection.add_item(pystac.Item(item_id, geometry, bbox, when, props))
        catalog.add_child(collection)
    catalog.normalize_and_save(str(root), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return make_catalog(tmp_path_factory.mktemp("catalog"))


def ids(found):
    return sorted(item.id for item in found)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["a1", "a2", "b1"]),
        ({"collections": "a"}, ["a1", "a2"]),
        ({"collections": ["b"]}, ["b1"]),
        ({"bbox": [0.9, 0.9, 1.5, 1.5]}, ["a1", "b1"]),
        ({"bbox": [3, 3, 4, 4]}, []),
        ({"intersects": {"type": "Point", "coordinates": [10.5, 10.5]}}, ["a2"]),
        ({"datetime": "2021-01"}, ["a1", "b1"]),  # b1's interval covers January
        ({"datetime": "2021-03/.."}, ["a2"]),
        ({"datetime": "../2020-12-15"}, ["b1"]),
        ({"datetime": "2021-06-01T00:00:00Z"}, ["a2"]),
        ({"query": {"eo:cloud_cover": {"lt": 25}}}, ["a1", "b1"]),
        ({"query": {"platform": {"startsWith": "sat-b"}}}, ["b1"]),
        ({"filter": "\"eo:cloud_cover\" >= 20 AND platform = 'sat-a'"}, ["a2"]),
        (
            {"filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}},
            ["a1"],
        ),
        ({"collections": "a", "datetime": "2021", "bbox": [0, 0, 20, 20]}, ["a1", "a2"]),
    ],
)
def test_static_search_filters(catalog, kwargs, expected):
    found = lazyraster.search(catalog, **kwargs)
    assert isinstance(found, pystac.ItemCollection)
    assert ids(found) == expected


def test_max_items_and_empty_result(catalog):
    assert len(lazyraster.search(catalog, max_items=2)) == 2
    assert len(lazyraster.search(catalog, collections="nope")) == 0


def test_parse_datetime_forms():
    start, end = parse_datetime("2020")
    assert (start, end) == (
        dt.datetime(2020, 1, 1, tzinfo=UTC),
        dt.datetime(2020, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    )
    assert parse_datetime("2024-02")[1].day == 29
    assert parse_datetime((dt.date(2021, 1, 1), None)) == (
        dt.datetime(2021, 1, 1, tzinfo=UTC),
        None,
    )
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_datetime("yesterday")


def test_unknown_query_operator_is_named(catalog):
    with pytest.raises(ValueError, match="unknown query operator 'like'"):
        lazyraster.search(catalog, query={"platform": {"like": "sat"}})


# --------------------------------------------------------------------------- hostile catalogs


def _link_child(parent: Path, href: str) -> None:
    """Add a child link with ``href`` to the catalog file ``parent``, as an author could."""
    data = json.loads(parent.read_text())
    data["links"].append({"rel": "child", "href": href, "type": "application/json"})
    parent.write_text(json.dumps(data))


def test_walk_yields_what_pystac_yields_on_an_acyclic_catalog(catalog):
    expected = [i.id for i in pystac.Catalog.from_file(str(catalog)).get_items(recursive=True)]
    assert [i.id for i in read_items(catalog)] == expected
    pystac_items = pystac.read_file(str(SAMPLE)).get_items(recursive=True)
    sample = [i.make_asset_hrefs_absolute().to_dict() for i in pystac_items]
    assert [i.make_asset_hrefs_absolute().to_dict() for i in read_items(SAMPLE)] == sample


@pytest.mark.parametrize(
    ("where", "href", "cycle"),
    [
        ("catalog.json", "./catalog.json", r"catalog\.json -> .*catalog\.json\)"),
        ("a/collection.json", "../catalog.json", r"catalog\.json -> .*a/collection\.json -> "),
        ("a/collection.json", "./collection.json", r"a/collection\.json -> .*a/collection\.json\)"),
    ],
)
def test_a_catalog_linking_in_a_cycle_is_an_error_naming_the_link(tmp_path, where, href, cycle):
    root = make_catalog(tmp_path / "cat")
    _link_child(tmp_path / "cat" / where, href)
    with pytest.raises(CatalogError, match=rf"child link to '{re.escape(href)}'.*{cycle}"):
        lazyraster.search(root)
    with pytest.raises(CatalogError, match="cycle"):
        lazyraster.load(root)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"source: {root}\noutput: {{zarr: {tmp_path / 'o.zarr'}}}\n")
    result = CliRunner().invoke(main, ["run", str(spec), "--dry-run"])
    assert result.exit_code == 1
    assert "links in a cycle" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_catalog_linked_twice_is_read_once(tmp_path):
    root = make_catalog(tmp_path / "cat")
    _link_child(root, "./a/../a/collection.json")  # the same collection by another href
    assert sorted(i.id for i in read_items(root)) == ["a1", "a2", "b1"]


class _Flaky(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; the first ``fail`` GETs of each path answer ``status``."""

    fail: int
    status: int
    counts: collections.Counter

    def do_GET(self) -> None:
        self.counts[self.path] += 1
        if self.counts[self.path] <= self.fail:
            self.send_error(self.status)
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def _flaky_server(root: Path, fail: int, status: int = 503):
    counts = collections.Counter()
    handler = type("Handler", (_Flaky,), {"fail": fail, "status": status, "counts": counts})
    serve = functools.partial(handler, directory=str(root))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), serve) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", counts
        finally:
            server.shutdown()


_FAST_RETRIES = {
    "lazyraster.gdal.GDAL_HTTP_MAX_RETRY": 2,
    "lazyraster.gdal.GDAL_HTTP_RETRY_DELAY": 0.01,
}


def test_catalog_json_over_http_is_retried_after_503s(tmp_path):
    make_catalog(tmp_path / "cat")
    with dask.config.set(_FAST_RETRIES), _flaky_server(tmp_path, fail=2) as (url, counts):
        found = lazyraster.search(f"{url}/cat/catalog.json")
    assert ids(found) == ["a1", "a2", "b1"]
    # two 503s, the answer (is it an API?), then the walk reads the root again
    assert counts["/cat/catalog.json"] == 4
    assert counts["/cat/a/a1/a1.json"] == 3


def test_lasting_5xx_names_the_url_the_status_and_the_attempts(tmp_path):
    make_catalog(tmp_path / "cat")
    with (
        dask.config.set(_FAST_RETRIES),
        _flaky_server(tmp_path, fail=100, status=502) as (url, counts),
        pytest.raises(CatalogError) as info,
    ):
        lazyraster.search(f"{url}/cat/catalog.json")
    assert str(info.value) == (
        f"cannot read {url}/cat/catalog.json: HTTP 502 Bad Gateway (after 3 attempt(s)); the "
        "server failed: try again later"
    )
    assert counts["/cat/catalog.json"] == 3


def test_a_404_child_over_nginx_names_the_link_and_the_status(tmp_path, nginx):
    root = make_catalog(tmp_path / "cat")
    _link_child(root, "./gone/catalog.json")
    url = nginx.publish(tmp_path / "cat")
    with pytest.raises(CatalogError) as info:
        lazyraster.search(f"{url}/catalog.json")
    assert str(info.value) == (
        f"cannot read {url}/gone/catalog.json: HTTP 404 Not Found (not retried); check the "
        "link or the URL"
    )
    statuses = [(r.uri.rsplit("/", 2)[-2:], r.status) for r in nginx.requests()]
    assert (["gone", "catalog.json"], 404) in statuses
    assert [s for _, s in statuses].count(404) == 1  # a 404 is not asked again


def test_a_server_that_is_not_there_is_named(tmp_path):
    port = free_port()
    with dask.config.set(_FAST_RETRIES), pytest.raises(CatalogError) as info:
        lazyraster.search(f"http://127.0.0.1:{port}/catalog.json")
    message = str(info.value)
    assert message.startswith(f"cannot read http://127.0.0.1:{port}/catalog.json: ")
    assert "after 3 attempt(s)" in message and "reachable" in message
