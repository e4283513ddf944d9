"""One ``search`` over a STAC API or a static catalog.

A STAC API (a root that conforms to *item-search*) is searched with pystac-client; a
static catalog (local path or URL) is walked with pystac and the same filters are
applied client-side, with the same meaning: bbox and geometry intersection, datetime
ranges against an item's instant or its start/end interval, the *query* extension and
CQL2 filters (text or JSON, evaluated with the ``cql2`` package).

Catalog JSON is read with :class:`RetryingStacIO`: over HTTP, transient failures
(connection errors, timeouts, 429 and 5xx answers) are retried as raster reads are,
with the ``GDAL_HTTP_MAX_RETRY``, ``GDAL_HTTP_RETRY_DELAY`` and ``GDAL_HTTP_TIMEOUT``
of dask config ``lazyraster.gdal``, and a failure names the URL and the HTTP status.
A static catalog is walked with cycle detection: a child link back to a catalog that
contains it is a :class:`~lazyraster.errors.CatalogError` naming the link; a catalog
or item linked twice is read once.
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
import posixpath
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pystac
import shapely.geometry
import urllib3

from lazyraster.catalog._stac import CatalogIO
from lazyraster.config import gdal_options
from lazyraster.errors import CatalogError, LazyrasterError

__all__ = ["RetryingStacIO", "filter_items", "parse_datetime", "read_items", "search"]

#: HTTP answers worth asking again: rate limits and server-side failures.
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})

ITEM_SEARCH_CONFORMANCE = "https://api.stacspec.org/v1.0.0/item-search"

DatetimeLike = str | dt.datetime | dt.date | Sequence[str | dt.datetime | dt.date | None] | None

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _parse_end(text: str | dt.datetime | dt.date | None, *, end: bool) -> dt.datetime | None:
    """One end of a range; a partial date covers its whole year, month or day."""
    if text is None or text in ("", ".."):
        return None
    if isinstance(text, dt.datetime):
        return _as_utc(text)
    if isinstance(text, dt.date):
        text = text.isoformat()
    match = _PARTIAL.match(text)
    if match:
        year, month, day = match.groups()
        y, m = int(year), int(month or (12 if end else 1))
        d = int(day or (calendar.monthrange(y, m)[1] if end else 1))
        if end:
            return dt.datetime(y, m, d, 23, 59, 59, 999999, tzinfo=dt.UTC)
        return dt.datetime(y, m, d, tzinfo=dt.UTC)
    try:
        return _as_utc(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as err:
        raise ValueError(
            f"cannot read {text!r} as a date or time; use ISO 8601 such as "
            "'2021-03-19', '2021-03', '2021' or '2021-03-19T10:00:00Z'"
        ) from err


def parse_datetime(value: DatetimeLike) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Turn a STAC-style datetime filter into a (start, end) pair of UTC datetimes.

    Accepts what pystac-client accepts: ``"2021"``, ``"2021-03"``, ``"2021-03-19"``
    (each covering the whole period), full timestamps, ranges ``"start/end"`` with
    ``..`` for an open end, datetime objects, and pairs.

    Examples
    --------
    >>> start, end = parse_datetime("2021-03")
    >>> start.isoformat(), end.isoformat()
    ('2021-03-01T00:00:00+00:00', '2021-03-31T23:59:59.999999+00:00')
    >>> parse_datetime("../2020-12-31")[0] is None
    True
    """
    if value is None:
        return None, None
    if isinstance(value, str):
        parts = value.split("/")
        if len(parts) == 1:
            return _parse_end(parts[0], end=False), _parse_end(parts[0], end=True)
        if len(parts) != 2:
            raise ValueError(f"a datetime range has one '/', not {value!r}")
        return _parse_end(parts[0], end=False), _parse_end(parts[1], end=True)
    if isinstance(value, dt.datetime | dt.date):
        return _parse_end(value, end=False), _parse_end(value, end=True)
    start, end = value
    return _parse_end(start, end=False), _parse_end(end, end=True)


