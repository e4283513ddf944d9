"""The journal of a commit of several outputs: a killed run's commit is finished by the next.

:func:`~lazyraster.io._together.commit_outputs` swaps outputs committed together one after
the other. A run killed between two swaps would leave every output whole but the set
mixed, some old and some new. So, once every output is prepared and before the first
swap, the commit writes a journal listing each (temporary, output) pair and the inode of
the prepared data: one file per folder involved, with a hard link ``.<name>.journal``
beside each output, fsynced with its folder. The journal is removed once every swap is
done.

Whoever next locks any of the outputs (a write, a commit, a quicklook,
:func:`finish_commits`) takes the locks of every output the journal names and rolls it
forward: an output that already holds the prepared data (same inode) was swapped, one
whose temporary still holds them is swapped now. Rolling forward again after a second
kill does what is left. A journal missing a link (a kill while it was being written,
before any swap; or while it was being removed, after every swap) needs nothing but its
removal; one missing a link while some swaps are done lost it afterwards, and is refused.
A journal that cannot be finished raises
:class:`~lazyraster.errors.UnfinishedCommitError` naming the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from lazyraster.errors import UnfinishedCommitError
from lazyraster.io import _atomic

__all__ = ["Journal", "Swap", "close", "finish_commits", "locked", "stopped", "write"]

_FORMAT = 1
_MAX_BYTES = 1 << 20
_HEX = re.compile(r"[0-9a-f]{32}")


@dataclasses.dataclass(frozen=True)
class Swap:
    """One output of a commit: ``data`` (``temporary`` or a file in it) goes to ``final``."""

    temporary: str
    data: str
    final: str
    replace: bool  # whether an existing output may be replaced (mode="w")


@dataclasses.dataclass(frozen=True)
class Journal:
    """A journal read back: its pairs, the inode of each one's data, and its links."""

    ident: str
    swaps: tuple[Swap, ...]
    inodes: tuple[tuple[int, int], ...]
    links: tuple[str, ...]

    @property
    def finals(self) -> list[str]:
        return [s.final for s in self.swaps]


