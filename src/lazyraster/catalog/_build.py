"""``build_catalog``: scan folders and write a self-contained static STAC catalog."""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import logging
import os
import posixpath
import re
import secrets
import shutil
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac
import pystac.layout
import rasterio

from lazyraster.catalog import _stac, _tree
from lazyraster.catalog._stac import ReadProblem
from lazyraster.catalog.formats import geotiff, netcdf, sentinel2
from lazyraster.errors import CatalogError, OutputExistsError
from lazyraster.io import exchange, output_lock

__all__ = ["BuildReport", "Problem", "build_catalog"]

log = logging.getLogger(__name__)

#: Field of the root ``catalog.json`` that marks a folder as made by :func:`build_catalog`;
#: only such a folder is ever replaced.
BUILDER_FIELD = "lazyraster:builder"
BUILDER = "lazyraster catalog build"
#: Field of the root ``catalog.json`` holding the ``layout`` it was built with.
LAYOUT_FIELD = "lazyraster:layout"

_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%Y%m%dT%H%M%S", "%Y-%m-%dT%H:%M:%S", "%Y%j", "%Y-%m")
_ASSET_FIELDS = ("band", "variable")
_TIME_FIELDS = ("date", "datetime", "year")


@dataclass(frozen=True)
class Problem:
    """A source that was skipped, and why (one line)."""

    path: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", " ".join(self.message.split()))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class BuildReport:
    """What :func:`build_catalog` did.

    Attributes
    ----------
    out : Path
        The catalog folder.
    added, updated, unchanged : list of str
        Item ids that are new, that were read again because their files changed, and
        that were kept as they were.
    missing : list of str
        Items whose files have vanished, kept in the catalog (``prune=False``).
    pruned : list of str
        Items whose files have vanished, removed (``prune=True``).
    problems : list of Problem
        Sources that were skipped.
    """

    out: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def n_items(self) -> int:
        """Number of items in the catalog written."""
        return len(self.added) + len(self.updated) + len(self.unchanged) + len(self.missing)

    @property
    def ok(self) -> bool:
        """True when no source was skipped."""
        return not self.problems


@dataclass
class _Unit:
    """One future item: what to read, before reading it."""

    kind: str  # "safe", "raster" or "netcdf"
    item_id: str
    files: dict[str, Path]
    fields: dict[str, str] = field(default_factory=dict)
    when: Any = None
    source: Path | None = None

    def paths(self) -> set[str]:
        """Every file the item will point to (for incremental re-runs)."""
        if self.kind == "safe":
            assert self.source is not None
            found = {str(p) for p in sentinel2.band_files(self.source).values()}
            mtd = self.source / "MTD_MSIL2A.xml"
            if mtd.is_file():
                found.add(str(mtd))
            return found
        return {str(p) for p in self.files.values()}


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Turn a file-name pattern such as ``{date}_{band}.tif`` into a regular expression.

    Each ``{name}`` matches one or more characters other than ``/`` (as few as
    possible); everything else matches literally.

    Examples
    --------
    >>> compile_pattern("{date}_{band}.tif").fullmatch("20230430_B04.tif").groupdict()
    {'date': '20230430', 'band': 'B04'}
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
    if len(set(names) & set(_ASSET_FIELDS)) > 1:
        raise ValueError("a pattern may have {band} or {variable}, not both")
    return re.compile(regex)


def _group_id(pattern: str, values: dict[str, str]) -> str:
    """Item id of a group: the pattern without its asset field, filled in, no suffix."""
    template = re.sub(
        r"[_.\-]?\{(band|variable)\}|\{(band|variable)\}[_.\-]?", "", pattern, count=1
    )
    text = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
    for suffix in (*geotiff.RASTER_SUFFIXES, *netcdf.NETCDF_SUFFIXES):
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)]
    return text.strip("_.-") or "item"


def _parse_when(fields: dict[str, str]) -> Any:
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
                return _stac.parse_datetime(text)
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


def _layout_names(layout: str | None) -> list[str]:
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


def _layout_segments(
    item: pystac.Item, layout: str | None, collection: str | None
) -> tuple[str, ...]:
    if not layout:
        return ()
    values = {}
    for name in _layout_names(layout):
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


