"""A commit of several outputs killed between two swaps is finished by the next locker.

Real processes: a child run commits three outputs together (a Zarr store and a GeoTIFF in
one folder, a GeoTIFF in another, which may be on another file system) and is killed
with ``SIGKILL`` at a marker point of its commit: once the journal is written, or after
``n`` swaps. The old outputs hold the constant 1, the killed run's the constant 2, so a
mixed set shows in the values read back (with Zarr and rasterio, not the writers).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr
from click.testing import CliRunner

import lazyraster
from lazyraster.cli import main
from lazyraster.errors import UnfinishedCommitError
from lazyraster.io import (
    commit_together,
    discard_temporaries,
    finish_commits,
    write_geotiff,
    write_zarr,
)
from lazyraster.plot import quicklook
from lazyraster.testing import synthetic_raster

from ._support import hidden_leftovers

SRC = Path(lazyraster.__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(SRC)}
SHM = Path("/dev/shm")

# Commit the three outputs with the constant ``value``, or (``finish``) finish the commit
# left on the first: killed by SIGKILL while the journal is written (``link``), once it
# is written (``journal``) or after ``n`` swaps (``swap:n``), the commit's or the
# finishing's.
RUN = textwrap.dedent(
    """
    import os, signal, sys
    import dask
    import xarray as xr
    from lazyraster.io import _atomic, commit_together, discard_temporaries
    from lazyraster.io import write_geotiff, write_zarr
    from lazyraster.testing import synthetic_raster

    zarr, tif, other, value, kill = sys.argv[1:]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if kill == "link":  # the journal written, none of its links yet
        linked = os.link
        def link(src, dst):
            if str(dst).endswith(".journal"):
                die()
            linked(src, dst)
        os.link = link
    elif kill == "journal":
        from lazyraster.io import _journal

        written = _journal.write
        def write(swaps):
            written(swaps)
            die()
        _journal.write = write
    else:
        n, done, swap = int(kill.split(":")[1]), [], _atomic.commit
        def commit(tmp, target):
            swap(tmp, target)
            done.append(target)
            if len(done) == n:
                die()
        _atomic.commit = commit

    if value == "finish":
        from lazyraster.io import finish_commits

        finish_commits(zarr)
        sys.exit(0)
    da = synthetic_raster((32, 48), name="v", chunks={"y": 16, "x": 48})
    da = xr.full_like(da, float(value))
    writes = [
        write_zarr(da, zarr, mode="w", compute=False),
        write_geotiff(da, tif, mode="w", blocksize=128, compute=False),
        write_geotiff(da, other, mode="w", blocksize=128, compute=False),
    ]
    try:
        dask.compute(*commit_together(*writes), scheduler="threads", num_workers=2)
    finally:
        discard_temporaries(*writes)
    """
)


def _raster(value: float) -> xr.DataArray:
    da = synthetic_raster((32, 48), name="v", chunks={"y": 16, "x": 48})
    return xr.full_like(da, value)


def _values(path: Path) -> set[float]:
    """The distinct values of the output at ``path`` (read by Zarr or by rasterio)."""
    if path.suffix == ".zarr":
        with xr.open_zarr(path) as ds:
            return set(np.unique(ds["v"].values).tolist())
    with rasterio.open(path) as src:
        return set(np.unique(src.read()).tolist())


def _commit(paths: list[Path], value: float) -> None:
    """Commit the constant ``value`` to the three outputs together (``mode="w"``)."""
    da = _raster(value)
    writes = [
        write_zarr(da, paths[0], mode="w", compute=False),
        write_geotiff(da, paths[1], mode="w", blocksize=128, compute=False),
        write_geotiff(da, paths[2], mode="w", blocksize=128, compute=False),
    ]
    try:
        dask.compute(*commit_together(*writes))
    finally:
        discard_temporaries(*writes)


@pytest.fixture(params=["one folder", "/dev/shm"])
def outputs(request, tmp_path):
    """Three old outputs (the constant 1): a Zarr store, a GeoTIFF, and one elsewhere."""
    if request.param == "/dev/shm":
        if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("no /dev/shm on another file system")
        elsewhere = Path(os.path.realpath(SHM)) / f"lazyraster-{tmp_path.name}-{os.getpid()}"
    else:
        elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    paths = [tmp_path / "a.zarr", tmp_path / "a.tif", elsewhere / "b.tif"]
    _commit(paths, 1.0)
    yield paths
    if request.param == "/dev/shm":
        shutil.rmtree(elsewhere, ignore_errors=True)


def _killed(paths: list[Path], kill: str, value: str = "2") -> None:
    """Run the child committing ``value`` (or finishing), killed at ``kill``."""
    proc = subprocess.run(
        [sys.executable, "-c", RUN, *map(str, paths), value, kill],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _journals(paths: list[Path]) -> list[bool]:
    return [(p.parent / f".{p.name}.journal").exists() for p in paths]


def _clean(paths: list[Path]) -> bool:
    """No journal, temporary or lock left beside any output."""
    folders = {p.parent for p in paths}
    left = [n for f in folders for n in os.listdir(f) if n.startswith(".")]
    return not left and not any(hidden_leftovers(f) for f in folders)


@pytest.mark.parametrize("kill", ["journal", "swap:1", "swap:2", "swap:3"])
def test_a_killed_commit_is_finished_by_finish_commits(outputs, kill):
    _killed(outputs, kill)
    assert all(_journals(outputs))  # whoever touches any output finds it
    swapped = finish_commits(outputs[2])
    assert [_values(p) for p in outputs] == [{2.0}] * 3
    done = {"journal": 0, "swap:1": 1, "swap:2": 2, "swap:3": 3}[kill]
    assert sorted(swapped) == sorted(os.path.realpath(p) for p in outputs[done:])
    assert _clean(outputs)
    assert finish_commits(outputs[0]) == []  # idempotent: nothing left to do


def test_a_kill_while_the_journal_is_written_leaves_the_old_set_and_the_next_commit_cleans(
    outputs,
):
    _killed(outputs, "link")
    assert not any(_journals(outputs))
    assert [n for n in os.listdir(outputs[0].parent) if ".journal-tmp-" in n]
    assert [_values(p) for p in outputs] == [{1.0}] * 3
    _commit(outputs, 3.0)
    assert [_values(p) for p in outputs] == [{3.0}] * 3
    assert _clean(outputs)


def test_a_write_of_one_output_finishes_the_commit_first(outputs):
    _killed(outputs, "swap:1")  # the store is new, the GeoTIFFs old
    write_zarr(_raster(3.0), outputs[0], mode="w")
    assert [_values(p) for p in outputs] == [{3.0}, {2.0}, {2.0}]
    assert _clean(outputs)


def test_a_second_kill_while_finishing_is_finished_by_the_next(outputs):
    _killed(outputs, "swap:1")
    _killed(outputs, "swap:1", value="finish")  # the finishing killed after one more swap
    assert [_values(p) for p in outputs] == [{2.0}, {2.0}, {1.0}]
    assert all(_journals(outputs))
    assert finish_commits(outputs[1]) == [os.path.realpath(outputs[2])]
    assert [_values(p) for p in outputs] == [{2.0}] * 3
    assert _clean(outputs)


def test_quicklook_finishes_the_commit_first(outputs, tmp_path):
    _killed(outputs, "swap:2")  # the GeoTIFF elsewhere is still old
    png = quicklook(outputs[2], tmp_path / "pictures" / "b.png")
    assert png.exists()
    assert [_values(p) for p in outputs] == [{2.0}] * 3
    assert _clean(outputs)


def _temporary(path: Path) -> Path:
    (tmp,) = [
        p
        for p in path.parent.iterdir()
        if p.name.startswith(f".{path.name}.tmp-") and p.suffix != ".lock"
    ]
    return tmp


def test_a_removed_temporary_is_an_error_then_abandon_drops_the_journal(outputs, tmp_path):
    _killed(outputs, "swap:1")
    shutil.rmtree(_temporary(outputs[2]))  # the prepared data of b.tif, removed by hand
    with pytest.raises(UnfinishedCommitError, match="abandon=True") as err:
        finish_commits(outputs[0])
    assert str(outputs[2].name) in str(err.value)
    with pytest.raises(UnfinishedCommitError):
        write_geotiff(_raster(4.0), outputs[1], mode="w")
    result = CliRunner().invoke(
        main, ["quicklook", str(outputs[1]), "--out", str(tmp_path / "a.png")]
    )
    assert result.exit_code != 0
    assert "abandon=True" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "a.png").exists()
    assert [_values(p) for p in outputs] == [{2.0}, {1.0}, {1.0}]  # nothing touched

    # the documented fix: abandon, then write the outputs again
    assert finish_commits(outputs[2], abandon=True) == [os.path.realpath(outputs[1])]
    assert [_values(p) for p in outputs] == [{2.0}, {2.0}, {1.0}]
    assert _clean(outputs)
    write_geotiff(_raster(2.0), outputs[2], mode="w")
    assert [_values(p) for p in outputs] == [{2.0}] * 3


def test_a_torn_journal_is_refused_then_abandoned(outputs):
    _killed(outputs, "journal")
    journal = outputs[2].parent / f".{outputs[2].name}.journal"
    text = journal.read_text()
    journal.write_text(text[: len(text) // 2])
    with pytest.raises(UnfinishedCommitError, match="torn") as err:
        finish_commits(outputs[2])
    assert "abandon=True" in str(err.value)
    with pytest.raises(UnfinishedCommitError, match="torn"):
        finish_commits(outputs[0])  # the journal beside a.zarr names b.tif: its link is torn
    assert finish_commits(outputs[2], abandon=True) == []
    assert not journal.exists()
    # the journal beside the others is whole: it is finished, all but b.tif (no link) ...
    assert finish_commits(outputs[0]) == []  # ... a journal missing a link swaps nothing
    assert [_values(p) for p in outputs] == [{1.0}] * 3
    assert _clean(outputs)


def test_a_journal_naming_a_path_that_is_not_a_temporary_is_refused(outputs, tmp_path):
    _killed(outputs, "swap:1")
    precious = tmp_path / "precious.tif"
    precious.write_bytes(b"keep")
    for link in [p.parent / f".{p.name}.journal" for p in outputs]:
        record = json.loads(link.read_text())
        record["swaps"][1]["temporary"] = record["swaps"][1]["data"] = str(precious)
        link.unlink()  # the links of one folder share a file: rewrite each
        link.write_text(json.dumps(record))
    with pytest.raises(UnfinishedCommitError, match="is not a temporary of"):
        finish_commits(outputs[1])
    assert precious.read_bytes() == b"keep"
    assert [_values(p) for p in outputs] == [{2.0}, {1.0}, {1.0}]


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give the journal to another user")
def test_a_journal_of_another_user_is_refused(outputs):
    _killed(outputs, "swap:1")
    journal = outputs[0].parent / f".{outputs[0].name}.journal"
    os.chown(journal, 65534, 65534)
    with pytest.raises(UnfinishedCommitError, match="another user") as err:
        finish_commits(outputs[0])
    assert "uid 65534" in str(err.value)
    with pytest.raises(UnfinishedCommitError, match="another user"):
        finish_commits(outputs[0], abandon=True)  # never removed on their behalf
    assert journal.exists()


def test_a_swap_that_raises_leaves_the_journal_for_the_next_locker(outputs, monkeypatch):
    from lazyraster.io import _atomic

    swap, done = _atomic.commit, []

    def commit(tmp, target):
        if len(done) == 1:
            raise PermissionError(13, "Permission denied", target)
        swap(tmp, target)
        done.append(target)

    monkeypatch.setattr(_atomic, "commit", commit)
    with pytest.raises(UnfinishedCommitError, match="stopped after 1 of 3 swaps") as err:
        _commit(outputs, 2.0)
    assert isinstance(err.value.__cause__, PermissionError)
    assert [_values(p) for p in outputs] == [{2.0}, {1.0}, {1.0}]
    assert all(_journals(outputs))
    monkeypatch.setattr(_atomic, "commit", swap)  # the cause fixed
    assert len(finish_commits(outputs[0])) == 2
    assert [_values(p) for p in outputs] == [{2.0}] * 3
    assert _clean(outputs)


def test_a_folder_at_a_journals_path_is_refused_naming_it(tmp_path):
    """A folder (none of lazyraster's) where the journal of ``o.tif`` would be: every
    finish and write of ``o.tif`` refuses with a message naming it (where they raised
    IsADirectoryError), abandon=True too, and its content is kept."""
    out = tmp_path / "o.tif"
    write_geotiff(_raster(1.0), out, blocksize=128)
    folder = tmp_path / ".o.tif.journal"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    for abandon in (False, True):
        with pytest.raises(UnfinishedCommitError, match=r"is a folder.*move it elsewhere"):
            finish_commits(out, abandon=abandon)
    with pytest.raises(UnfinishedCommitError, match="is a folder"):
        write_geotiff(_raster(2.0), out, mode="w", blocksize=128)
    assert (folder / "notes.txt").read_text() == "keep"
    assert _values(out) == {1.0}


# Finish the commit on argv[1] (abandon if argv[2] is "abandon"); print what it said.
FINISH = textwrap.dedent(
    """
    import sys
    from lazyraster.errors import UnfinishedCommitError
    from lazyraster.io import finish_commits

    try:
        print(finish_commits(sys.argv[1], abandon=sys.argv[2] == "abandon"))
    except UnfinishedCommitError as err:
        print(err)
    """
)


def test_a_fifo_at_a_journals_path_is_refused_not_waited_on(tmp_path):
    """A FIFO where the journal of ``o.tif`` would be: finishing refuses it at once
    (where it waited forever for a writer, holding the output's lock), abandon=True
    removes it, and ``o.tif`` can be written again."""
    out = tmp_path / "o.tif"
    write_geotiff(_raster(1.0), out, blocksize=128)
    os.mkfifo(tmp_path / ".o.tif.journal")

    def finish(mode: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", FINISH, str(out), mode],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "it is not a file" in finish("refuse")
    assert finish("abandon").strip() == "[]"
    assert not os.path.lexists(tmp_path / ".o.tif.journal")
    write_geotiff(_raster(2.0), out, mode="w", blocksize=128)
    assert _values(out) == {2.0}


def test_a_journal_link_removed_after_a_swap_is_refused_not_taken_as_done(outputs):
    """Killed after 1 swap, then the journal beside b.tif removed by hand (a cleanup of
    dot files, or ``abandon=True`` where it was torn): finishing from another output
    refuses, naming b.tif and abandon=True, where it took the journal for one killed
    while being written and silently dropped the prepared data of a.tif and b.tif (the
    set left part new, part old, with no journal). The fix puts a.tif in place and
    leaves b.tif as it is, to be written again."""
    _killed(outputs, "swap:1")
    (outputs[2].parent / f".{outputs[2].name}.journal").unlink()
    with pytest.raises(UnfinishedCommitError, match="abandon=True") as err:
        finish_commits(outputs[0])
    assert f"journal beside {os.path.realpath(outputs[2])} is gone" in str(err.value)
    with pytest.raises(UnfinishedCommitError, match="is gone"):
        write_geotiff(_raster(4.0), outputs[1], mode="w", blocksize=128)
    assert [_values(p) for p in outputs] == [{2.0}, {1.0}, {1.0}]  # nothing touched
    assert finish_commits(outputs[1], abandon=True) == [os.path.realpath(outputs[1])]
    assert [_values(p) for p in outputs] == [{2.0}, {2.0}, {1.0}]
    assert _clean(outputs)
    write_geotiff(_raster(2.0), outputs[2], mode="w", blocksize=128)
    assert [_values(p) for p in outputs] == [{2.0}] * 3
