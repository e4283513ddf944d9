"""``describe_catalog``: what a static catalog holds, at a glance."""

from __future__ import annotations

import os
from typing import Any

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
    >>> from lazyraster.catalog.samples import write_cog
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_cog(tmp / "data" / "20230430_red.tif", shape=(4, 4))
    >>> _ = build_catalog(tmp / "data", tmp / "stac", pattern="{date}_{band}.tif")
    >>> summary = describe_catalog(tmp / "stac")
    >>> summary["items"], summary["collections"]["stac"]["assets"]
    (1, {'red': ['red (red)']})
    """
    tree = _tree.read_tree(catalog)
    base = tree.path.parent
    nodes = []
    groups: dict[str, dict[str, Any]] = {}
    total = 0
    for depth, node in tree.walk():
        nodes.append(
            {
                "depth": depth,
                "type": node.data.get("type", "Catalog"),
                "id": node.data.get("id"),
                "items": len(node.items),
                "path": os.path.relpath(node.path, base),
            }
        )
        for _, item in node.items:
            total += 1
            key = item.get("collection") or tree.data.get("id", "")
            group = groups.setdefault(
                key, {"items": 0, "start": None, "end": None, "bbox": None, "assets": {}}
            )
            group["items"] += 1
            start, end = _stac.item_interval(item)
            key_time = _stac.parse_datetime
            group["start"] = min(filter(None, (group["start"], start)), key=key_time)
            group["end"] = max(filter(None, (group["end"], end)), key=key_time)
            if item.get("bbox"):
                boxes = [item["bbox"]] + ([group["bbox"]] if group["bbox"] else [])
                group["bbox"] = _stac.union_bbox(boxes)
            for asset_key, asset in item.get("assets", {}).items():
                bands = group["assets"].setdefault(asset_key, [])
                for band in asset.get("eo:bands", []):
                    text = band.get("name", "?")
                    if band.get("common_name"):
                        text += f" ({band['common_name']})"
                    if text not in bands:
                        bands.append(text)
    for group in groups.values():
        group["assets"] = dict(sorted(group["assets"].items()))
    return {
        "id": tree.data.get("id"),
        "title": tree.data.get("title"),
        "items": total,
        "tree": nodes,
        "collections": dict(sorted(groups.items())),
    }


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