def _scan(
    sources: Sequence[Path], exclude: Sequence[Path], problems: list[Problem]
) -> tuple[list[Path], list[Path]]:
    """Return (raster and netCDF files, SAFE folders) under ``sources``."""
    files: list[Path] = []
    safes: list[Path] = []
    excluded = {os.path.normpath(p) for p in exclude}
    known = (*geotiff.RASTER_SUFFIXES, *netcdf.NETCDF_SUFFIXES)
    for source in sources:
        if sentinel2.is_safe(source):
            safes.append(source)
        elif source.is_dir():
            for dirpath, dirnames, filenames in os.walk(source):
                here = Path(dirpath)
                keep = []
                for name in sorted(dirnames):
                    sub = here / name
                    if name.startswith(".") or os.path.normpath(sub) in excluded:
                        continue
                    if sentinel2.is_safe(sub):
                        safes.append(sub)
                    else:
                        keep.append(name)
                dirnames[:] = keep
                files.extend(
                    here / n
                    for n in sorted(filenames)
                    if not n.startswith(".") and n.lower().endswith(known)
                )
        elif source.name.lower().endswith(known):
            files.append(source)
        else:
            problems.append(
                Problem(
                    str(source),
                    "unknown format: give .tif/.tiff/.jp2 or .nc files, or .SAFE folders",
                )
            )
    return sorted(set(files)), sorted(set(safes))


def _units(
    files: list[Path],
    safes: list[Path],
    pattern: str | None,
    when: Any,
    problems: list[Problem],
) -> list[_Unit]:
    units: list[_Unit] = [_Unit("safe", sentinel2.safe_id(p), {}, source=p) for p in safes]
    regex = compile_pattern(pattern) if pattern else None
    groups: dict[tuple[str, str], _Unit] = {}
    for path in files:
        kind = "netcdf" if path.name.lower().endswith(netcdf.NETCDF_SUFFIXES) else "raster"
        if regex is None:
            units.append(_Unit(kind, path.stem, {"data": path}, when=when, source=path))
            continue
        match = regex.fullmatch(path.name)
        if match is None:
            problems.append(Problem(str(path), f"does not match the pattern {pattern!r}"))
            continue
        values = match.groupdict()
        asset_key = next((values[f] for f in _ASSET_FIELDS if f in values), "data")
        try:
            group_when = _parse_when(values) or when
        except ReadProblem as exc:
            problems.append(Problem(str(path), str(exc)))
            continue
        assert pattern is not None
        item_id = _group_id(pattern, values)
        unit = groups.get((kind, item_id))
        if unit is None:
            extra = {k: v for k, v in values.items() if k not in (*_ASSET_FIELDS, *_TIME_FIELDS)}
            unit = _Unit(kind, item_id, {}, fields=extra, when=group_when, source=path)
            groups[(kind, item_id)] = unit
            units.append(unit)
        if asset_key in unit.files:
            problems.append(
                Problem(str(path), f"a second file for asset {asset_key!r} of item {item_id!r}")
            )
            continue
        unit.files[asset_key] = path
    return units


def _read_unit(
    unit: _Unit, checksum: bool, band_names: Sequence[str] | None, crs: Any = None
) -> dict[str, Any]:
    _stac.check_item_id(unit.item_id)
    files = dict(sorted(unit.files.items()))
    if unit.kind == "safe":
        assert unit.source is not None
        item = sentinel2.safe_item(unit.source, checksum=checksum)
    elif unit.kind == "netcdf":
        item = netcdf.netcdf_item(
            unit.item_id, files, fields=unit.fields, when=unit.when, checksum=checksum, crs=crs
        )
    else:
        item = geotiff.raster_item(
            unit.item_id,
            files,
            fields=unit.fields,
            when=unit.when,
            band_names=band_names,
            checksum=checksum,
        )
    return item


def _shared_crs(item: pystac.Item) -> None:
    """Give an item whose assets share a CRS without EPSG code that CRS as a property."""
    if item.properties.get("proj:code") is not None:
        return
    crs = {
        (asset.extra_fields.get("proj:wkt2"), str(asset.extra_fields.get("proj:projjson")))
        for asset in item.assets.values()
        if "proj:shape" in asset.extra_fields
    }
    if len(crs) != 1 or None in next(iter(crs)):
        return
    asset = next(a for a in item.assets.values() if "proj:wkt2" in a.extra_fields)
    for key in ("proj:code", "proj:wkt2", "proj:projjson"):
        item.properties[key] = asset.extra_fields.get(key)


