"""``describe_catalog``: what a static catalog holds, at a glance."""

from __future__ import annotations

import os
from typing import Any

import pystac

from lazyraster.catalog import _stac, _tree

__all__ = ["describe_catalog", "format_description"]


def describe_catalog(catalog: str | os.PathLike[str]) -> dict[str, Any]:
    """Summarise a static catalog: its tree, item counts, time span, bbox and assets.

    Parameters
    ----------
    catalog : path
        Catalog folder or its ``catalog.json``.

    Returns
    -------
    dict
        ``id``, ``title``, ``items`` (total), ``tree`` (one entry per catalog or
        collection: ``depth``, ``type``, ``id``, ``items`` directly below it, ``path``
        relative to the root folder) and ``collections``: per item collection id (or
        the root id for items without one), ``items``, ``start``, ``end``, ``bbox`` and
        ``assets`` (asset key -> band names, as ``name (common_name)``).

    Raises
    ------
    CatalogError
        When the catalog or a file it links to cannot be read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from lazyraster.catalog import build_catalog
    >>> from lazyraster.testing import write_sample_cog
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_sample_cog(tmp / "data" / "20230430_red.tif", shape=(4, 4))
    >>> _ = build_catalog(tmp / "data", tmp / "stac", pattern="{date}_{band}.tif")
    >>> summary = describe_catalog(tmp / "stac")
    >>> summary["items"], summary["collections"]["stac"]["assets"]
    (1, {'red': ['red (red)']})
    """
    root = _tree.read_catalog(catalog)
    base = os.path.dirname(root.self_href)
    nodes = []
    groups: dict[str, dict[str, Any]] = {}
    total = 0
    for depth, node, links in _tree.walk_catalog(root):
        items = [
            i for i in (_tree.resolve(link, node) for link in links) if isinstance(i, pystac.Item)
        ]
        nodes.append(
            {
                "depth": depth,
                "type": "Collection" if isinstance(node, pystac.Collection) else "Catalog",
                "id": node.id,
                "items": len(items),
                "path": os.path.relpath(node.self_href, base),
            }
        )
        for item in items:
            total += 1
            _add_item(groups.setdefault(item.collection_id or root.id, _new_group()), item)
    for group in groups.values():
        extent = pystac.Extent.from_items(group.pop("members"))
        start, end = extent.temporal.intervals[0]
        group["start"] = _stac.format_datetime(start) if start else None
        group["end"] = _stac.format_datetime(end) if end else None
        group["bbox"] = extent.spatial.bboxes[0] if group["bbox"] else None
        group["assets"] = dict(sorted(group["assets"].items()))
    return {
        "id": root.id,
        "title": root.title,
        "items": total,
        "tree": nodes,
        "collections": dict(sorted(groups.items())),
    }


def _new_group() -> dict[str, Any]:
    return {"items": 0, "start": None, "end": None, "bbox": False, "assets": {}, "members": []}


def _add_item(group: dict[str, Any], item: pystac.Item) -> None:
    """Count an item into its collection's group: its extent later, its bands now."""
    group["items"] += 1
    group["members"].append(item)
    group["bbox"] = group["bbox"] or item.bbox is not None
    for asset_key, asset in item.assets.items():
        bands = group["assets"].setdefault(asset_key, [])
        for band in asset.extra_fields.get("eo:bands", []):
            text = band.get("name", "?")
            if band.get("common_name"):
                text += f" ({band['common_name']})"
            if text not in bands:
                bands.append(text)


def format_description(summary: dict[str, Any]) -> str:
    """Render :func:`describe_catalog`'s result as indented text for a terminal.

    Examples
    --------
    >>> print(format_description({"id": "c", "title": None, "items": 0,
    ...     "tree": [{"depth": 0, "type": "Catalog", "id": "c", "items": 0,
    ...               "path": "catalog.json"}], "collections": {}}))
    catalog c: 0 item(s)
    Catalog c (0 items)
    """
    title = f" ({summary['title']})" if summary.get("title") else ""
    lines = [f"catalog {summary['id']}{title}: {summary['items']} item(s)"]
    for node in summary["tree"]:
        indent = "  " * node["depth"]
        lines.append(f"{indent}{node['type']} {node['id']} ({node['items']} items)")
    for key, group in summary["collections"].items():
        lines.append("")
        lines.append(f"collection {key}: {group['items']} item(s)")
        lines.append(f"  time: {group['start']} .. {group['end']}")
        if group["bbox"]:
            lines.append("  bbox: " + ", ".join(f"{v:g}" for v in group["bbox"]))
        lines.append("  assets:")
        for asset_key, bands in group["assets"].items():
            lines.append(f"    {asset_key}" + (f": {', '.join(bands)}" if bands else ""))
    return "\n".join(lines)
