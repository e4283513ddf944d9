"""Atomic outputs on local file systems: one lock, one kind of temporary, one commit.

Every writer of the package that puts a file or folder at a final path (``write_zarr``,
``write_geotiff``, ``localize_catalog``; the catalog builder can use the same calls for
its folder) follows the same four steps:

1. ``tmp = Temporary.beside(target)`` makes a hidden sibling ``.<name>.tmp-<hex>``
   with an unpredictable name (``secrets.token_hex``) and holds an advisory
   ``fcntl.flock`` on ``.<name>.tmp-<hex>.lock`` for as long as the temporary lives.
   The data are written into ``tmp.path``.
2. ``with output_lock(target):`` serialises the commit of one output: every writer of
   ``target``, in this process or another, on this host or another host of a file
   system with working ``flock`` (local disks, NFSv4, Lustre with ``flock``), waits for
   the one holding ``.<name>.lock``. Outputs committed together (all or none) are
   committed holding ``with output_locks(targets):``, every one of their locks, taken
   in the order of their paths.
3. Inside the lock, ``commit(tmp.path, target)`` puts the temporary in place: a rename
   when nothing is there, else an atomic exchange (``renameat2(RENAME_EXCHANGE)``) so
   that a reader (or a ``SIGKILL``) never finds the target missing; the previous output,
   now under the temporary's name, is removed by ``tmp.close()``.
4. ``sweep(target)`` removes the temporaries of ``target`` whose lock nobody holds:
   left by a killed writer, or written into by a straggling task after a failed write
   cleaned up. The temporary of a writer still running is held, so it is never touched.

Outputs committed together (two or more) are swapped one after the other; before the
first swap the commit writes a journal, ``.<name>.journal`` beside each output, listing
every (temporary, output) pair (:mod:`lazyraster.io._journal`). Until the journal is
removed, the temporaries it names are never swept nor discarded: they hold the data
that the next locker of any of the outputs puts in place.

Locks are released by the kernel when their process dies, so a killed writer never
leaves a lock that blocks the next run. Lock files are removed when released; a lock
taken on a file that another holder removed meanwhile is taken again on the new file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import glob
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator

from lazyraster._limits import room_for
from lazyraster.errors import OutputExistsError

__all__ = [
    "FileLock",
    "Temporary",
    "commit",
    "discard",
    "journal_path",
    "journaled",
    "missing_folders",
    "open_lock_file",
    "output_lock",
    "output_locks",
    "remove",
    "remove_empty",
    "replacing",
    "sweep",
]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def open_lock_file(path: str) -> int:
    """Open (or create) the lock file ``path`` for writing, never through a link.

    A symbolic or hard link planted at a lock's path (in a shared folder, say) would
    otherwise make the locker create, or write into, the file it points to.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> os.symlink("/etc/hostname", os.path.join(folder, ".out.lock"))
    >>> open_lock_file(os.path.join(folder, ".out.lock"))
    Traceback (most recent call last):
    ...
    lazyraster.errors.OutputExistsError: ... is a link, not a lock file ...
    """
    refusal = OutputExistsError(
        f"{path} is a link, not a lock file lazyraster made; remove it and run again"
    )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise refusal from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        raise refusal
    return fd


class FileLock:
    """An exclusive advisory ``flock`` on ``path`` (created, and removed on release).

    Parameters
    ----------
    path : str
        The lock file.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), ".out.zarr.lock")
    >>> with FileLock(path):
    ...     os.path.exists(path), FileLock(path).acquire(blocking=False)
    (True, False)
    >>> os.path.exists(path)
    False
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock; wait for it, or return ``False`` at once if ``blocking=False``."""
        while True:
            fd = open_lock_file(self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            try:  # the holder before us may have removed the file: lock the current one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                os.ftruncate(fd, 0)
                with contextlib.suppress(OSError):  # a full disk: the lock holds, unnamed
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return True
            os.close(fd)

    def holder(self) -> str:
        """The process id of the lock's holder as it wrote it ("?" when unknown)."""
        try:
            with open(self.path, encoding="ascii", errors="replace") as f:
                return f.read(32).strip() or "?"
        except FileNotFoundError:
            return "?"

    def release(self) -> None:
        """Remove the lock file and release the lock (no-op when not held)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _hidden(target: str, suffix: str) -> str:
    """``.<name>.<suffix>`` in the real folder of ``target``, however that is spelled.

    The folder is resolved (symbolic links, ``..`` after one), so that every spelling of
    one output (relative or absolute, through a linked folder, a trailing slash) names
    the same lock: two locks on one output would deadlock the writer holding both.
    """
    parent, name = os.path.split(target.rstrip("/") or "/")
    return os.path.join(os.path.realpath(parent or "."), f".{name}.{suffix}")


def output_lock(target: str | os.PathLike[str]) -> FileLock:
    """The lock that serialises the commits of ``target``: ``.<name>.lock`` beside it.

    Examples
    --------
    >>> output_lock("/data/out.zarr").path
    '/data/.out.zarr.lock'
    """
    return FileLock(_hidden(os.fspath(target), "lock"))


def journal_path(target: str | os.PathLike[str]) -> str:
    """The journal of a commit that includes ``target``: ``.<name>.journal`` beside it.

    Examples
    --------
    >>> journal_path("/data/out.zarr")
    '/data/.out.zarr.journal'
    """
    return _hidden(os.fspath(target), "journal")


_TEMPORARY = re.compile(r"\.(?P<name>.+)\.tmp-[0-9a-f]{32}")


def journaled(tmp: str) -> bool:
    """Whether the temporary ``tmp`` is named by the journal beside its output.

    Such a temporary holds data an unfinished commit still puts in place (or the
    previous output it replaced): it is kept until the journal is finished. A journal
    that cannot be read keeps every temporary of its output.

    Examples
    --------
    >>> journaled("/nowhere/.out.zarr.tmp-" + "0" * 32)
    False
    """
    folder, base = os.path.split(tmp)
    match = _TEMPORARY.fullmatch(base)
    if match is None:
        return False
    journal = os.path.join(folder, f".{match['name']}.journal")
    try:  # not blocking on a FIFO put there
        fd = os.open(journal, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            text = f.read(1 << 20)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        swaps = json.loads(text)["swaps"]
        return any(swap["temporary"] == tmp for swap in swaps)
    except (ValueError, KeyError, TypeError):
        return True


@contextlib.contextmanager
def output_locks(targets: Iterable[str | os.PathLike[str]]) -> Iterator[None]:
    """Hold :func:`output_lock` of every target at once, all taken in one order.

    The locks are taken in the order of their paths, so two holders of overlapping sets
    (two runs of one pipeline spec) never wait for each other in a cycle: one takes
    them all, the other waits for it. Each is released (its file removed) on leaving,
    or by the kernel if the process dies; a killed holder's lock files are taken over
    by the next holder, as :class:`FileLock`'s are. Each lock holds one open file.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> targets = [os.path.join(folder, name) for name in ("b.tif", "a.zarr")]
    >>> with output_locks(targets):
    ...     sorted(os.listdir(folder)), output_lock(targets[0]).acquire(blocking=False)
    (['.a.zarr.lock', '.b.tif.lock'], False)
    >>> os.listdir(folder)
    []
    """
    locks = sorted({output_lock(t).path for t in targets})
    room_for(len(locks))
    with contextlib.ExitStack() as held:
        for path in locks:
            held.enter_context(FileLock(path))
        yield


def remove(path: str) -> None:
    """Remove the file, link or folder at ``path`` if there is one."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


