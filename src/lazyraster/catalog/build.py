"""``build_catalog``: scan folders and write a self-contained static STAC catalog."""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import string
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rasterio

from lazyraster.catalog import _stac, _tree, geotiff, netcdf, sentinel2
from lazyraster.catalog._stac import ReadProblem
from lazyraster.errors import CatalogError, OutputExistsError

__all__ = ["BuildReport", "Problem", "build_catalog"]

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


def _layout_value(item: dict[str, Any], name: str) -> str | None:
    props = item["properties"]
    if name in ("year", "month", "day"):
        when = _stac.parse_datetime(_stac.item_interval(item)[0])
        return {"year": f"{when.year:04d}", "month": f"{when.month:02d}", "day": f"{when.day:02d}"}[
            name
        ]
    if name == "id":
        return item["id"]
    if name == "collection":
        return item.get("collection")
    if name in props and props[name] is not None:
        return str(props[name])
    for key in sorted(props):
        local = key.split(":")[-1]
        if (local == name or local.endswith("_" + name)) and props[key] is not None:
            return str(props[key])
    return None


def _layout_segments(item: dict[str, Any], layout: str | None) -> tuple[str, ...]:
    if not layout:
        return ()
    values = {}
    for name in _layout_names(layout):
        value = _layout_value(item, name)
        if value is None:
            raise ReadProblem(f"has no value for ${{{name}}} of the layout {layout!r}")
        values[name] = value.replace("/", "-").replace(os.sep, "-")
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
                    if name.upper().endswith(".SAFE"):
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
    if unit.kind == "safe":
        assert unit.source is not None
        return sentinel2.safe_item(unit.source, checksum=checksum)
    files = dict(sorted(unit.files.items()))
    if unit.kind == "netcdf":
        return netcdf.netcdf_item(
            unit.item_id, files, fields=unit.fields, when=unit.when, checksum=checksum, crs=crs
        )
    return geotiff.raster_item(
        unit.item_id,
        files,
        fields=unit.fields,
        when=unit.when,
        band_names=band_names,
        checksum=checksum,
    )


def _existing_items(out: Path) -> dict[str, dict[str, Any]]:
    """Items of the catalog already at ``out`` (asset hrefs made absolute)."""
    if not out.exists():
        return {}
    if not out.is_dir():
        raise OutputExistsError(f"{out} is a file: give a folder as the catalog output")
    if not (out / "catalog.json").is_file():
        if any(out.iterdir()):
            raise OutputExistsError(
                f"{out} exists and is not a catalog: give an empty or new folder as output"
            )
        return {}
    tree = _tree.read_tree(out)
    owned = {os.path.normpath(n.path) for _, n in tree.walk()}
    items: dict[str, dict[str, Any]] = {}
    for path, item in tree.all_items():
        owned.add(os.path.normpath(path))
        for asset in item.get("assets", {}).values():
            asset["href"] = _tree.resolve_href(asset["href"], path)
        item["links"] = []
        items[item["id"]] = item
    for dirpath, _, filenames in os.walk(out):
        for name in filenames:
            if os.path.normpath(Path(dirpath) / name) not in owned:
                raise OutputExistsError(
                    f"{out} holds {Path(dirpath) / name}, which is not part of the catalog; "
                    "move it away or build into another folder (a rebuild replaces the folder)"
                )
    return items


def _asset_paths(item: dict[str, Any]) -> set[str]:
    return {a["href"] for a in item["assets"].values() if not _tree.is_url(a["href"])}


def _unchanged(item: dict[str, Any], paths: set[str], checksum: bool) -> bool:
    if _asset_paths(item) != paths:
        return False
    for asset in item["assets"].values():
        href = asset["href"]
        if _tree.is_url(href):
            continue
        try:
            size = os.stat(href).st_size
        except OSError:
            return False
        if size != asset.get("file:size") or (checksum and "file:checksum" not in asset):
            return False
    return True


def _vanished(item: dict[str, Any]) -> bool:
    return any(not os.path.exists(p) for p in _asset_paths(item))


