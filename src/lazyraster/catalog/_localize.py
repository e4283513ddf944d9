"""``localize_catalog``: copy chosen assets next to the computation and point hrefs there.

The catalog is read, and its items rewritten, with pystac. A catalog is untrusted
input: every local file it names must lie under the catalog's folder or a root the user
allows (see :mod:`lazyraster._paths`), and every copy is written the way the writers
write (a locked temporary with an unpredictable name, committed by a rename; see
:mod:`lazyraster.io._atomic`).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO

import fsspec
import pystac

from lazyraster import _paths
from lazyraster.catalog._stac import SHA256_MULTIHASH_PREFIX
from lazyraster.errors import CatalogError
from lazyraster.io import replacing

__all__ = ["LocalizeReport", "localize_catalog"]

_BLOCK = 1 << 20
_SHOWN = 5  # offending hrefs named in one error


@dataclass
class LocalizeReport:
    """Result of :func:`localize_catalog`.

    Attributes
    ----------
    copied : list of str
        Files copied in this run.
    skipped : list of str
        Files already in place and verified (a resumed run).
    failed : list of str
        One line per asset that could not be copied or verified; its href is unchanged.

    Examples
    --------
    >>> report = LocalizeReport(copied=["tmin.nc"], failed=["tmax.nc: 404 Not Found"])
    >>> report.ok
    False
    """

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every chosen asset is local and verified."""
        return not self.failed


@dataclass
class _Task:
    item: pystac.Item
    key: str
    href: str
    source: str  # absolute local path or remote URL
    local: bool
    dest: str = ""


class _Mismatch(Exception):
    """A copy does not match the asset's ``file:size`` / ``file:checksum``."""


def _expected(asset: pystac.Asset) -> tuple[int | None, str | None]:
    """The asset's ``file:size`` and SHA2-256 ``file:checksum`` (None when absent)."""
    size = asset.extra_fields.get("file:size")
    checksum = asset.extra_fields.get("file:checksum")
    if not (isinstance(checksum, str) and checksum.startswith(SHA256_MULTIHASH_PREFIX)):
        checksum = None
    return (size if isinstance(size, int) else None), checksum


def _digest(f: IO[bytes]) -> tuple[int, str]:
    """Size and SHA2-256 multihash of what is left to read in ``f``."""
    h, size = hashlib.sha256(), 0
    while block := f.read(_BLOCK):
        h.update(block)
        size += len(block)
    return size, SHA256_MULTIHASH_PREFIX + h.hexdigest()


def _file_digest(path: str) -> tuple[int, str]:
    with open(path, "rb") as f:
        return _digest(f)


def _open_source(task: _Task, roots: Sequence[str]) -> tuple[IO[bytes], int]:
    """The source opened for reading, and the mode its copy gets (never wider)."""
    if not task.local:
        return fsspec.open(task.source, "rb").open(), 0o666
    fd = _paths.open_within(task.source, roots)
    mode = stat.S_IMODE(os.fstat(fd).st_mode) & 0o666
    return os.fdopen(fd, "rb"), mode


def _in_place(task: _Task, roots: Sequence[str]) -> bool:
    """True if ``task.dest`` already holds the asset: its size and checksum match.

    The expected size and checksum are the asset's ``file:size`` and ``file:checksum``,
    else those of a local source (read and hashed here); a remote source without a
    checksum is copied again, since reading it costs as much as copying it.
    """
    if os.path.islink(task.dest) or not os.path.isfile(task.dest):
        return False
    size, checksum = _expected(task.item.assets[task.key])
    if checksum is None:
        if not task.local:
            return False
        src, _ = _open_source(task, roots)
        with src:
            source_size, checksum = _digest(src)
        size = source_size if size is None else size
    actual_size, actual = _file_digest(task.dest)
    return actual == checksum and (size is None or actual_size == size)