def _existing_items(out: Path) -> tuple[pystac.Catalog | None, dict[str, dict[str, Any]]]:
    """The root and the items of the catalog at ``out`` (JSON: asset hrefs absolute).

    The items stay dicts until the build keeps them (:func:`_kept`): a rebuild reads
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


def _built_alike(
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


def _kept(doc: dict[str, Any]) -> pystac.Item:
    """An item of the earlier catalog as a :class:`pystac.Item`, without its old links."""
    doc = {**doc, "links": []}
    doc.pop("collection", None)  # it may go into another collection, or none
    try:
        return pystac.Item.from_dict(doc, migrate=False, preserve_dict=False)
    except (ValueError, KeyError, TypeError, pystac.STACError) as exc:
        raise CatalogError(f"item {doc['id']} of the catalog is not valid STAC ({exc})") from None


def _asset_paths(doc: dict[str, Any]) -> set[str]:
    return {a["href"] for a in doc.get("assets", {}).values() if not _tree.is_url(a["href"])}


def _unchanged(doc: dict[str, Any], paths: set[str], checksum: bool) -> bool:
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


def _vanished(doc: dict[str, Any]) -> bool:
    return any(not os.path.exists(p) for p in _asset_paths(doc))


class _Layout(pystac.layout.HrefLayoutStrategy):
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

    Objects get their self hrefs from :class:`_Layout` as they are added (pystac's
    ``normalize_hrefs`` would walk the whole tree again); asset hrefs become relative
    to their item.
    """
    strategy = _Layout()
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
    layout_names = _layout_names(layout)

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


