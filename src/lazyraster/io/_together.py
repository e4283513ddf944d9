"""Writes computed together: what ``compute=False`` leaves to its caller.

:func:`~lazyraster.io.write_zarr` and :func:`~lazyraster.io.write_geotiff` with
``compute=False`` check their target at once and return a Delayed; they record here the
temporaries it writes into and the keys of the tasks that compute each output's
:class:`Commit` (never the graph: it lives as long as the caller keeps the write).
Computed alone, a write commits its outputs itself (:func:`commit_one`).
:func:`commit_together` instead ends all the writes in one task,
:func:`commit_outputs`: once every output's data are written it takes every output's
lock (in one order), checks every output, then swaps them all: all outputs or none,
also when two runs of one spec race, and when a run is killed between two swaps (the
journal of :mod:`lazyraster.io._journal`, finished by the next locker).
:func:`discard_temporaries` removes what a failed compute left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import os
from collections.abc import Hashable, Sequence
from typing import Any

import dask
import fsspec
from dask.delayed import Delayed
from dask.graph_manipulation import bind
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from fsspec.implementations.local import LocalFileSystem

from lazyraster.io import _journal
from lazyraster.io._atomic import _discard_local, remove_empty
from lazyraster.io._journal import Swap

__all__ = ["Commit", "commit_outputs", "commit_together", "discard_temporaries", "pending"]


class Commit:
    """One output's commit, made by a writer's last task once the output's data are written.

    :func:`commit_outputs` calls, for all the outputs it commits, :meth:`check` then
    :meth:`ready` then :meth:`swap` holding every output's lock, and :meth:`close`
    after releasing them. A writer subclasses it (a picklable record: it may be made
    on one worker and committed on another).
    """

    #: the output (a local path: its lock is taken; a remote one: no lock)
    target: str
    #: whether ``target`` is on the local file system (locked) or remote
    local: bool = True

    def check(self) -> None:
        """Raise if the output cannot be put at ``target`` (it exists, or is foreign)."""

    def ready(self) -> None:
        """Make what the swap needs and may fail (a group write's parent groups)."""

    def staged(self) -> Swap:
        """What :meth:`swap` puts at ``target`` and from where (a local output's journal)."""
        raise NotImplementedError

    def swap(self) -> None:
        """Put the output at ``target`` (a rename, or an exchange with the old one)."""

    def close(self, committed: bool) -> None:
        """Remove what is left (the temporary, or the old output the swap put there)."""

    def result(self) -> Any:
        """What the write computes to (the output's path or URL)."""
        return self.target


def commit_outputs(commits: Sequence[Commit]) -> list[Any]:
    """Commit every output or none: check all, then swap all, holding every output's lock.

    The locks are taken in one order (their sorted paths, :func:`output_locks`), so two
    runs committing overlapping outputs wait for each other and never deadlock; a commit
    that a killed run left unfinished on any of the outputs is finished first
    (:func:`lazyraster.io._journal.locked`). An output that another run put in place
    meanwhile fails the checks before anything is swapped. Two or more local outputs
    are swapped after their journal is written, and the journal removed after: a kill
    between two swaps is rolled forward by the next locker, and a swap that raises
    leaves the journal (an :class:`~lazyraster.errors.UnfinishedCommitError`). Each
    commit is closed afterwards, whatever happened.
    """
    committed = False
    local = [c for c in commits if c.local]
    try:
        with _journal.locked([c.target for c in local]):
            for c in commits:
                c.check()
            for c in commits:
                c.ready()
            journal = _journal.write([c.staged() for c in local]) if len(local) > 1 else None
            for done, c in enumerate(commits):
                try:
                    c.swap()
                except BaseException as exc:
                    if journal is None:
                        raise
                    raise _journal.stopped(journal, done, exc) from exc
            if journal is not None:
                _journal.close(journal)
            committed = True
    finally:
        _close_all(commits, committed)
    return [c.result() for c in commits]


def _close_all(commits: Sequence[Commit], committed: bool) -> None:
    """Close every commit; raise the first error once all are closed."""
    first: BaseException | None = None
    for c in commits:
        try:
            c.close(committed)
        except BaseException as exc:
            first = first or exc
    if first is not None:
        raise first


def commit_one(commit: Commit) -> Any:
    """Commit a single output (a write computed alone); return what the write computes to."""
    return commit_outputs([commit])[0]


@dataclasses.dataclass
class _Write:
    """A write returned by ``compute=False``: paths and task keys, never its graph.

    The graph (and the data it may hold) lives as long as the caller keeps the write.
    """

    fs: fsspec.AbstractFileSystem
    temporaries: list[str]  # what discard_temporaries removes
    prepared: list[Hashable]  # the keys of the tasks that compute the Commits
    listed: bool  # the write computes to the list of its outputs
    targets: list[str]
    folders: list[str]  # local folders the writer made for them, deepest first


# the writes returned by compute=False, by their key, until discard_temporaries
_PENDING: dict[Hashable, _Write] = {}


def pending(
    write: Delayed,
    fs: fsspec.AbstractFileSystem,
    temporaries: list[str],
    prepared: list[Delayed],
    listed: bool,
    targets: list[str],
    folders: list[str],
) -> Delayed:
    """Record ``write`` (returned by a writer with ``compute=False``) and return it.

    ``prepared`` are the tasks (one per output, in ``write``'s graph) that compute the
    outputs' :class:`Commit`. ``folders`` are the local folders the writer created
    (deepest first): those still empty once the temporaries are discarded are removed too.
    """
    keys = [p.key for p in prepared]
    _PENDING[write.key] = _Write(fs, temporaries, keys, listed, targets, folders)
    return write


def _check_apart(writes: tuple[Delayed, ...]) -> None:
    """Refuse writes of which one output is, or is inside, another's: one would undo the other."""
    seen: list[tuple[str, Hashable]] = []
    for write in writes:
        record = _PENDING.get(write.key)
        if record is None:
            continue
        for target in record.targets:
            local = isinstance(record.fs, LocalFileSystem)  # one output, any spelling
            path = os.path.realpath(target) if local else record.fs.unstrip_protocol(target)
            path = path.rstrip("/")
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


def _task(graph: HighLevelGraph, key: Hashable) -> Delayed:
    """The task ``key`` of ``graph`` as a Delayed (its layer found among the task layers)."""
    for name, layer in graph.layers.items():
        if isinstance(layer, MaterializedLayer) and key in layer:
            return Delayed(key, graph, layer=name)
    return Delayed(key, dict(graph))


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
        record = _PENDING.pop(write.key, None)
        if record is None:
            continue
        for tmp in record.temporaries:
            _discard(record.fs, tmp)
        made.extend(record.folders)
    remove_empty(sorted(set(made), key=len, reverse=True))  # once no temporary is left


def commit_together(*writes: Delayed) -> list[Delayed]:
    """The writes, ending in one commit of all their outputs.

    Computed together (``dask.compute(*commit_together(a, b))``), writes made with
    ``compute=False`` move their outputs into place (every file of a ``per=`` GeoTIFF
    included) in one task, once every task writing data has succeeded: it takes every
    output's lock, in the order of their paths (so that two runs of one set of outputs
    wait for each other, never deadlock), checks every output again (an output another
    run committed meanwhile refuses the whole set), then swaps them all. A failure
    anywhere before the swaps leaves no new output. Pass the writes given, not the ones
    returned, to :func:`discard_temporaries`. Writes without a temporary (appends,
    region writes) write in place as they are computed: they are not all or none.

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
        If an output of one write is, or is inside, an output of another: one would
        replace, or fail on, the other.

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
    records = [_PENDING.get(w.key) for w in writes]
    prepared = [
        _task(w.__dask_graph__(), key)
        for w, record in zip(writes, records, strict=True)
        if record is not None
        for key in record.prepared
    ]
    joint = dask.delayed(commit_outputs, pure=False)(prepared)
    together, start = [], 0
    for w, record in zip(writes, records, strict=True):
        if record is None:  # no temporary (an append, a region write): after the others' data
            graph = w.__dask_graph__()
            below = [Delayed(name, graph) for name in graph.dependencies[w.__dask_layers__()[0]]]
            together.append(bind(w, prepared, omit=below))
            continue
        end = start + len(record.prepared)
        part = slice(start, end) if record.listed else start
        together.append(dask.delayed(operator.getitem, pure=False)(joint, part))
        start = end
    return together