def _link(rel: str, target: Path, start: Path, title: str | None = None) -> dict[str, Any]:
    href = Path(os.path.relpath(target, start.parent)).as_posix()
    link: dict[str, Any] = {
        "rel": rel,
        "href": href if href.startswith("../") else f"./{href}",
        "type": _stac.JSON_MEDIA_TYPE,
    }
    if title:
        link["title"] = title
    return link


def _relative_href(href: str, item_path: Path) -> str:
    if _tree.is_url(href):
        return href
    rel = Path(os.path.relpath(href, item_path.parent)).as_posix()
    return rel if rel.startswith("../") else f"./{rel}"


def _write(
    staging: Path,
    out: Path,
    items: list[tuple[tuple[str, ...], dict[str, Any]]],
    *,
    catalog_id: str,
    title: str | None,
    description: str,
    collection: str | None,
    layout_names: list[str],
) -> None:
    """Write the catalog tree under ``staging``, with hrefs as if it were at ``out``."""
    root = out / "catalog.json"
    base = out / collection if collection else out
    top = base / "collection.json" if collection else root
    nodes: dict[tuple[str, ...], dict[str, Any]] = {}

    def node(segments: tuple[str, ...]) -> dict[str, Any]:
        if segments not in nodes:
            path = base.joinpath(*segments, "catalog.json") if segments else top
            nodes[segments] = {"path": path, "children": set(), "items": []}
            if segments:
                node(segments[:-1])["children"].add(segments)
        return nodes[segments]

    node(())
    files: dict[Path, dict[str, Any]] = {}
    for segments, item in items:
        # items sit next to their catalog (fewer folders: faster on parallel file systems)
        folder = [item["id"]] if item["id"] in ("catalog", "collection") else []
        item_path = base.joinpath(*segments, *folder, f"{item['id']}.json")
        node(segments)["items"].append((item_path, item))
        doc = dict(item)
        doc.pop("collection", None)  # an item kept from an earlier run may have another
        doc["links"] = [
            _link("root", root, item_path, title),
            _link("parent", node(segments)["path"], item_path),
        ]
        if collection:
            doc["links"].append(_link("collection", top, item_path, None))
            doc["collection"] = collection
        doc["assets"] = {
            key: {**asset, "href": _relative_href(asset["href"], item_path)}
            for key, asset in item["assets"].items()
        }
        files[item_path] = doc
    for segments, entry in nodes.items():
        path = entry["path"]
        links = [_link("root", root, path, title)]
        if segments:
            parent = nodes[segments[:-1]]["path"]
            links.append(_link("parent", parent, path))
        elif collection:
            links.append(_link("parent", root, path, title))
        for child in sorted(entry["children"]):
            links.append(_link("child", nodes[child]["path"], path, child[-1]))
        for item_path, _ in sorted(entry["items"], key=lambda x: x[1]["id"]):
            links.append(_link("item", item_path, path))
        if segments:
            name = layout_names[len(segments) - 1] if len(segments) <= len(layout_names) else ""
            files[path] = {
                "type": "Catalog",
                "id": segments[-1],
                "stac_version": _stac.STAC_VERSION,
                "description": f"{name} {segments[-1]}".strip(),
                "links": links,
            }
        elif not collection:
            files[path] = {"links": links}  # the root catalog, completed below
        else:
            under = [i for _, i in items]
            starts, ends = (
                zip(*(_stac.item_interval(i) for i in under), strict=True) if under else ((), ())
            )
            files[path] = {
                "type": "Collection",
                "id": collection,
                "stac_version": _stac.STAC_VERSION,
                "stac_extensions": [],
                "description": description,
                "license": "other",
                "extent": {
                    "spatial": {
                        "bbox": [_stac.union_bbox(i["bbox"] for i in under)]
                        if under
                        else [[-180, -90, 180, 90]]
                    },
                    "temporal": {
                        "interval": [
                            [
                                min(starts, key=_stac.parse_datetime),
                                max(ends, key=_stac.parse_datetime),
                            ]
                        ]
                        if under
                        else [[None, None]]
                    },
                },
                "links": links,
            }
    root_doc: dict[str, Any] = {
        "type": "Catalog",
        "id": catalog_id,
        "stac_version": _stac.STAC_VERSION,
        "description": description,
    }
    if title:
        root_doc["title"] = title
    if collection:
        root_doc["links"] = [
            _link("root", root, root, title),
            _link("child", top, root, collection),
        ]
    else:
        root_doc["links"] = files.pop(root)["links"] if root in files else []
    files[root] = root_doc
    for path, doc in files.items():
        target = staging / path.relative_to(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        dump = _stac.dumps_compact if doc.get("type") == "Feature" else _stac.dumps
        target.write_text(dump(doc), encoding="utf-8")


def _swap(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging`` (two renames on the same file system)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old)
    else:
        os.replace(staging, out)


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
) -> BuildReport:
    """Scan files and folders and write a self-contained static STAC catalog.

    Sentinel-2 L2A ``.SAFE`` folders give one item each (one asset per band file and
    resolution); GeoTIFF/COG/JPEG2000 and netCDF files give one item each, or one item
    per group of files when ``pattern`` has a ``{band}`` or ``{variable}`` field. All
    hrefs are relative, the JSON is byte-identical for the same input, and an existing
    catalog at ``out`` is only replaced once the new one is complete.

    Parameters
    ----------
    sources : path or iterable of paths
        Files and folders to scan (folders recursively; hidden entries are skipped,
        and so are files of other kinds found in folders).
    out : path
        Catalog folder; ``out/catalog.json`` is the root. If it holds a catalog, the
        build is incremental: items whose files are unchanged (same paths and sizes)
        are kept as they were, without reading the files again.
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
        Write ``file:checksum`` (SHA2-256 multihash) for every asset; reads every byte.
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

    Returns
    -------
    BuildReport
        Item ids added, updated, unchanged, missing and pruned; skipped sources.

    Raises
    ------
    CatalogError
        With ``strict=True``, on the first bad source.
    OutputExistsError
        When ``out`` exists and is not a catalog (or holds files foreign to it).

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
    for source in source_paths:
        if not source.exists():
            raise FileNotFoundError(f"source {source} does not exist; check the path")
        if source == out_path or out_path in source.parents:
            raise ValueError(
                f"source {source} lies inside the catalog folder {out_path}; "
                "build the catalog into a folder of its own"
            )
    layout_names = _layout_names(layout)
    if collection is not None:
        _stac.check_item_id(collection)
    when = _stac.parse_datetime(datetime) if isinstance(datetime, str) else datetime
    netcdf_crs = netcdf.parse_crs(crs)
    catalog_id = id or out_path.name
    existing = _existing_items(out_path)
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
    items: dict[str, dict[str, Any]] = {}
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
            items[unit.item_id] = old
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
                items[unit.item_id] = result
                (report.updated if unit.item_id in existing else report.added).append(unit.item_id)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise

    for item_id in sorted(set(existing) - set(sources_of)):
        item = existing[item_id]
        if _vanished(item):
            (report.pruned if prune else report.missing).append(item_id)
            if prune:
                continue
        else:
            report.unchanged.append(item_id)
        items[item_id] = item

    placed: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    for item_id in sorted(items):
        item = items[item_id]
        try:
            placed.append((_layout_segments(item, layout), item))
        except ReadProblem as exc:
            fail_or_record(Problem(sources_of.get(item_id, item_id), str(exc)))
            for bucket in (report.added, report.updated, report.unchanged, report.missing):
                if item_id in bucket:
                    bucket.remove(item_id)

    staging = out_path.with_name(f".{out_path.name}.building-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        _write(
            staging,
            out_path,
            placed,
            catalog_id=catalog_id,
            title=title,
            description=description or f"Static STAC catalog of {len(placed)} item(s)",
            collection=collection,
            layout_names=layout_names,
        )
        _swap(staging, out_path)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    for bucket in (report.added, report.updated, report.unchanged, report.missing, report.pruned):
        bucket.sort()
    report.problems = problems
    return report
