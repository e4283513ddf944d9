"""search() over a static catalog, with the STAC API's filter semantics applied client-side."""

import datetime as dt

import pystac
import pytest

import lazyraster
from lazyraster.search import parse_datetime

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
