"""Safe local paths: what an href names, and whether it stays inside trusted roots.

A catalog is input written by someone else. Before the package reads a local file that
an href names, it resolves the href (relative to the JSON file, ``file://`` URLs,
``..``, every symbolic link) and requires the real path to lie under one of the roots
the user trusts; the file is then opened without following a final link and checked
once more through ``/proc/self/fd``, so a link swapped in between is caught too.
"""

from __future__ import annotations

import os
import stat
import urllib.parse
from collections.abc import Iterable

__all__ = ["LOCAL_PROTOCOLS", "local_path", "open_within", "within"]

LOCAL_PROTOCOLS = ("file", "local")


def local_path(href: str, base_dir: str | os.PathLike[str]) -> str | None:
    """The absolute local path ``href`` names, or ``None`` for a remote URL.

    Relative hrefs are taken from ``base_dir``; ``file://`` URLs are decoded. A chained
    fsspec URL (``simplecache::file://...``) raises ``ValueError``: it can read local
    files that no check would see.

    Examples
    --------
    >>> local_path("../d1/band.tif", "/cat/items")
    '/cat/d1/band.tif'
    >>> local_path("file:///etc/passwd", "/cat"), local_path("https://x.org/a.tif", "/cat")
    ('/etc/passwd', None)
    """
    if "::" in href:
        raise ValueError(f"chained URL {href!r} is not accepted as an asset href")
    scheme, sep, rest = href.partition("://")
    if sep and scheme.lower() not in LOCAL_PROTOCOLS:
        return None
    path = urllib.parse.unquote(rest.split("?", 1)[0]) if sep else href
    return os.path.normpath(os.path.join(os.fspath(base_dir), path))


def within(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]]) -> bool:
    """True if the real path of ``path`` (every link resolved) lies under one of ``roots``.

    Examples
    --------
    >>> within("/srv/data/../data/a.tif", ["/srv/data"]), within("/etc/passwd", ["/srv"])
    (True, False)
    """
    real = os.path.realpath(path)
    return any(os.path.commonpath([real, base]) == base for base in map(os.path.realpath, roots))


def open_within(path: str, roots: Iterable[str | os.PathLike[str]]) -> int:
    """Open ``path`` for reading if it is a regular file under ``roots``; return the fd.

    Raises ``PermissionError`` naming the path when it (or the file actually opened)
    lies outside every root, or is not a regular file.
    """
    roots = list(roots)
    real = os.path.realpath(path)
    if not within(real, roots):
        raise PermissionError(f"{path} resolves to {real}, outside the allowed roots")
    # O_NONBLOCK: a FIFO planted in a root must not hang the open (no effect on files)
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else real
        if not within(opened, roots):
            raise PermissionError(f"{path} was replaced by a link to {opened} while opening")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PermissionError(f"{path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd
