"""Writing a built catalog: the earlier one read back, the new tree, one swap under a lock."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import posixpath
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pystac

from lazyraster.catalog import _stac, _tree
from lazyraster.catalog._layout import FolderLayout, check_layout
from lazyraster.errors import CatalogError, OutputExistsError
from lazyraster.io import exchange, output_lock

log = logging.getLogger(__name__)

#: Field of the root ``catalog.json`` that marks a folder as made by :func:`build_catalog`;
#: only such a folder is ever replaced.
BUILDER_FIELD = "lazyraster:builder"
BUILDER = "lazyraster catalog build"
#: Field of the root ``catalog.json`` holding the ``layout`` it was built with.
LAYOUT_FIELD = "lazyraster:layout"


def existing_items(out: Path) -> tuple[pystac.Catalog | None, dict[str, dict[str, Any]]]:
    """The root and the items of the catalog at ``out`` (JSON: asset hrefs absolute).

    The items stay dicts until the build keeps them (:func:`kept`): a rebuild reads
    their files again and needs only their ids.

    Only a catalog this builder wrote is taken (its root carries :data:`BUILDER_FIELD`),
    and only when the folder holds nothing else: a rebuild replaces the whole folder.
    """
    if not out.exists():
        return None, {}
    if not out.is_dir():
        raise OutputExistsError(f"{out} is a file: give a folder as the catalog output")
    if not (out / "catalog.json").is_file():
        if any(out.iterdir()):
            raise OutputExistsError(
                f"{out} exists and is not a catalog: give an empty or new folder as output"
            )
        return None, {}
    root = _tree.read_catalog(out)
    if root.extra_fields.get(BUILDER_FIELD) != BUILDER:
        raise OutputExistsError(
            f"{out} holds a catalog that `lazyraster catalog build` did not write; "
            "a rebuild would replace it: move it away or build into another folder"
        )
    owned: set[str] = set()
    items: dict[str, dict[str, Any]] = {}
    io = _stac.CatalogIO()
    for _, node, links in _tree.walk_catalog(root):
        owned.add(os.path.normpath(node.self_href))
        for link in links:
            # read as JSON: links and self href are made anew, pystac need not resolve them
            href = link.get_absolute_href()
            try:
                doc = _stac.absolute_asset_hrefs(io.read_json(href), href)
                items[doc["id"]] = doc
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CatalogError(f"{href}: item of {out} cannot be read ({exc})") from None
            owned.add(os.path.normpath(href))
    for dirpath, _, filenames in os.walk(out):
        for name in filenames:
            if os.path.normpath(Path(dirpath) / name) not in owned:
                raise OutputExistsError(
                    f"{out} holds {Path(dirpath) / name}, which is not part of the catalog; "
                    "move it away or build into another folder (a rebuild replaces the folder)"
                )
    return root, items


def built_alike(
    root: pystac.Catalog | None,
    *,
    catalog_id: str,
    title: str | None,
    description: str,
    collection: str | None,
    layout: str | None,
) -> bool:
    """True when the catalog ``root`` was built with these settings.

    With the same items as well, a build would write the catalog that is already
    there, byte for byte.
    """
    if root is None:
        return False
    fields = (root.id, root.title, root.description, root.extra_fields.get(LAYOUT_FIELD))
    if fields != (catalog_id, title, description, layout):
        return False
    tops = [link.target for link in root.get_child_links() if link.is_resolved()]
    if collection is None:
        return not any(isinstance(top, pystac.Collection) for top in tops)
    return [(top.id, top.description) for top in tops] == [(collection, description)] and all(
        isinstance(top, pystac.Collection) for top in tops
    )


def kept(doc: dict[str, Any]) -> pystac.Item:
    """An item of the earlier catalog as a :class:`pystac.Item`, without its old links."""
    doc = {**doc, "links": []}
    doc.pop("collection", None)  # it may go into another collection, or none
    try:
        return pystac.Item.from_dict(doc, migrate=False, preserve_dict=False)
    except (ValueError, KeyError, TypeError, pystac.STACError) as exc:
        raise CatalogError(f"item {doc['id']} of the catalog is not valid STAC ({exc})") from None


def _asset_paths(doc: dict[str, Any]) -> set[str]:
    return {a["href"] for a in doc.get("assets", {}).values() if not _tree.is_url(a["href"])}


def unchanged(doc: dict[str, Any], paths: set[str], checksum: bool) -> bool:
    """True when the item's files are the same paths with the same sizes (and checksums)."""
    if _asset_paths(doc) != paths:
        return False
    for asset in doc["assets"].values():
        if _tree.is_url(asset["href"]):
            continue
        try:
            size = os.stat(asset["href"]).st_size
        except OSError:
            return False
        if size != asset.get("file:size"):
            return False
        if checksum and asset.get("file:checksum") != _stac.sha256_multihash(asset["href"]):
            return False
    return True


def vanished(doc: dict[str, Any]) -> bool:
    return any(not os.path.exists(p) for p in _asset_paths(doc))