def _final(target: str | os.PathLike[str]) -> str:
    """``target`` with its folder resolved: the one spelling journals and locks use."""
    parent, name = os.path.split(os.fspath(target).rstrip("/") or "/")
    return os.path.join(os.path.realpath(parent or "."), name)


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _inode(path: str) -> tuple[int, int] | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def write(swaps: Sequence[Swap]) -> Journal:
    """Write the journal of ``swaps`` beside each output, durably; return it.

    One file per folder, written under a name of its own, fsynced, then linked as
    ``.<name>.journal`` beside each output of that folder and the folder fsynced. On
    an error nothing of it is left.
    """
    swaps = tuple(dataclasses.replace(s, final=_final(s.final)) for s in swaps)
    ident = secrets.token_hex(16)
    inodes = []
    for s in swaps:
        info = os.lstat(s.data)
        inodes.append((info.st_dev, info.st_ino))
    links = tuple(_atomic.journal_path(s.final) for s in swaps)
    entries = [
        {**dataclasses.asdict(s), "device": dev, "inode": ino}
        for s, (dev, ino) in zip(swaps, inodes, strict=True)
    ]
    text = json.dumps({"lazyraster_commit": _FORMAT, "id": ident, "swaps": entries, "links": links})
    journal = Journal(ident, swaps, tuple(inodes), links)
    folders: dict[str, list[str]] = {}
    for link in links:
        folders.setdefault(os.path.dirname(link), []).append(link)
    try:
        for folder, names in folders.items():
            first = f"{names[0]}-tmp-{ident}"
            fd = os.open(first, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                for name in names:
                    os.link(first, name)
            finally:
                os.remove(first)
            _fsync_folder(folder)
    except BaseException:
        _remove_links(journal)
        raise
    return journal


def _remove_links(journal: Journal) -> None:
    """Remove the journal's links that are still its own; fsync their folders."""
    for link in journal.links:
        with contextlib.suppress(OSError, UnfinishedCommitError):
            if _read(link, _final(link), check=False).ident == journal.ident:
                os.remove(link)
    for folder in {os.path.dirname(link) for link in journal.links}:
        with contextlib.suppress(OSError):
            _fsync_folder(folder)


def _not_ours(path: str, target: str, why: str) -> UnfinishedCommitError:
    return UnfinishedCommitError(
        f"{path} is not a commit journal lazyraster can finish ({why}); check the output "
        f"{target}, then run lazyraster.io.finish_commits({target!r}, abandon=True) to "
        "remove the journal"
    )


def _swap_of(entry: Any, path: str, target: str) -> tuple[Swap, tuple[int, int]]:
    """One pair of a journal, refused unless its temporary is one of its output's."""
    try:
        swap = Swap(entry["temporary"], entry["data"], entry["final"], bool(entry["replace"]))
        inode = (int(entry["device"]), int(entry["inode"]))
    except (KeyError, TypeError, ValueError):
        raise _not_ours(path, target, "it is torn or was edited") from None
    folder, name = os.path.split(swap.final)
    prefix = os.path.join(folder, f".{name}.tmp-")
    ours = (
        all(isinstance(p, str) for p in (swap.temporary, swap.data, swap.final))
        and os.path.isabs(swap.final)
        and name not in ("", ".", "..")
        and swap.temporary.startswith(prefix)
        and _HEX.fullmatch(swap.temporary[len(prefix) :]) is not None
        and (swap.data == swap.temporary or os.path.dirname(swap.data) == swap.temporary)
        and os.path.basename(swap.data) not in ("", ".", "..")
    )
    if not ours:
        raise _not_ours(path, target, f"{swap.temporary!r} is not a temporary of {swap.final!r}")
    return swap, inode


def _read(path: str, target: str, *, check: bool = True) -> Journal:
    """Read the journal ``path`` found beside ``target``; refuse one not ours to finish."""
    try:  # not blocking: a FIFO put there would wait for a writer, holding the locks
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise _not_ours(path, target, f"it cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UnfinishedCommitError(
                f"{path} is a folder, where lazyraster keeps the journal of a commit of "
                f"{target}; it is none of lazyraster's: move it elsewhere, then write again"
            )
        if not stat.S_ISREG(info.st_mode):
            raise _not_ours(path, target, "it is not a file")
        if check and info.st_uid != os.getuid():
            raise UnfinishedCommitError(
                f"{path} is the journal of an unfinished commit by another user (uid "
                f"{info.st_uid}): ask them to run lazyraster.io.finish_commits({target!r}), "
                "or check the outputs it lists and remove it"
            )
        text = os.read(fd, _MAX_BYTES)
    finally:
        os.close(fd)
    try:
        record = json.loads(text)
        if record.get("lazyraster_commit") != _FORMAT:
            raise ValueError(record.get("lazyraster_commit"))
        ident, links = str(record["id"]), tuple(str(link) for link in record["links"])
        pairs = [_swap_of(entry, path, target) for entry in record["swaps"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _not_ours(path, target, "it is torn or was edited") from None
    journal = Journal(ident, tuple(s for s, _ in pairs), tuple(i for _, i in pairs), links)
    if check and (target not in journal.finals or path not in links):
        raise _not_ours(path, target, f"it does not list {target}")
    if check and links != tuple(_atomic.journal_path(f) for f in journal.finals):
        raise _not_ours(path, target, "its links are not beside its outputs")
    return journal


def _linked(journal: Journal) -> list[bool]:
    """Whether each link of the journal is in place (written, not removed), in its order."""
    linked = []
    for link in journal.links:
        try:
            linked.append(_read(link, _final(link), check=False).ident == journal.ident)
        except (OSError, UnfinishedCommitError):
            linked.append(False)
    return linked


def _finish(journal: Journal, *, abandon: bool) -> list[str]:
    """Roll ``journal`` forward (all its outputs' locks held); return the outputs swapped.

    A journal missing a link was killed while being written (no swap done) or removed
    (every swap done), and needs nothing but its removal; one missing a link with some
    swaps done lost it afterwards (removed by hand, or abandoned where it was torn):
    refused, or with ``abandon`` rolled forward for the outputs whose link is there.
    """
    swapped: list[str] = []
    lost: list[Swap] = []
    linked = _linked(journal)
    done = [_inode(s.final) == i for s, i in zip(journal.swaps, journal.inodes, strict=True)]
    if not all(linked) and (all(done) or not any(done)):
        _remove_links(journal)
        _discard_all(journal)
        return swapped
    names = ", ".join(journal.finals)
    unlinked = [s.final for s, here in zip(journal.swaps, linked, strict=True) if not here]
    if unlinked and not abandon:
        raise UnfinishedCommitError(
            f"a commit of {names} was interrupted after {sum(done)} of {len(done)} swaps, "
            f"and its journal beside {', '.join(unlinked)} is gone since (removed by hand, "
            "or abandoned), so the outputs are part old, part new. Run "
            f"lazyraster.io.finish_commits({journal.finals[0]!r}, abandon=True) to put in "
            "place those whose journal is still there and drop it, then write the others "
            "again"
        )
    pending: list[Swap] = []
    for swap, inode, here, was in zip(journal.swaps, journal.inodes, linked, done, strict=True):
        if was or not here:  # swapped, or its journal gone: left as it is
            continue
        if _inode(swap.data) != inode or (not swap.replace and os.path.lexists(swap.final)):
            lost.append(swap)
        else:
            pending.append(swap)
    if lost and not abandon:
        missing = "; ".join(f"{s.final} (from {s.data})" for s in lost)
        raise UnfinishedCommitError(
            f"a commit of {names} was interrupted and cannot be finished: the prepared "
            f"data of {missing} are gone or an output appeared in its place, so these stay "
            "as they were while the others are new. Run lazyraster.io.finish_commits("
            f"{lost[0].final!r}, abandon=True) to drop the journal, then write the "
            "outputs again"
        )
    for swap in pending:
        _atomic.commit(swap.data, swap.final)
        swapped.append(swap.final)
    close(journal)
    _discard_all(journal)
    return swapped


def _discard_all(journal: Journal) -> None:
    """Remove the temporaries of a journal removed: the old outputs, or data never used."""
    for swap in journal.swaps:
        _atomic.discard(swap.temporary)


def _beside(target: str, *, abandon: bool) -> Journal | None:
    """The journal beside ``target`` (its outputs' locks held or not), or None.

    With ``abandon``, a journal not ours to finish (torn, edited, naming paths that are
    not temporaries) is removed instead of refused.
    """
    path = _atomic.journal_path(target)
    if not os.path.lexists(path):
        return None
    try:
        return _read(path, target)
    except FileNotFoundError:
        return None
    except UnfinishedCommitError:
        info = os.lstat(path)
        if not abandon or info.st_uid != os.getuid() or stat.S_ISDIR(info.st_mode):
            raise
        os.remove(path)
        return None


def _remove_unlinked(targets: Iterable[str]) -> None:
    """Remove the journal files a kill left before they were linked (locks held).

    One listing per folder, however many of its outputs are committed.
    """
    folders: dict[str, set[str]] = {}
    for target in targets:
        folder, name = os.path.split(_atomic.journal_path(target))
        folders.setdefault(folder, set()).add(f"{name}-tmp-")
    for folder, prefixes in folders.items():
        left: list[str] = []
        with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
            left = [e.path for e in entries if e.name[: e.name.rfind("-tmp-") + 5] in prefixes]
        for path in left:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


@contextlib.contextmanager
def locked(
    targets: Iterable[str | os.PathLike[str]], *, abandon: bool = False
) -> Iterator[list[str]]:
    """Hold the locks of ``targets`` after finishing the commits left unfinished on them.

    The locks of every output that a journal beside a target names are taken too (all
    in one order, :func:`~lazyraster.io._atomic.output_locks`): a journal is finished
    holding every one of its outputs' locks. Yields the outputs the finishing swapped.
    """
    wanted = {_final(t) for t in targets}
    while True:
        with _atomic.output_locks(sorted(wanted)):
            journals = {}
            for target in sorted(wanted):
                found = _beside(target, abandon=abandon)
                if found is not None:
                    journals[found.ident] = found
            more = {f for j in journals.values() for f in j.finals} - wanted
            if not more:
                _remove_unlinked(wanted)
                yield [f for j in journals.values() for f in _finish(j, abandon=abandon)]
                return
        wanted |= more


def finish_commits(path: str | os.PathLike[str], *, abandon: bool = False) -> list[str]:
    """Finish the commit of several outputs, ``path`` among them, that a killed run left.

    A run killed between two swaps of a commit of several outputs (those of
    :func:`~lazyraster.io.commit_together`, of a pipeline run) leaves a journal beside
    each output. This puts every output of that commit that is still old in place,
    holding all their locks, and removes the journal and the temporaries; after a
    second kill it does what is left. Every write and commit of any of the outputs,
    and ``lazyraster quicklook``, calls it first; call it yourself before reading
    outputs that a killed run may have left. Without a journal it does nothing.

    Parameters
    ----------
    path : str or path-like
        Any output of the commit (a Zarr store, a GeoTIFF).
    abandon : bool
        Drop a journal that cannot be finished (its prepared data removed, torn, naming
        paths that are not temporaries, gone beside an output after some swaps), after
        putting in place what can be: the
        outputs then stay part old, part new; write them again.

    Returns
    -------
    list of str
        The outputs put in place (none if there was nothing to finish).

    Raises
    ------
    UnfinishedCommitError
        If the commit cannot be finished: prepared data were removed, the journal is
        another user's, torn, names a path that is not a temporary of its output, or is
        gone beside one of the outputs after some swaps.
        The message names the fix.

    Examples
    --------
    >>> import os, tempfile
    >>> from lazyraster.io import finish_commits
    >>> finish_commits(os.path.join(tempfile.mkdtemp(), "out.zarr"))
    []
    """
    target = _final(path)
    if not os.path.lexists(_atomic.journal_path(target)):
        return []
    with locked([target], abandon=abandon) as swapped:
        return swapped


def close(journal: Journal) -> None:
    """Remove the journal of a commit whose swaps are all done, once they are durable."""
    for folder in {os.path.dirname(f) for f in journal.finals}:
        _fsync_folder(folder)
    _remove_links(journal)


def stopped(journal: Journal, done: int, exc: BaseException) -> UnfinishedCommitError:
    """The error of a commit whose swap ``done + 1`` raised ``exc``: the journal stays."""
    return UnfinishedCommitError(
        f"the commit of {', '.join(journal.finals)} stopped after {done} of "
        f"{len(journal.swaps)} swaps ({exc}); the outputs are part old, part new until it "
        f"is finished: fix the cause, then run lazyraster.io.finish_commits("
        f"{journal.finals[0]!r}) (any write of these outputs does it too)"
    )
