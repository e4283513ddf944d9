"""Reading a static catalog back: its tree of catalogs, collections and items.

:func:`read_catalog` and :func:`walk_catalog` give pystac objects (the builder and
``describe`` use them); :func:`read_tree` gives the JSON documents as they are on
disk, for the validator, which must judge what is written rather than what pystac
makes of it. Both decode percent-encoded relative hrefs and visit each file once, so
a catalog that links to itself cannot make them loop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac

from lazyraster.catalog import _stac
from lazyraster.errors import CatalogError


@dataclass
class Node:
    """A catalog or collection, with the JSON files of its children and items."""

    path: Path
    data: dict[str, Any]
    children: list[Node] = field(default_factory=list)
    items: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)

    def walk(self) -> Iterator[tuple[int, Node]]:
        """Yield (depth, node) for this node and all below it, depth first."""
        stack = [(0, self)]
        while stack:
            depth, node = stack.pop()
            yield depth, node
            stack.extend((depth + 1, child) for child in reversed(node.children))

    def all_items(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Yield (path, item) for every item under this node."""
        for _, node in self.walk():
            yield from node.items


def is_url(href: str) -> bool:
    """True for ``scheme://...`` hrefs (``file://`` included)."""
    return "://" in href


def resolve_href(href: str, base: Path) -> str:
    """Absolute path (or URL) of ``href`` written in the JSON file ``base``."""
    if is_url(href):
        return href
    return os.path.normpath(base.parent / _stac.decode_href(href))


def root_file(catalog: str | os.PathLike[str]) -> Path:
    """``catalog.json`` of a catalog given as its folder or its root file."""
    path = Path(catalog)
    if path.is_dir():
        path = path / "catalog.json"
    if not path.is_file():
        raise CatalogError(
            f"no catalog at {catalog}: give a catalog folder or its catalog.json "
            "(build one with `lazyraster catalog build`)"
        )
    return path


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{path} is not a readable STAC JSON file ({exc})") from None


def read_tree(catalog: str | os.PathLike[str], problems: list[str] | None = None) -> Node:
    """Read a catalog and everything it links to as child or item.

    Links to files that are missing or unreadable raise :class:`CatalogError`, or are
    appended to ``problems`` (one line each) when a list is given.
    """
    root_path = root_file(catalog)
    seen: set[str] = set()

    def visit(path: Path, data: dict[str, Any]) -> Node:
        node = Node(path, data)
        for link in data.get("links", []):
            rel, href = link.get("rel"), link.get("href", "")
            if rel not in ("child", "item") or is_url(href):
                continue
            target = Path(resolve_href(href, path))
            if str(target) in seen:
                continue
            seen.add(str(target))
            try:
                loaded = _load(target)
            except CatalogError as exc:
                if problems is None:
                    raise
                problems.append(f"{path}: {rel} link {href!r}: {exc}")
                continue
            if rel == "child":
                node.children.append(visit(target, loaded))
            else:
                node.items.append((target, loaded))
        return node

    return visit(root_path, _load(root_path))


def read_catalog(catalog: str | os.PathLike[str]) -> pystac.Catalog:
    """The root catalog or collection, read with :class:`~._stac.CatalogIO`.

    Raises :class:`CatalogError` when the file is missing, unreadable, or a STAC Item or
    ItemCollection rather than a catalog.
    """
    path = root_file(catalog)
    try:
        root = pystac.read_file(str(path), stac_io=_stac.CatalogIO())
    except pystac.STACTypeError:
        kind = _load(path).get("type")
        raise CatalogError(
            f"{path} is {f'a {kind}' if kind else 'JSON without a STAC type'}, not a catalog "
            "or collection; give the catalog that holds its items (or build one with "
            "`lazyraster catalog build`)"
        ) from None
    except (OSError, ValueError, pystac.STACError) as exc:
        raise CatalogError(f"{path} is not a readable STAC catalog ({exc})") from None
    if not isinstance(root, pystac.Catalog):
        raise CatalogError(
            f"{path} is a STAC {type(root).__name__}, not a catalog or collection; give the "
            "catalog that links to it"
        )
    return root


def walk_catalog(
    root: pystac.Catalog,
) -> Iterator[tuple[int, pystac.Catalog, list[pystac.Link]]]:
    """Yield (depth, catalog, its item links) for ``root`` and every catalog below it.

    Depth first, children in link order. Item links are left for the caller to
    :func:`resolve` (or read as it needs). Each file is visited once (a link back up
    is not followed again). A child link to a missing or unreadable file raises
    :class:`CatalogError` naming it.

    Examples
    --------
    >>> import pystac
    >>> root = pystac.Catalog("root", "demo")
    >>> root.add_child(pystac.Catalog("sub", "below"))  # doctest: +ELLIPSIS
    <Link rel=child target=<Catalog id=sub>>
    >>> [(depth, cat.id) for depth, cat, _ in walk_catalog(root)]
    [(0, 'root'), (1, 'sub')]
    """
    seen: set[object] = {root.get_self_href() or id(root)}
    stack = [(0, root)]
    while stack:
        depth, node = stack.pop()
        items = list(_new_links(node.get_item_links(), seen))
        children = [resolve(link, node) for link in _new_links(node.get_child_links(), seen)]
        yield depth, node, items
        below = [(depth + 1, c) for c in children if isinstance(c, pystac.Catalog)]
        stack.extend(reversed(below))


def _new_links(links: list[pystac.Link], seen: set[object]) -> Iterator[pystac.Link]:
    for link in links:
        if link.is_resolved():  # in memory: the object itself, or where it was read from
            href = link.target.get_self_href() or id(link.target)
        else:
            href = link.get_absolute_href()
        if href in seen:
            continue
        seen.add(href)
        yield link


def resolve(link: pystac.Link, owner: pystac.Catalog) -> pystac.STACObject:
    """The object ``link`` of ``owner`` points to; :class:`CatalogError` if unreadable."""
    try:
        return link.resolve_stac_object(root=owner.get_root()).target
    except (OSError, ValueError, pystac.STACError) as exc:
        where = owner.get_self_href() or owner.id
        raise CatalogError(
            f"{where}: {link.rel} link {link.href!r} cannot be read ({exc})"
        ) from None
