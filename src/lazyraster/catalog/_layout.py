"""Where a built catalog puts things: file-name patterns, sub-catalog layouts, JSON hrefs.

A file-name pattern (``{date}_{band}.tif``) groups files into items and gives their
time and properties; a layout template (``${year}/${tile}``) puts each item into
sub-catalog folders; :class:`FolderLayout` names the JSON files in them.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import string
from typing import Any

import pystac
import pystac.layout

from lazyraster.catalog import _stac
from lazyraster.catalog._stac import ReadProblem
from lazyraster.catalog.formats import geotiff, netcdf

__all__ = ["FolderLayout", "check_layout", "compile_pattern", "group_id", "layout_segments"]

_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%Y%m%dT%H%M%S", "%Y-%m-%dT%H:%M:%S", "%Y%j", "%Y-%m")
#: Pattern fields naming an item's asset, and its time.
ASSET_FIELDS = ("band", "variable")
TIME_FIELDS = ("date", "datetime", "year")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Check a file-name pattern such as ``{date}_{band}.tif``; its regular expression.

    This is the check :func:`build_catalog` (and ``lazyraster catalog build
    --pattern``) makes before reading any file. Each ``{name}`` matches one or more
    characters other than ``/`` (as few as possible); everything else matches literally.

    Parameters
    ----------
    pattern : str
        File-name pattern: literal text and ``{field}`` names; at most one of
        ``{band}`` and ``{variable}`` (the asset of a file).

    Returns
    -------
    re.Pattern
        Matches a file name as a whole (``fullmatch``), one group per field.

    Raises
    ------
    ValueError
        If a brace is unbalanced, a field is no name or appears twice, the pattern has
        no field, or it has both ``{band}`` and ``{variable}``.

    Examples
    --------
    >>> from lazyraster.catalog import compile_pattern
    >>> compile_pattern("{date}_{band}.tif").fullmatch("20230430_B04.tif").groupdict()
    {'date': '20230430', 'band': 'B04'}
    >>> compile_pattern("{date}_{date}.tif")
    Traceback (most recent call last):
    ...
    ValueError: pattern field {date} appears twice in '{date}_{date}.tif'
    """
    parts = re.split(r"\{([^{}]*)\}", pattern)
    names: list[str] = []
    regex = ""
    for i, part in enumerate(parts):
        if i % 2 == 0:
            if "{" in part or "}" in part:
                raise ValueError(f"pattern {pattern!r} has an unbalanced '{{' or '}}'")
            regex += re.escape(part)
            continue
        if not part.isidentifier():
            raise ValueError(f"pattern field {{{part}}} must be a name such as {{date}}")
        if part in names:
            raise ValueError(f"pattern field {{{part}}} appears twice in {pattern!r}")
        names.append(part)
        regex += f"(?P<{part}>[^/]+?)"
    if not names:
        raise ValueError(f"pattern {pattern!r} has no {{field}}")
    if len(set(names) & set(ASSET_FIELDS)) > 1:
        raise ValueError("a pattern may have {band} or {variable}, not both")
    return re.compile(regex)


def group_id(pattern: str, values: dict[str, str]) -> str:
    """Item id of a group: the pattern without its asset field, filled in, no suffix."""
    template = re.sub(
        r"[_.\-]?\{(band|variable)\}|\{(band|variable)\}[_.\-]?", "", pattern, count=1
    )
    text = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
    for suffix in (*geotiff.RASTER_SUFFIXES, *netcdf.NETCDF_SUFFIXES):
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)]
    return text.strip("_.-") or "item"


def parse_when(fields: dict[str, str]) -> Any:
    """Datetime (or (start, end) for a year) from pattern fields, else None."""
    for name in ("datetime", "date"):
        if name in fields:
            text = fields[name]
            for fmt in _DATE_FORMATS:
                try:
                    return _dt.datetime.strptime(text, fmt)
                except ValueError:
                    pass
            try:
                return _stac.parse_instant(text)
            except ValueError:
                raise ReadProblem(
                    f"{{{name}}} value {text!r} is not a date such as 20230430"
                ) from None
    if "year" in fields:
        if not re.fullmatch(r"\d{4}", fields["year"]):
            raise ReadProblem(f"{{year}} value {fields['year']!r} is not a four-digit year")
        year = int(fields["year"])
        return (_dt.datetime(year, 1, 1), _dt.datetime(year, 12, 31, 23, 59, 59))
    return None