def _item_interval(item: pystac.Item) -> tuple[dt.datetime, dt.datetime]:
    start = item.common_metadata.start_datetime or item.datetime
    end = item.common_metadata.end_datetime or item.datetime
    return _as_utc(start), _as_utc(end)


_QUERY_OPS = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "startsWith": lambda a, b: isinstance(a, str) and a.startswith(b),
    "endsWith": lambda a, b: isinstance(a, str) and a.endswith(b),
    "contains": lambda a, b: isinstance(a, str) and b in a,
    "in": lambda a, b: a in b,
}


def _matches_query(properties: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    for name, condition in query.items():
        if not isinstance(condition, Mapping):
            condition = {"eq": condition}
        for op, operand in condition.items():
            if op not in _QUERY_OPS:
                raise ValueError(f"unknown query operator {op!r}; use one of {sorted(_QUERY_OPS)}")
            if not _QUERY_OPS[op](properties.get(name), operand):
                return False
    return True


def filter_items(
    items: Iterable[pystac.Item],
    *,
    collections: str | Iterable[str] | None = None,
    bbox: Sequence[float] | None = None,
    intersects: Any = None,
    datetime: DatetimeLike = None,
    query: Mapping[str, Any] | None = None,
    filter: str | Mapping[str, Any] | None = None,
) -> Iterator[pystac.Item]:
    """Yield the items that pass every given filter, with STAC API semantics.

    The parameters mean what they mean in :func:`search`.

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> item = pystac.Item("a", None, None, dt.datetime(2021, 3, 19), {"gsd": 30})
    >>> [i.id for i in filter_items([item], datetime="2021-03", query={"gsd": {"lt": 40}})]
    ['a']
    >>> [i.id for i in filter_items([item], filter="gsd > 40")]
    []
    """
    import cql2

    wanted = {collections} if isinstance(collections, str) else collections
    wanted = set(wanted) if wanted is not None else None
    area = None
    if bbox is not None:
        area = shapely.geometry.box(*bbox)
    if intersects is not None:
        shape = shapely.geometry.shape(getattr(intersects, "__geo_interface__", intersects))
        area = shape if area is None else area.intersection(shape)
    start, end = parse_datetime(datetime)
    expr = cql2.Expr(filter) if filter is not None else None
    for item in items:
        if wanted is not None and item.collection_id not in wanted:
            continue
        if area is not None and (
            item.geometry is None or not shapely.geometry.shape(item.geometry).intersects(area)
        ):
            continue
        if start is not None or end is not None:
            item_start, item_end = _item_interval(item)
            if (end is not None and item_start > end) or (start is not None and item_end < start):
                continue
        if query is not None and not _matches_query(item.properties, query):
            continue
        if expr is not None and not expr.matches(item.to_dict(include_self_link=False)):
            continue
        yield item


class RetryingStacIO(CatalogIO):
    """pystac I/O that retries transient HTTP failures and keeps the status in errors.

    Local files are read as :class:`~lazyraster.catalog._stac.CatalogIO` reads them
    (the percent-encoded hrefs of `lazyraster catalog build` decoded).

    Parameters
    ----------
    retries, delay, timeout : optional
        Attempts after the first, seconds before the first retry (doubling after each),
        and seconds per request. Default: ``GDAL_HTTP_MAX_RETRY``,
        ``GDAL_HTTP_RETRY_DELAY`` and ``GDAL_HTTP_TIMEOUT`` of
        :func:`lazyraster.config.gdal_options`, so catalog JSON is read as rasters are.

    Examples
    --------
    >>> io = RetryingStacIO(retries=2, delay=0.1)
    >>> io.retry.total, io.retry.status_forcelist == TRANSIENT_STATUS
    (2, True)
    """

    def __init__(
        self,
        *,
        retries: int | None = None,
        delay: float | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(headers)
        gdal = gdal_options()
        self.retry = urllib3.util.Retry(
            total=int(gdal.get("GDAL_HTTP_MAX_RETRY", 3) if retries is None else retries),
            backoff_factor=float(
                gdal.get("GDAL_HTTP_RETRY_DELAY", 0.5) if delay is None else delay
            ),
            status_forcelist=TRANSIENT_STATUS,
            allowed_methods=None,
            raise_on_status=False,  # the last answer's status goes into our message
        )
        self.timeout = float(gdal.get("GDAL_HTTP_TIMEOUT", 30) if timeout is None else timeout)
        self._http = urllib3.PoolManager()

    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
        """Read ``source`` as UTF-8 text; over HTTP with retries (see the class)."""
        href = str(os.fspath(source))
        if not href.startswith(("http://", "https://")):
            return super().read_text(source, *args, **kwargs)
        attempts = f"after {self.retry.total + 1} attempt(s)"
        try:
            response = self._http.request(
                "GET",
                href,
                headers={"User-Agent": f"lazyraster (pystac/{pystac.__version__})", **self.headers},
                retries=self.retry,
                timeout=self.timeout,
            )
        except urllib3.exceptions.HTTPError as err:
            reason = getattr(err, "reason", None) or err
            raise CatalogError(
                f"cannot read {href}: {reason} ({attempts}); check the URL and that the "
                "server is reachable from here"
            ) from None
        if response.status >= 400:
            again = attempts if response.status in TRANSIENT_STATUS else "not retried"
            raise CatalogError(
                f"cannot read {href}: HTTP {response.status} {response.reason} ({again}); "
                + (
                    "the server failed: try again later"
                    if response.status >= 500 or response.status == 429
                    else "check the link or the URL"
                )
            )
        return str(response.data.decode("utf-8"))


def _key(href: str) -> str:
    """A normalized absolute href: the same file has one key."""
    if "://" in href and not href.startswith("file://"):
        parts = urllib.parse.urlsplit(href)
        return urllib.parse.urlunsplit(parts._replace(path=posixpath.normpath(parts.path)))
    return os.path.realpath(href.removeprefix("file://"))


def _resolve(link: pystac.Link, root: pystac.Catalog) -> pystac.STACObject:
    """The object ``link`` points to; a read failure is our own error, status and all."""
    try:
        return link.resolve_stac_object(root=root).target  # type: ignore[return-value]
    except pystac.STACError as err:
        if isinstance(err.__cause__, LazyrasterError):
            raise err.__cause__ from None
        raise


def _walk(
    catalog: pystac.Catalog, root: pystac.Catalog, chain: list[str], seen: set[str]
) -> Iterator[pystac.Item]:
    """Items of ``catalog`` and its children, depth first, as pystac orders them."""
    for link in catalog.get_links(pystac.RelType.ITEM):
        key = _key(link.get_absolute_href() or link.href)
        if key not in seen:
            seen.add(key)
            item = _resolve(link, root)
            if isinstance(item, pystac.Item):
                yield item
    for link in catalog.get_links(pystac.RelType.CHILD):
        key = _key(link.get_absolute_href() or link.href)
        if key in chain:
            cycle = " -> ".join([*chain[chain.index(key) :], key])
            raise CatalogError(
                f"{chain[-1]} has a child link to {link.href!r}, which contains it: the "
                f"catalog links in a cycle ({cycle}). Remove or correct that link."
            )
        if key in seen:
            continue
        seen.add(key)
        child = _resolve(link, root)
        if isinstance(child, pystac.Catalog):
            yield from _walk(child, root, [*chain, key], seen)


def read_items(
    source: str | os.PathLike[str], *, stac_io: pystac.StacIO | None = None
) -> Iterator[pystac.Item]:
    """Yield every item of a static catalog, collection, item collection or item file.

    Child and item links are followed once each; a child link back to a catalog
    above it raises :class:`~lazyraster.errors.CatalogError` naming the link.

    Parameters
    ----------
    source : str or path
        Path or URL of the catalog, collection, item or item collection file, or a
        catalog folder (its ``catalog.json``).
    stac_io : pystac.StacIO, optional
        Default: a :class:`RetryingStacIO`.

    Examples
    --------
    >>> [item.id for item in read_items("catalogs/sample/catalog.json")]
    ['S2_L3B_21JXN_20210319']
    """
    stac_io = stac_io or RetryingStacIO()
    href = os.fspath(source)
    if os.path.isdir(href):  # a catalog folder, as `lazyraster catalog` commands take
        href = os.path.join(href, "catalog.json")
        if not os.path.isfile(href):
            raise CatalogError(
                f"{source} is a folder with no catalog.json: give a catalog folder or the "
                "path of a catalog, collection or item JSON file"
            )
    doc = stac_io.read_json(href)
    if doc.get("type") == "FeatureCollection":  # pystac.read_file refuses these
        for item in pystac.ItemCollection.from_dict(doc, preserve_dict=False):
            if item.get_self_href() is None:  # relative asset hrefs: from the file
                item.set_self_href(_absolute(href))
            yield item
        return
    root = stac_io.stac_object_from_dict(doc, href=href, preserve_dict=False)
    if isinstance(root, pystac.Item):
        yield root
    elif isinstance(root, pystac.Catalog):
        root._stac_io = stac_io  # as Catalog.from_file does: children are read with it
        key = _key(root.get_self_href() or href)
        yield from _walk(root, root, [key], {key})
    else:  # pragma: no cover - pystac makes one of the above
        raise TypeError(f"{source!s} is a {type(root).__name__}, not a catalog or item")


def _absolute(href: str) -> str:
    """``href`` as an absolute path or URL."""
    return href if "://" in href else os.path.abspath(href)


def _is_api(source: str) -> bool:
    if not source.startswith(("http://", "https://")):
        return False
    root = RetryingStacIO().read_json(source)
    conforms = root.get("conformsTo", [])
    return any(c.startswith(ITEM_SEARCH_CONFORMANCE) for c in conforms)


def search(
    source: str | os.PathLike[str],
    *,
    collections: str | Iterable[str] | None = None,
    bbox: Sequence[float] | None = None,
    intersects: Any = None,
    datetime: DatetimeLike = None,
    query: Mapping[str, Any] | None = None,
    filter: str | Mapping[str, Any] | None = None,
    max_items: int | None = None,
) -> pystac.ItemCollection:
    """Search a STAC API or a static catalog for items.

    Parameters
    ----------
    source : str or path
        A STAC API root URL, or a static catalog/collection/item (path or URL).
    collections : str or iterable of str, optional
        Collection ids.
    bbox : (west, south, east, north), optional
        Longitude/latitude box the items must intersect.
    intersects : GeoJSON geometry or object with ``__geo_interface__``, optional
        Geometry the items must intersect.
    datetime : str, datetime or pair, optional
        Instant or range (see :func:`parse_datetime`); an item matches when its
        datetime, or its start/end interval, meets the range.
    query : dict, optional
        STAC *query* extension, e.g. ``{"eo:cloud_cover": {"lt": 20}}``.
    filter : str or dict, optional
        CQL2 filter, as text (``"eo:cloud_cover < 20"``) or JSON.
    max_items : int, optional
        Stop after this many items.

    Returns
    -------
    pystac.ItemCollection
        Possibly empty; :func:`lazyraster.load` explains an empty result.

    Examples
    --------
    >>> items = search("catalogs/sample/catalog.json", datetime="2021")
    >>> len(items)
    1
    """
    source = os.fspath(source)
    wanted = {collections} if isinstance(collections, str) else collections
    if _is_api(source):
        import pystac_client

        client = pystac_client.Client.open(source)
        found = client.search(
            method="GET" if isinstance(filter, str) else "POST",
            collections=sorted(wanted) if wanted is not None else None,
            bbox=bbox,
            intersects=intersects,
            datetime=datetime,
            query=dict(query) if query is not None else None,
            filter=filter,
            filter_lang=("cql2-text" if isinstance(filter, str) else "cql2-json")
            if filter is not None
            else None,
            max_items=max_items,
        )
        try:
            return found.item_collection()
        except pystac_client.exceptions.APIError as err:
            raise LazyrasterError(f"the STAC API at {source} refused the search: {err}") from err
    items = []
    for item in filter_items(
        read_items(source),
        collections=wanted,
        bbox=bbox,
        intersects=intersects,
        datetime=datetime,
        query=query,
        filter=filter,
    ):
        if max_items is not None and len(items) >= max_items:
            break
        items.append(item)
    return pystac.ItemCollection(items)