def _copy(task: _Task, roots: Sequence[str]) -> tuple[str, str | None]:
    """Copy one asset; return ("copied" | "skipped" | "failed", why)."""
    try:
        if task.local and os.path.realpath(task.source) == os.path.realpath(task.dest):
            size, checksum = _expected(task.item.assets[task.key])
            actual_size, actual = _file_digest(task.dest)  # the href is already the copy
            if checksum in (None, actual) and size in (None, actual_size):
                return "skipped", None
            return "failed", f"the local copy {task.dest} does not match file:size/checksum"
        if _in_place(task, roots):
            return "skipped", None
        os.makedirs(os.path.dirname(task.dest), exist_ok=True)
        size, checksum = _expected(task.item.assets[task.key])
        src, mode = _open_source(task, roots)
        with src, replacing(task.dest) as tmp:
            fd = os.open(tmp.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            h, written = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                while block := src.read(_BLOCK):
                    out.write(block)
                    h.update(block)
                    written += len(block)
            actual = SHA256_MULTIHASH_PREFIX + h.hexdigest()
            if checksum is not None and actual != checksum:
                raise _Mismatch(f"checksum {actual} differs from {checksum}")
            if size is not None and written != size:
                raise _Mismatch(f"size {written} differs from file:size {size}")
        return "copied", None
    except _Mismatch as exc:
        return "failed", f"copy of {task.source} does not verify: {exc}"
    except Exception as exc:  # network and file-system errors of any fsspec backend
        return "failed", f"cannot copy {task.source}: {type(exc).__name__}: {exc}"


def _read_root(catalog: str | os.PathLike[str]) -> tuple[pystac.Catalog, str]:
    path = os.fspath(catalog)
    if os.path.isdir(path):
        path = os.path.join(path, "catalog.json")
    if not os.path.isfile(path):
        raise CatalogError(
            f"no catalog at {catalog}: give a catalog folder or its catalog.json "
            "(build one with `lazyraster catalog build`)"
        )
    try:
        root = pystac.read_file(os.path.abspath(path))
    except Exception as exc:  # pystac raises JSON, type and I/O errors alike
        raise CatalogError(f"{path} is not a readable STAC catalog ({exc})") from None
    if not isinstance(root, pystac.Catalog):
        raise CatalogError(f"{path} is a STAC {type(root).__name__}, not a catalog or collection")
    return root, os.path.dirname(os.path.abspath(path))


def _items(root: pystac.Catalog) -> Iterator[pystac.Item]:
    """Every item under ``root``, each catalog and item once (a link cycle ends there)."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        href = node.get_self_href() or str(id(node))
        if href in seen:
            continue
        seen.add(href)
        try:
            for item in node.get_items():
                item_href = item.get_self_href() or f"{href}#{item.id}"
                if item_href not in seen:
                    seen.add(item_href)
                    yield item
            stack.extend(reversed(list(node.get_children())))
        except Exception as exc:  # a linked file that is missing or not STAC
            raise CatalogError(f"cannot read the catalog under {href}: {exc}") from None


def _source(item: pystac.Item, href: str) -> tuple[str, bool]:
    """Absolute path (``True``) or URL (``False``) of an asset href of ``item``."""
    base = os.path.dirname(item.get_self_href() or "")
    try:
        path = _paths.local_path(href, base)
    except ValueError as exc:
        raise CatalogError(f"item {item.id!r}: {exc}") from None
    return (path, True) if path is not None else (href, False)


def _name(task: _Task) -> str:
    raw = task.source.split("?", 1)[0].rstrip("/")
    return os.path.basename(raw) if task.local else posixpath.basename(raw)


def _destinations(tasks: list[_Task], to: str) -> None:
    """Give every task its own destination, deterministically.

    ``to/<item id>/<file name>``; where two different sources would share that,
    ``to/<item id>/<asset key>/<file name>``; where they still would (items with one id),
    the file name gets a short hash of the source.
    """
    levels: list[Callable[[_Task], str]] = [
        lambda t: os.path.join(to, t.item.id, _name(t)),
        lambda t: os.path.join(to, t.item.id, t.key, _name(t)),
        lambda t: os.path.join(
            to,
            t.item.id,
            t.key,
            "{0}-{2}{1}".format(
                *os.path.splitext(_name(t)), hashlib.sha256(t.source.encode()).hexdigest()[:8]
            ),
        ),
    ]
    pending = tasks
    for level in levels:
        by_dest: dict[str, set[str]] = {}
        for task in pending:
            task.dest = os.path.normpath(level(task))
            by_dest.setdefault(task.dest, set()).add(task.source)
        pending = [t for t in pending if len(by_dest[t.dest]) > 1]
    for task in tasks:
        name = _name(task)
        if name in {"", ".", ".."} or not _paths.within(task.dest, [to]):
            raise CatalogError(
                f"asset {task.href!r} of item {task.item.id!r} would be copied to "
                f"{task.dest}, outside {to}; fix the item id or the href before localizing"
            )


def _check_sources(tasks: list[_Task], roots: Sequence[str]) -> None:
    """Refuse the run if a local source lies outside every allowed root."""
    outside = [
        t
        for t in tasks
        if t.local and os.path.realpath(t.source) != os.path.realpath(t.dest)
        if not _paths.within(t.source, roots)
    ]
    if not outside:
        return
    shown = "; ".join(
        f"item {t.item.id!r} asset {t.key!r}: {t.href!r} -> {os.path.realpath(t.source)}"
        for t in outside[:_SHOWN]
    )
    more = f" (and {len(outside) - _SHOWN} more)" if len(outside) > _SHOWN else ""
    raise CatalogError(
        f"{len(outside)} asset href(s) point outside the catalog folder and the allowed "
        f"roots ({', '.join(roots)}): {shown}{more}. Nothing was copied. If you trust "
        "those folders, name them with allow_roots=[...] (CLI: --allow-root DIR)"
    )


def _check_items(tasks: list[_Task], folder: str) -> None:
    """Refuse the run if an item to rewrite is not a local file under the catalog folder.

    Items are rewritten in place: one that a catalog links from elsewhere (an absolute
    path, ``../``, a link out, a URL) is someone else's file.
    """
    outside = {}
    for task in tasks:
        href = task.item.get_self_href() or ""
        path = _paths.local_path(href, folder) if href and "::" not in href else None
        if path is None or not _paths.within(path, [folder]):
            outside.setdefault(href, task.item.id)
    if not outside:
        return
    shown = "; ".join(f"item {i!r} at {h}" for h, i in list(outside.items())[:_SHOWN])
    more = f" (and {len(outside) - _SHOWN} more)" if len(outside) > _SHOWN else ""
    raise CatalogError(
        f"{len(outside)} item(s) lie outside the catalog folder {folder}, and localize "
        f"rewrites items in place: {shown}{more}. Nothing was copied. Copy the items "
        "into the catalog folder first"
    )


def _relative(dest: str, item: pystac.Item) -> str:
    rel = os.path.relpath(dest, os.path.dirname(item.get_self_href() or "")).replace(os.sep, "/")
    return rel if rel.startswith("../") else f"./{rel}"


def localize_catalog(
    catalog: str | os.PathLike[str],
    *,
    assets: Sequence[str],
    to: str | os.PathLike[str],
    allow_roots: Sequence[str | os.PathLike[str]] = (),
    workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> LocalizeReport:
    """Copy chosen assets of every item to a local folder and rewrite their hrefs.

    Files are read from wherever the hrefs point (local paths, ``http(s)://`` or any
    fsspec URL) and written to ``to/<item id>/<file name>`` in parallel threads;
    two different files that would share a name there go to
    ``to/<item id>/<asset key>/<file name>`` instead. Local files must lie, once every
    ``..`` and symbolic link is resolved, under the catalog's folder or one of
    ``allow_roots``; otherwise nothing is copied. Copies get the source's permissions
    at most (less the umask). A copy is checked against ``file:checksum`` (SHA2-256
    multihash) and ``file:size`` when the asset has them; a failed check leaves the
    href unchanged. A file already at the destination is kept when its size and
    checksum match the asset's (or, without them, those of a local source), so an
    interrupted run can simply be started again. Items are read and saved with pystac,
    with relative hrefs.

    Parameters
    ----------
    catalog : path
        Catalog folder or its ``catalog.json``.
    assets : sequence of str
        Asset keys to copy, e.g. ``["tmin", "tmax"]``.
    to : path
        Destination folder (created if needed).
    allow_roots : sequence of path
        Folders besides the catalog's own that local hrefs may point into, e.g. the
        data folder a catalog was built over.
    workers : int
        Parallel copies.
    progress : callable, optional
        Called as ``progress(done, total)`` after each file.

    Returns
    -------
    LocalizeReport
        Files copied, skipped (already verified) and failed.

    Raises
    ------
    CatalogError
        When no item has one of the asset keys, a local href points outside the allowed
        roots (``../../etc/passwd``, an absolute path, ``file://``, a link out), an item
        to rewrite lies outside the catalog folder, or a destination would fall outside
        ``to``; nothing is copied then.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from lazyraster.catalog import build_catalog
    >>> from lazyraster.testing import write_sample_cog
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_sample_cog(tmp / "data" / "20230430_red.tif", shape=(4, 4))
    >>> _ = build_catalog(tmp / "data", tmp / "stac", pattern="{date}_{band}.tif")
    >>> report = localize_catalog(
    ...     tmp / "stac", assets=["red"], to=tmp / "local", allow_roots=[tmp / "data"]
    ... )
    >>> [pathlib.Path(p).relative_to(tmp).as_posix() for p in report.copied]
    ['local/20230430/20230430_red.tif']
    """
    if isinstance(assets, str):
        assets = [assets]
    wanted = list(dict.fromkeys(a.strip() for a in assets if a.strip()))
    if not wanted:
        raise ValueError("give at least one asset key to localize, e.g. assets=['tmin']")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    for extra in allow_roots:
        if not os.path.isdir(extra):
            raise ValueError(f"allowed root {os.fspath(extra)} is not a folder")
    to_dir = os.path.abspath(to)
    root, folder = _read_root(catalog)
    roots = [os.path.realpath(r) for r in (folder, *allow_roots)]
    tasks: list[_Task] = []
    seen_keys: set[str] = set()
    for item in _items(root):
        seen_keys |= set(item.assets)
        for key in wanted:
            asset = item.assets.get(key)
            if asset is not None:
                source, local = _source(item, asset.href)
                tasks.append(_Task(item, key, asset.href, source, local))
    missing = [k for k in wanted if k not in seen_keys]
    if missing:
        raise CatalogError(f"no item has the asset(s) {missing}; choose among {sorted(seen_keys)}")
    _destinations(tasks, to_dir)
    _check_items(tasks, folder)
    _check_sources(tasks, roots)
    report = LocalizeReport()
    done_items: dict[str, pystac.Item] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = pool.map(lambda t: _copy(t, roots), tasks)
        for done, (task, (status, why)) in enumerate(zip(tasks, outcomes, strict=True), start=1):
            if progress is not None:
                progress(done, len(tasks))
            if status == "failed":
                report.failed.append(f"{task.item.get_self_href()}: asset {task.key!r}: {why}")
                continue
            (report.copied if status == "copied" else report.skipped).append(task.dest)
            task.item.assets[task.key].href = _relative(task.dest, task.item)
            done_items[task.item.get_self_href()] = task.item
    for href, item in done_items.items():  # atomically: another run may read it meanwhile
        with replacing(href) as tmp:
            item.save_object(include_self_link=False, dest_href=tmp.path)
    return report