def _assemble(
    placed: list[tuple[tuple[str, ...], pystac.Item]],
    staging: Path,
    *,
    catalog_id: str,
    title: str | None,
    description: str,
    collection: str | None,
    layout: str | None,
) -> pystac.Catalog:
    """The catalog tree under ``staging``: root, collection, a catalog per layout folder.

    Objects get their self hrefs from :class:`FolderLayout` as they are added (pystac's
    ``normalize_hrefs`` would walk the whole tree again); asset hrefs become relative
    to their item.
    """
    strategy = FolderLayout()
    root = pystac.Catalog(
        catalog_id,
        description,
        title=title,
        href=str(staging / "catalog.json"),
        extra_fields={BUILDER_FIELD: BUILDER, **({LAYOUT_FIELD: layout} if layout else {})},
        catalog_type=pystac.CatalogType.SELF_CONTAINED,
    )
    top: pystac.Catalog = root
    if collection:
        items = [item for _, item in placed]
        extent = (
            pystac.Extent.from_items(items)
            if items
            else pystac.Extent(
                pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
                pystac.TemporalExtent([[None, None]]),
            )
        )
        top = pystac.Collection(collection, description, extent, license="other")
        root.add_child(top, title=collection, strategy=strategy)
    nodes: dict[tuple[str, ...], pystac.Catalog] = {(): top}
    layout_names = check_layout(layout)

    def node(segments: tuple[str, ...]) -> pystac.Catalog:
        if segments not in nodes:
            parent = node(segments[:-1])
            name = layout_names[len(segments) - 1] if len(segments) <= len(layout_names) else ""
            nodes[segments] = pystac.Catalog(segments[-1], f"{name} {segments[-1]}".strip())
            parent.add_child(nodes[segments], title=segments[-1], strategy=strategy)
        return nodes[segments]

    for segments, item in sorted(placed, key=lambda x: (x[0], x[1].id)):
        node(segments).add_item(item, strategy=strategy)
        if isinstance(top, pystac.Collection) and segments:
            item.set_collection(top)
        folder = os.path.dirname(item.self_href)
        for asset in item.assets.values():
            if not _tree.is_url(asset.href):
                asset.href = _relative(asset.href, folder)
    return root


@functools.lru_cache(maxsize=4096)
def _relative_folder(folder: str, start: str) -> str:
    return Path(os.path.relpath(folder, start)).as_posix()


def _relative(path: str, start: str) -> str:
    """``path`` relative to the folder ``start``, as ``./x`` or ``../x``.

    The files of one folder share the computation for their folder.
    """
    folder, name = os.path.split(path)
    rel = posixpath.normpath(posixpath.join(_relative_folder(folder, start), name))
    return rel if rel.startswith("../") else f"./{rel}"


def write_catalog(
    placed: list[tuple[tuple[str, ...], pystac.Item]], out: Path, settings: dict[str, Any]
) -> None:
    """Write the catalog into a staging folder beside ``out``, then swap it in."""
    staging = out.with_name(f".{out.name}.building-{secrets.token_hex(8)}")
    catalog = _assemble(placed, staging, **settings)
    try:
        # staging is a sibling of out: hrefs relative to it are the hrefs of out
        catalog.save(pystac.CatalogType.SELF_CONTAINED, stac_io=_stac.CatalogIO())
        _swap(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def build_lock(out: Path, *, wait: bool) -> Iterator[None]:
    """Hold the lock of ``out`` (:func:`lazyraster.io.output_lock`) while building."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = output_lock(out)
    if not lock.acquire(blocking=False):
        holder = lock.holder()
        if not wait:
            raise CatalogError(
                f"another `lazyraster catalog build` (pid {holder}) is writing {out}; "
                "wait for it to finish, or build without --no-wait to queue behind it"
            )
        log.warning("waiting for the build by pid %s of %s to finish", holder, out)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def clean_stale(out: Path) -> None:
    """Remove what killed builds left next to ``out`` (called with the lock held).

    A build killed between the two renames of the fallback swap leaves no ``out`` but
    its old catalog: that one is put back first.
    """
    prefix = f".{out.name}."
    stale = sorted(p for p in out.parent.iterdir() if p.name.startswith(prefix))
    for path in stale:
        kind = path.name[len(prefix) :].split("-", 1)[0]
        if kind == "old" and not out.exists():
            os.replace(path, out)
        elif kind in ("building", "old"):
            shutil.rmtree(path, ignore_errors=True)


def _swap(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging``: at every instant ``out`` is the old or the new catalog.

    With an atomic exchange the old catalog ends up in ``staging`` and is removed; else
    two renames, and :func:`clean_stale` repairs a kill between them.
    """
    if not out.exists():
        os.replace(staging, out)
    elif exchange(staging, out):
        shutil.rmtree(staging)
    else:
        old = out.with_name(f".{out.name}.old-{secrets.token_hex(8)}")
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old)
