"""``localize_catalog``: copy chosen assets next to the computation and point hrefs there."""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from lazyraster.catalog import _stac, _tree
from lazyraster.errors import CatalogError

__all__ = ["LocalizeReport", "localize_catalog"]


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
    item_path: Path
    key: str
    source: str
    dest: Path
    asset: dict[str, Any]


def _verify(path: Path, asset: dict[str, Any]) -> str | None:
    """None when ``path`` matches the asset's checksum (else its size), else why not."""
    expected = asset.get("file:checksum")
    if isinstance(expected, str) and expected.startswith(_stac.SHA256_MULTIHASH_PREFIX):
        actual = _stac.sha256_multihash(path)
        return None if actual == expected else f"checksum {actual} differs from {expected}"
    size = asset.get("file:size")
    if size is not None and path.stat().st_size != size:
        return f"size {path.stat().st_size} differs from file:size {size}"
    return None


def _destination(to: Path, item_id: str, source: str) -> Path:
    name = posixpath.basename(source.split("?", 1)[0].rstrip("/")) if _tree.is_url(source) else (
        os.path.basename(source)
    )  # fmt: skip
    dest = Path(os.path.normpath(to / item_id / name))
    if not name or name in {".", ".."} or to not in dest.parents:
        raise CatalogError(
            f"asset {source!r} of item {item_id!r} would be copied to {dest}, outside {to}; "
            "fix the item id or the href before localizing"
        )
    return dest


def _copy(task: _Task) -> tuple[str, str | None]:
    """Copy one asset; return ("copied" | "skipped" | "failed", why)."""
    dest, source = task.dest, task.source
    try:
        if dest.exists() and _verify(dest, task.asset) is None:
            return "skipped", None
        if not _tree.is_url(source) and os.path.normpath(source) == os.path.normpath(dest):
            return "failed", _verify(dest, task.asset) or "the local copy is missing"
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        with fsspec.open(source, "rb") as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        why = _verify(part, task.asset)
        if why is not None:
            part.unlink()
            return "failed", f"copy of {source} does not verify: {why}"
        os.replace(part, dest)
        return "copied", None
    except Exception as exc:  # network and file-system errors of any fsspec backend
        return "failed", f"cannot copy {source}: {type(exc).__name__}: {exc}"


def localize_catalog(
    catalog: str | os.PathLike[str],
    *,
    assets: Sequence[str],
    to: str | os.PathLike[str],
    workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> LocalizeReport:
    """Copy chosen assets of every item to a local folder and rewrite their hrefs.

    Files are read from wherever the hrefs point (local paths, ``http(s)://`` or any
    fsspec URL) and written to ``to/<item id>/<file name>`` in parallel threads. A copy
    is checked against ``file:checksum`` (SHA2-256 multihash) when the asset has one,
    else against ``file:size``; a failed check leaves the href unchanged. Copies that
    already verify are skipped, so an interrupted run can simply be started again.
    Item JSON files are rewritten in place with relative hrefs.

    Parameters
    ----------
    catalog : path
        Catalog folder or its ``catalog.json``.
    assets : sequence of str
        Asset keys to copy, e.g. ``["tmin", "tmax"]``.
    to : path
        Destination folder (created if needed).
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
        When no item has one of the asset keys, or a destination would fall outside
        ``to`` (an item id or href with ``..``); nothing is copied then.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from lazyraster.catalog import build_catalog
    >>> from lazyraster.catalog.samples import write_cog
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_cog(tmp / "data" / "20230430_red.tif", shape=(4, 4))
    >>> _ = build_catalog(tmp / "data", tmp / "stac", pattern="{date}_{band}.tif")
    >>> report = localize_catalog(tmp / "stac", assets=["red"], to=tmp / "local")
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
    to_dir = Path(os.path.abspath(to))
    tree = _tree.read_tree(catalog)
    tasks: list[_Task] = []
    seen_keys: set[str] = set()
    for item_path, item in tree.all_items():
        seen_keys |= set(item.get("assets", {}))
        for key in wanted:
            asset = item.get("assets", {}).get(key)
            if asset is None:
                continue
            source = _tree.resolve_href(asset["href"], item_path)
            dest = _destination(to_dir, str(item["id"]), source)
            tasks.append(_Task(item_path, key, source, dest, asset))
    missing = [k for k in wanted if k not in seen_keys]
    if missing:
        raise CatalogError(f"no item has the asset(s) {missing}; choose among {sorted(seen_keys)}")
    report = LocalizeReport()
    done_by_item: dict[Path, list[_Task]] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (task, (status, why)) in enumerate(
            zip(tasks, pool.map(_copy, tasks), strict=True), start=1
        ):
            if progress is not None:
                progress(done, len(tasks))
            if status == "failed":
                report.failed.append(f"{task.item_path}: asset {task.key!r}: {why}")
                continue
            (report.copied if status == "copied" else report.skipped).append(str(task.dest))
            done_by_item.setdefault(task.item_path, []).append(task)
    items = dict(tree.all_items())
    for item_path, done_tasks in done_by_item.items():
        item = items[item_path]
        for task in done_tasks:
            rel = Path(os.path.relpath(task.dest, item_path.parent)).as_posix()
            item["assets"][task.key]["href"] = rel if rel.startswith("../") else f"./{rel}"
        _stac.write_json(item_path, item)
    return report