def _write(
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
def _build_lock(out: Path, *, wait: bool) -> Iterator[None]:
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


def _clean_stale(out: Path) -> None:
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
    two renames, and :func:`_clean_stale` repairs a kill between them.
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


def build_catalog(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    id: str | None = None,
    title: str | None = None,
    description: str | None = None,
    collection: str | None = None,
    layout: str | None = None,
    pattern: str | None = None,
    datetime: str | _dt.datetime | None = None,
    bands: Sequence[str] | None = None,
    crs: str | None = None,
    checksum: bool = False,
    prune: bool = False,
    strict: bool = False,
    rebuild: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    wait: bool = True,
) -> BuildReport:
    """Scan files and folders and write a self-contained static STAC catalog.

    Sentinel-2 L2A ``.SAFE`` folders give one item each (one asset per band file and
    resolution); GeoTIFF/COG/JPEG2000 and netCDF files give one item each, or one item
    per group of files when ``pattern`` has a ``{band}`` or ``{variable}`` field. All
    hrefs are relative (percent-encoded where a path needs it, so that the catalog
    also works over HTTP), the JSON is byte-identical for the same input, and an
    existing catalog at ``out`` is only replaced once the new one is complete, in one
    atomic exchange where the file system allows it.

    One build per output folder runs at a time (an advisory ``fcntl.flock`` lock on
    ``.<out>.lock`` next to ``out``); a second one waits or, with ``wait=False``,
    fails. Staging folders of killed builds (``.<out>.building-<random>``) are
    removed by the next build.

    Parameters
    ----------
    sources : path or iterable of paths
        Files and folders to scan (folders recursively; hidden entries are skipped,
        and so are files of other kinds found in folders).
    out : path
        Catalog folder; ``out/catalog.json`` is the root. If it holds a catalog that
        this function wrote (its root says so), the build is incremental: items whose
        files are unchanged (same paths and sizes; with ``checksum``, same checksums)
        are kept as they were, without reading the files again. Any other folder that
        is not empty is refused, never replaced.
    id, title, description : str, optional
        Of the root catalog (``id`` defaults to the folder name of ``out``).
    collection : str, optional
        Put the items in a Collection of this id (``out/<collection>/collection.json``)
        with its extent computed from the items.
    layout : str, optional
        Sub-catalog template such as ``"${year}/${tile}"`` or ``"${region}"``. Fields:
        ``year``, ``month``, ``day`` (from the item time), ``id``, ``collection``, the
        pattern's fields and any item property (``tile`` finds ``s2:mgrs_tile``).
    pattern : str, optional
        File-name pattern such as ``"{date}_{band}.tif"`` or
        ``"daymet_v4_daily_{region}_{variable}_{year}.nc"``. Files with the same
        fields except ``{band}``/``{variable}`` become one item with one asset per
        band/variable; ``{date}``/``{datetime}``/``{year}`` give the time; other
        fields become item properties.
    datetime : str or datetime, optional
        Time of items that get none from their files or the pattern.
    bands : sequence of str, optional
        Band names of every GeoTIFF, in band order (default: the band descriptions).
    crs : str, optional
        CRS (``EPSG:XXXX``, WKT or PROJ text) of netCDF files without a CF grid mapping.
    checksum : bool
        Write ``file:checksum`` (SHA2-256 multihash) for every asset; reads every byte,
        also of items kept from an earlier build, so that a stale checksum is renewed.
    prune : bool
        Remove items whose files have vanished (by default they are kept and reported).
    strict : bool
        Raise :class:`~lazyraster.errors.CatalogError` at the first bad source instead
        of skipping it.
    rebuild : bool
        Read every file again, even when an existing item looks unchanged.
    workers : int, optional
        Threads reading file headers (default: 4 per available core, at most 16).
    progress : callable, optional
        Called as ``progress(done, total)`` after each item is read.
    wait : bool
        When another build is writing ``out``: wait for it (logging a warning that
        says so), then build on its result; with False, raise ``CatalogError``.

    Returns
    -------
    BuildReport
        Item ids added, updated, unchanged, missing and pruned; skipped sources.

    Raises
    ------
    CatalogError
        With ``strict=True``, on the first bad source; with ``wait=False``, when
        another build holds the lock of ``out``.
    OutputExistsError
        When ``out`` exists and is not a catalog this function wrote (or holds files
        foreign to it), is a symbolic link, or a link sits where its lock file goes.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, rasterio
    >>> from rasterio.transform import from_origin
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> with rasterio.open(tmp / "20230430_B04.tif", "w", driver="GTiff", width=4, height=4,
    ...                    count=1, dtype="uint16", crs="EPSG:32631",
    ...                    transform=from_origin(600000, 5700000, 10, 10)) as dst:
    ...     dst.write(np.ones((1, 4, 4), dtype="uint16"))
    >>> report = build_catalog(tmp, tmp / "stac", pattern="{date}_{band}.tif", layout="${year}")
    >>> report.added, report.ok
    (['20230430'], True)
    >>> sorted(p.relative_to(tmp / "stac").as_posix() for p in (tmp / "stac").rglob("*.json"))
    ['2023/20230430.json', '2023/catalog.json', 'catalog.json']
    """
    if isinstance(sources, str | os.PathLike):
        sources = [sources]
    sources = list(sources)
    for source in sources:
        if "://" in str(source):
            raise ValueError(
                f"source {source} is a URL; only local folders are scanned: mount or copy "
                "the files, build over the local folder, then point hrefs elsewhere if needed"
            )
    source_paths = [Path(os.path.abspath(s)) for s in sources]
    out_path = Path(os.path.abspath(out))
    if out_path.is_symlink():
        raise OutputExistsError(
            f"catalog folder {out_path} is a symbolic link (to {os.path.realpath(out_path)}); "
            "a build replaces its folder, so give the folder itself as the output"
        )
    if "#" in str(out_path) or "?" in str(out_path):
        raise ValueError(
            f"catalog folder {out_path} has '#' or '?' in its path, which STAC readers "
            "(pystac among them) take for a part of a URL: choose a folder path without them"
        )
    for source in source_paths:
        if not source.exists():
            raise FileNotFoundError(f"source {source} does not exist; check the path")
        if source == out_path or out_path in source.parents:
            raise ValueError(
                f"source {source} lies inside the catalog folder {out_path}; "
                "build the catalog into a folder of its own"
            )
    _layout_names(layout)  # a bad template fails before anything is read
    if collection is not None:
        _stac.check_item_id(collection)
    when = _stac.parse_datetime(datetime) if isinstance(datetime, str) else datetime
    netcdf_crs = netcdf.parse_crs(crs)
    catalog_id = id or out_path.name
    with _build_lock(out_path, wait=wait):
        _clean_stale(out_path)
        old_root, existing = _existing_items(out_path)
        report = BuildReport(out_path)
        problems: list[Problem] = []

        def fail_or_record(problem: Problem) -> None:
            if strict:
                raise CatalogError(f"{problem} (run without --strict to skip bad files)")
            problems.append(problem)

        scan_problems: list[Problem] = []
        staging_prefix = f".{out_path.name}."
        exclude = [out_path, *(p for p in out_path.parent.glob(staging_prefix + "*"))]
        files, safes = _scan(source_paths, exclude, scan_problems)
        unit_problems: list[Problem] = []
        units = _units(files, safes, pattern, when, unit_problems)
        for problem in scan_problems + unit_problems:
            fail_or_record(problem)

        to_read: list[_Unit] = []
        items: dict[str, pystac.Item] = {}
        sources_of: dict[str, str] = {}
        for unit in sorted(units, key=lambda u: (u.item_id, str(u.source))):
            source = str(unit.source)
            if unit.item_id in sources_of:
                fail_or_record(
                    Problem(
                        source,
                        f"item id {unit.item_id!r} is already used by {sources_of[unit.item_id]}",
                    )
                )
                continue
            sources_of[unit.item_id] = source
            old = existing.get(unit.item_id)
            if old is not None and not rebuild and _unchanged(old, unit.paths(), checksum):
                items[unit.item_id] = _kept(old)
                report.unchanged.append(unit.item_id)
            else:
                to_read.append(unit)

        n_workers = workers or min(16, 4 * len(os.sched_getaffinity(0)))

        def read(unit: _Unit) -> dict[str, Any] | Problem:
            try:
                # no directory listing per file opened (sidecar files are not looked for)
                with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
                    return _read_unit(unit, checksum, bands, netcdf_crs)
            except ReadProblem as exc:
                return Problem(str(unit.source), str(exc))
            except Exception as exc:  # an unreadable file must not stop the scan
                return Problem(str(unit.source), f"unreadable ({type(exc).__name__}: {exc})")

        read_now: dict[str, dict[str, Any]] = {}
        with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
            try:
                for done, (unit, result) in enumerate(
                    zip(to_read, pool.map(read, to_read), strict=True), start=1
                ):
                    if progress is not None:
                        progress(done, len(to_read))
                    if isinstance(result, Problem):
                        fail_or_record(result)
                        continue
                    read_now[unit.item_id] = result
                    (report.updated if unit.item_id in existing else report.added).append(
                        unit.item_id
                    )
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

        # after the readers, not beside them: pure Python would contend for the GIL
        for item_id, doc in read_now.items():
            items[item_id] = pystac.Item.from_dict(doc, migrate=False, preserve_dict=False)
            _shared_crs(items[item_id])
        for item_id in sorted(set(existing) - set(sources_of)):
            if _vanished(existing[item_id]):
                (report.pruned if prune else report.missing).append(item_id)
                if prune:
                    continue
            else:
                report.unchanged.append(item_id)
            items[item_id] = _kept(existing[item_id])

        placed: list[tuple[tuple[str, ...], pystac.Item]] = []
        for item_id in sorted(items):
            item = items[item_id]
            try:
                placed.append((_layout_segments(item, layout, collection), item))
            except ReadProblem as exc:
                fail_or_record(Problem(sources_of.get(item_id, item_id), str(exc)))
                for bucket in (report.added, report.updated, report.unchanged, report.missing):
                    if item_id in bucket:
                        bucket.remove(item_id)

        settings: dict[str, Any] = {
            "catalog_id": catalog_id,
            "title": title,
            "description": description or f"Static STAC catalog of {len(placed)} item(s)",
            "collection": collection,
            "layout": layout,
        }
        same_items = not (report.added or report.updated or report.pruned) and set(
            item.id for _, item in placed
        ) == set(existing)
        # else the catalog there is the one this build would write, byte for byte
        if not (same_items and _built_alike(old_root, **settings)):
            _write(placed, out_path, settings)
        for bucket in (
            report.added,
            report.updated,
            report.unchanged,
            report.missing,
            report.pruned,
        ):
            bucket.sort()
        report.problems = problems
    return report
