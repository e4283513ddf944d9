"""Writes computed together: what ``compute=False`` leaves to its caller.

:func:`~lazyraster.io.write_zarr` and :func:`~lazyraster.io.write_geotiff` with
``compute=False`` check their target at once and return a Delayed; they record here the
temporaries it writes into and the tasks that commit them. :func:`commit_together` makes
each commit wait for the data of all the writes computed with it (all outputs or none),
and :func:`discard_temporaries` removes what a failed compute left.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable

import dask
import fsspec
from dask.delayed import Delayed
from dask.graph_manipulation import bind
from fsspec.implementations.local import LocalFileSystem

from lazyraster.io._atomic import _discard_local, remove_empty

__all__ = ["commit_together", "discard_temporaries", "pending"]

# the writes returned by compute=False, by their key: the file system, the temporaries,
# the tasks that commit, whether the write computes to their list, its outputs, and the
# local folders the writer created for them
_PENDING: dict[
    Hashable,
    tuple[fsspec.AbstractFileSystem, list[str], list[Delayed], bool, list[str], list[str]],
] = {}


def pending(
    write: Delayed,
    fs: fsspec.AbstractFileSystem,
    temporaries: list[str],
    commits: list[Delayed],
    listed: bool,
    targets: list[str],
    folders: list[str],
) -> Delayed:
    """Record ``write`` (returned by a writer with ``compute=False``) and return it.

    ``folders`` are the local folders the writer created (deepest first): those still
    empty once the temporaries are discarded are removed too.
    """
    _PENDING[write.key] = (fs, temporaries, commits, listed, targets, folders)
    return write


def _check_apart(writes: tuple[Delayed, ...]) -> None:
    """Refuse writes of which one output is, or is inside, another's: one would undo the other."""
    seen: list[tuple[str, str]] = []
    for write in writes:
        if write.key not in _PENDING:
            continue
        fs, _, _, _, targets, _ = _PENDING[write.key]
        for target in targets:
            path = fs.unstrip_protocol(target.rstrip("/"))
            for other, other_write in seen:
                if other_write != write.key and (
                    path == other or path.startswith(f"{other}/") or other.startswith(f"{path}/")
                ):
                    raise ValueError(
                        f"two outputs computed together write {other} and {path}: give "
                        "each output its own path, outside the others"
                    )
            seen.append((path, write.key))


def _discard(fs: fsspec.AbstractFileSystem, tmp: str) -> None:
    """Remove the temporary ``tmp`` (if still there) and release its lock."""
    if isinstance(fs, LocalFileSystem):
        _discard_local(tmp)
    else:
        with contextlib.suppress(Exception):
            if fs.exists(tmp):
                fs.rm(tmp, recursive=True)


def discard_temporaries(*writes: Delayed) -> None:
    """Remove what computing writes made with ``compute=False`` left, and release their locks.

    Call it once the writes are computed, whether the compute succeeded or not (a
    ``finally`` clause): after a failure (an exception in a task, a lost worker, an
    interrupt) it removes their temporaries, so neither an output nor a temporary is
    left (nor a folder made for it) and a previous output being replaced is unchanged;
    after a success there is
    nothing left to remove, and it releases the locks this process held on temporaries
    that a worker process committed. Writes already passed, and writes that have no
    temporary (appends, region writes), are ignored. Never call it while the writes
    are being computed.

    Parameters
    ----------
    *writes : dask.delayed.Delayed
        What :func:`write_zarr` and :func:`write_geotiff` returned with ``compute=False``.

    Examples
    --------
    >>> import dask, os, tempfile
    >>> from lazyraster.io import write_geotiff, write_zarr
    >>> from lazyraster.testing import synthetic_raster
    >>> da = synthetic_raster((20, 30), chunks={"y": 10, "x": 15})
    >>> folder = tempfile.mkdtemp()
    >>> writes = [write_zarr(da, os.path.join(folder, "a.zarr"), compute=False),
    ...           write_geotiff(da, os.path.join(folder, "a.tif"), compute=False)]
    >>> try:
    ...     paths = dask.compute(*writes)
    ... finally:
    ...     discard_temporaries(*writes)
    >>> sorted(os.listdir(folder))
    ['a.tif', 'a.zarr']
    """
    made = []
    for write in writes:
        fs, temporaries, *_, folders = _PENDING.pop(write.key, (None, [], [], False, [], []))
        for tmp in temporaries:
            _discard(fs, tmp)
        made.extend(folders)
    remove_empty(sorted(set(made), key=len, reverse=True))  # once no temporary is left


def commit_together(*writes: Delayed) -> list[Delayed]:
    """The writes, each of their commits waiting for the data of all of them.

    Computed together (``dask.compute(*commit_together(a, b))``), writes made with
    ``compute=False`` then move their outputs into place (every file of a
    ``per=`` GeoTIFF included) only once every task writing data has succeeded: a
    failure anywhere leaves no new output. Pass the writes given, not the ones
    returned, to :func:`discard_temporaries`.

    Parameters
    ----------
    *writes : dask.delayed.Delayed
        What :func:`write_zarr` and :func:`write_geotiff` returned with ``compute=False``.

    Returns
    -------
    list of dask.delayed.Delayed
        One per write, computing to what it computes to.

    Raises
    ------
    ValueError
        If an output of one write is, or is inside, an output of another: the second
        commit would fail, or replace the first, after the first was in place.

    Examples
    --------
    >>> import dask, os, tempfile
    >>> from lazyraster.io import write_zarr
    >>> from lazyraster.testing import synthetic_raster
    >>> da = synthetic_raster((20, 30), chunks={"y": 10, "x": 15})
    >>> path = os.path.join(tempfile.mkdtemp(), "b.zarr")
    >>> write = write_zarr(da, path, compute=False)
    >>> try:
    ...     (out,) = dask.compute(*commit_together(write))
    ... finally:
    ...     discard_temporaries(write)
    >>> out == path
    True
    """
    _check_apart(writes)
    parts = [_PENDING[w.key][2:4] if w.key in _PENDING else ([w], False) for w in writes]
    data = [
        Delayed(below, commit.__dask_graph__())
        for commits, _ in parts
        for commit in commits
        for below in commit.__dask_graph__().dependencies[commit.__dask_layers__()[0]]
    ]
    together = []
    for commits, listed in parts:
        bound = [bind(commit, data, omit=data) for commit in commits]
        together.append(dask.delayed(list, pure=False)(bound) if listed else bound[0])
    return together
