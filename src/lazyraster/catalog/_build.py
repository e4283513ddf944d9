"""``build_catalog``: scan folders and write a self-contained static STAC catalog."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac
import rasterio

from lazyraster.catalog import _stac
from lazyraster.catalog._layout import (
    ASSET_FIELDS,
    TIME_FIELDS,
    check_layout,
    compile_pattern,
    group_id,
    layout_segments,
    parse_when,
)
from lazyraster.catalog._output import (
    build_lock,
    built_alike,
    clean_stale,
    existing_items,
    kept,
    unchanged,
    vanished,
    write_catalog,
)
from lazyraster.catalog._stac import ReadProblem
from lazyraster.catalog.formats import geotiff, netcdf, sentinel2
from lazyraster.errors import CatalogError, OutputExistsError

__all__ = ["BuildReport", "Problem", "build_catalog"]


@dataclass(frozen=True)
class Problem:
    """A source that was skipped, and why (one line).

    Examples
    --------
    >>> print(Problem("scans/x.tif", "not a readable raster   (truncated)"))
    scans/x.tif: not a readable raster (truncated)
    """

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

    Examples
    --------
    >>> from lazyraster.catalog import build_catalog
    >>> from lazyraster.testing import write_safe
    >>> safe = write_safe("products")
    >>> report = build_catalog("products", "stac")
    >>> report.added, report.n_items, report.ok
    (['S2A_MSIL2A_20230430T104621_N0509_R051_T31UFU_20230430T151154'], 1, True)
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
        asset_key = next((values[f] for f in ASSET_FIELDS if f in values), "data")
        try:
            group_when = parse_when(values) or when
        except ReadProblem as exc:
            problems.append(Problem(str(path), str(exc)))
            continue
        assert pattern is not None
        item_id = group_id(pattern, values)
        unit = groups.get((kind, item_id))
        if unit is None:
            extra = {k: v for k, v in values.items() if k not in (*ASSET_FIELDS, *TIME_FIELDS)}
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
        item = geotiff.geotiff_item(
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
    check_layout(layout)  # a bad template fails before anything is read
    if collection is not None:
        _stac.check_item_id(collection)
    when = _stac.parse_instant(datetime) if isinstance(datetime, str) else datetime
    netcdf_crs = netcdf.parse_crs(crs)
    catalog_id = id or out_path.name
    with build_lock(out_path, wait=wait):
        clean_stale(out_path)
        old_root, existing = existing_items(out_path)
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
            if old is not None and not rebuild and unchanged(old, unit.paths(), checksum):
                items[unit.item_id] = kept(old)
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
            if vanished(existing[item_id]):
                (report.pruned if prune else report.missing).append(item_id)
                if prune:
                    continue
            else:
                report.unchanged.append(item_id)
            items[item_id] = kept(existing[item_id])

        placed: list[tuple[tuple[str, ...], pystac.Item]] = []
        for item_id in sorted(items):
            item = items[item_id]
            try:
                placed.append((layout_segments(item, layout, collection), item))
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
        if not (same_items and built_alike(old_root, **settings)):
            write_catalog(placed, out_path, settings)
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