class Temporary:
    r"""A hidden, locked temporary sibling of an output, removed by :meth:`close`.

    Use :meth:`beside` to make one; ``path`` does not exist yet (the writer creates a
    file or a folder there).

    Examples
    --------
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "band.tif")
    >>> with Temporary.beside(target) as tmp:
    ...     with open(tmp.path, "wb") as f:
    ...         _ = f.write(b"II*\x00")
    ...     with output_lock(target):
    ...         commit(tmp.path, target)
    >>> sorted(os.listdir(os.path.dirname(target)))
    ['band.tif']
    """

    def __init__(self, path: str, lock: FileLock) -> None:
        self.path = path
        self.lock = lock

    @classmethod
    def beside(cls, target: str | os.PathLike[str]) -> Temporary:
        """Lock and name a new temporary ``.<name>.tmp-<32 hex digits>`` next to ``target``."""
        path = _hidden(os.fspath(target), f"tmp-{secrets.token_hex(16)}")
        lock = FileLock(path + ".lock")
        lock.acquire()
        return cls(path, lock)

    def close(self) -> None:
        """Remove whatever is at ``path`` (the data or, after a commit, the old output)."""
        remove(self.path)
        self.lock.release()

    def __enter__(self) -> Temporary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def discard(path: str) -> None:
    """Remove the temporary at ``path`` and its lock file, from whichever process.

    For a temporary that another process made and still holds (a writer whose commit ran
    on a worker): once the temporary is gone, its lock guards nothing.
    """
    remove(path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path + ".lock")


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap ``a`` and ``b`` atomically; ``False`` where the kernel or file system cannot.

    Examples
    --------
    >>> from pathlib import Path
    >>> _ = Path("a").write_text("new"), Path("b").write_text("old")
    >>> exchange("a", "b")  # Linux renameat2(RENAME_EXCHANGE)
    True
    >>> Path("a").read_text(), Path("b").read_text()
    ('old', 'new')
    """
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def commit(tmp: str, target: str | os.PathLike[str]) -> None:
    """Put ``tmp`` at ``target``; call it holding :func:`output_lock` of ``target``.

    A file replaces a file atomically. A folder takes the place of nothing by a rename,
    and of an existing folder by an atomic exchange, after which the previous output is
    at ``tmp`` (removed by :meth:`Temporary.close`). Where the file system cannot
    exchange, the previous output is renamed to ``.<name>.old-<hex>`` first and removed
    after; a job killed between the two renames leaves it there, never removed
    automatically, as it then holds the only copy.
    """
    target = os.fspath(target)
    if not os.path.isdir(tmp) or not os.path.lexists(target):
        os.replace(tmp, target)
    elif not exchange(tmp, target):
        old = _hidden(target, f"old-{secrets.token_hex(16)}")
        os.rename(target, old)
        os.rename(tmp, target)
        remove(old)


def missing_folders(folder: str) -> list[str]:
    """The folders that ``os.makedirs(folder)`` would create, deepest first."""
    missing = []
    folder = os.path.abspath(folder)
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def remove_empty(folders: list[str]) -> None:
    """Remove those of ``folders`` (deepest first) that are empty: what a failed write made."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:  # not empty (an output, another writer's temporary), or gone
            continue