def check_layout(layout: str | None) -> list[str]:
    """Check a sub-catalog layout template such as ``${year}/${tile}``; its field names.

    This is the check :func:`build_catalog` (and ``lazyraster catalog build
    --layout``) makes before reading any file.

    Parameters
    ----------
    layout : str or None
        A relative path template of :class:`string.Template` fields (``${year}`` or
        ``$year``); None or ``""`` means no sub-catalogs.

    Returns
    -------
    list of str
        The field names in order (empty for no layout).

    Raises
    ------
    ValueError
        If the template is absolute, has a ``..`` part, or is not a valid template.

    Examples
    --------
    >>> from lazyraster.catalog import check_layout
    >>> check_layout("${year}/${tile}")
    ['year', 'tile']
    >>> check_layout("../${year}")
    Traceback (most recent call last):
    ...
    ValueError: layout '../${year}' must be a relative path template like '${year}'
    """
    if not layout:
        return []
    if layout.startswith("/") or ".." in layout.split("/"):
        raise ValueError(f"layout {layout!r} must be a relative path template like '${{year}}'")
    template = string.Template(layout)
    if not template.is_valid():
        raise ValueError(
            f"layout {layout!r} is not a valid template: write fields as ${{year}} or $year"
        )
    return template.get_identifiers()


def _item_start(item: pystac.Item) -> _dt.datetime:
    when = item.datetime or item.common_metadata.start_datetime
    assert when is not None  # pystac refuses items with neither
    return when


def _layout_value(item: pystac.Item, name: str, collection: str | None) -> str | None:
    props = item.properties
    if name in ("year", "month", "day"):
        when = _item_start(item)
        return {"year": f"{when.year:04d}", "month": f"{when.month:02d}", "day": f"{when.day:02d}"}[
            name
        ]
    if name == "id":
        return item.id
    if name == "collection":
        return collection
    if name in props and props[name] is not None:
        return str(props[name])
    for key in sorted(props):
        local = key.split(":")[-1]
        if (local == name or local.endswith("_" + name)) and props[key] is not None:
            return str(props[key])
    return None


def layout_segments(
    item: pystac.Item, layout: str | None, collection: str | None
) -> tuple[str, ...]:
    if not layout:
        return ()
    values = {}
    for name in check_layout(layout):
        value = _layout_value(item, name, collection)
        if value is None:
            raise ReadProblem(f"has no value for ${{{name}}} of the layout {layout!r}")
        # folder names: no separators, nothing an URL parser would cut (pystac is one)
        values[name] = re.sub(r"[/#?%]", "-", value.replace(os.sep, "-"))
    path = string.Template(layout).substitute(values)
    segments = tuple(s for s in path.split("/") if s)
    for segment in segments:
        if segment in {".", ".."}:
            raise ReadProblem(f"layout {layout!r} gives the folder name {segment!r}")
    return segments


class FolderLayout(pystac.layout.HrefLayoutStrategy):
    """Where objects go: sub-catalogs in folders, items next to their catalog.

    Items sit in their catalog's folder (fewer folders: faster on parallel file
    systems), except an item named ``catalog`` or ``collection``, which gets a folder.
    """

    def get_catalog_href(self, cat: pystac.Catalog, parent_dir: str, is_root: bool) -> str:
        return os.path.join(parent_dir, *([] if is_root else [cat.id]), "catalog.json")

    def get_collection_href(self, col: pystac.Collection, parent_dir: str, is_root: bool) -> str:
        return os.path.join(parent_dir, *([] if is_root else [col.id]), "collection.json")

    def get_item_href(self, item: pystac.Item, parent_dir: str) -> str:
        own = [item.id] if item.id in ("catalog", "collection") else []
        return os.path.join(parent_dir, *own, f"{item.id}.json")