def _held(lock_path: str) -> bool:
    lock = FileLock(lock_path)
    if lock.acquire(blocking=False):
        lock.release()
        return False
    return True


def sweep(target: str | os.PathLike[str]) -> list[str]:
    """Remove the temporaries of ``target`` that no live writer holds; return them."""
    pattern = glob.escape(_hidden(os.fspath(target), "tmp-")) + "*"
    removed = []
    for path in sorted(glob.glob(pattern)):
        if path.endswith(".lock"):
            if not os.path.lexists(path.removesuffix(".lock")) and not _held(path):
                removed.append(path)
            continue
        lock = FileLock(path + ".lock")
        if journaled(path):
            continue
        if lock.acquire(blocking=False):
            remove(path)
            lock.release()
            removed.append(path)
    return removed


@contextlib.contextmanager
def replacing(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Temporary]:
    """Write into the yielded temporary; on success it is committed under the lock.

    On an exception the temporary is removed and the target left as it was. With
    ``overwrite=False`` a target there when the lock is taken (another writer committed
    first) is kept: :class:`~lazyraster.errors.OutputExistsError`, the temporary removed.

    Examples
    --------
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "copy.bin")
    >>> with replacing(target) as tmp:
    ...     with open(tmp.path, "wb") as f:
    ...         _ = f.write(b"data")
    >>> open(target, "rb").read()
    b'data'
    """
    with Temporary.beside(target) as tmp:
        yield tmp
        with output_lock(target):
            if not overwrite and os.path.lexists(target):
                raise OutputExistsError(
                    f"{os.fspath(target)} already exists (written meanwhile): pass "
                    "overwrite=True to replace it"
                )
            commit(tmp.path, target)
        sweep(target)


# The writers' temporaries: each one whose lock this process holds, by path, from
# _hold until _release (or _discard_local).
_WRITING: dict[str, Temporary] = {}


def _release(tmp: str) -> None:
    """Release the lock of the temporary ``tmp`` if this process holds it."""
    held = _WRITING.pop(tmp, None)
    if held is not None:
        held.close()


def _hold(target: str) -> str:
    """Name and lock a new local temporary for ``target`` (step 1 above); return its path.

    A commit of ``target`` that a killed run left unfinished is finished first; then dead
    temporaries of ``target`` are removed, so that the space they hold (after a full
    disk, say) is free for this write.
    """
    from lazyraster.io._journal import finish_commits

    finish_commits(target)
    sweep(target)
    held = Temporary.beside(target)
    _WRITING[held.path] = held
    return held.path


def _discard_local(tmp: str) -> None:
    """Remove the local temporary ``tmp`` (if still there) and its lock.

    A temporary named by an unfinished commit's journal is kept (its lock released):
    the commit's next locker puts it in place.
    """
    if journaled(tmp):
        held = _WRITING.pop(tmp, None)
        if held is not None:
            held.lock.release()
        return
    _release(tmp)
    discard(tmp)
