"""Writers under hostile conditions: foreign outputs, concurrent writers, SIGKILL, disk full.

Concurrency and kills use real processes (``subprocess``), never threads standing in for
them; disk full uses a real 2 MiB tmpfs (skipped where it cannot be mounted).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr
from tests.conftest import tmpfs
from tests.io._support import tree

import lazyraster
from lazyraster import OutputExistsError, write_geotiff, write_zarr
from lazyraster.io._atomic import FileLock, Temporary, output_lock, sweep
from lazyraster.testing import synthetic_raster

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
SRC = Path(lazyraster.__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(SRC)}


@pytest.fixture
def raster() -> xr.DataArray:
    return synthetic_raster((40, 56), nan_fraction=0.1, name="ndvi", chunks={"y": 20, "x": 28})


def hidden(folder: Path) -> list[str]:
    """Every hidden entry of ``folder``: temporaries, set-aside outputs, lock files."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------ overwrite: only our own outputs


def test_overwrite_refuses_a_folder_that_is_not_a_zarr_store(tmp_path, raster):
    target = tmp_path / "results"
    (target / "sub").mkdir(parents=True)
    (target / "thesis.tex").write_text("years of work")
    (target / "sub" / "data.csv").write_text("1,2,3")
    before = tree(target)
    refusal = rf"{re.escape(str(target))} is not a Zarr store .*move it away"
    with pytest.raises(OutputExistsError, match=refusal):
        write_zarr(raster, target, mode="w")
    assert tree(target) == before and hidden(tmp_path) == []
    (tmp_path / "file.zarr").write_text("not a folder")
    with pytest.raises(OutputExistsError, match=r"file\.zarr is not a Zarr store"):
        write_zarr(raster, tmp_path / "file.zarr", mode="w")
    assert (tmp_path / "file.zarr").read_text() == "not a folder"


def test_overwrite_refuses_a_link_and_a_foreign_group(tmp_path, raster):
    real = tmp_path / "real.zarr"
    write_zarr(raster, real)
    (tmp_path / "link.zarr").symlink_to(real)
    with pytest.raises(OutputExistsError, match="not a link"):
        write_zarr(raster, tmp_path / "link.zarr", mode="w")
    store = tmp_path / "spring.zarr"
    write_zarr(raster, store, group="2020")
    (store / "notes").mkdir()
    (store / "notes" / "readme.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match=r"spring\.zarr:notes is not a Zarr store"):
        write_zarr(raster, store, group="notes", mode="w")
    assert (store / "notes" / "readme.txt").read_text() == "keep me"


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_overwrite_replaces_our_store_and_an_empty_folder(tmp_path, raster, zarr_format):
    target = tmp_path / "out.zarr"
    write_zarr(raster, target, zarr_format=zarr_format)
    write_zarr(raster + 1, target, mode="w", zarr_format=zarr_format)
    np.testing.assert_array_equal(xr.open_zarr(target).ndvi.values, raster.values + 1)
    (tmp_path / "empty.zarr").mkdir()
    write_zarr(raster, tmp_path / "empty.zarr", mode="w")
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "empty.zarr").ndvi.values, raster.values)
    assert hidden(tmp_path) == []


@pytest.mark.parametrize(
    ("metadata", "user_file"),
    [
        ({"zarr.json": ""}, "thesis.docx"),  # an empty file named like Zarr metadata
        ({".zgroup": '{"zarr_format": 2}'}, "sub/data.csv"),  # valid metadata, user files
        ({"zarr.json": '{"zarr_format": 3, "node_type": "group"}'}, "notes.txt"),
    ],
)
def test_overwrite_refuses_a_zarr_lookalike_holding_user_files(
    tmp_path, raster, metadata, user_file
):
    target = tmp_path / "results"
    target.mkdir()
    for name, text in metadata.items():
        (target / name).write_text(text)
    (target / user_file).parent.mkdir(parents=True, exist_ok=True)
    (target / user_file).write_text("years of work")
    before = tree(target)
    with pytest.raises(OutputExistsError, match=rf"{re.escape(str(target))} is not a Zarr store"):
        write_zarr(raster, target, mode="w")
    assert tree(target) == before


def test_overwrite_still_replaces_stores_with_groups(tmp_path, raster):
    for zarr_format in (2, 3):
        store = tmp_path / f"v{zarr_format}.zarr"
        write_zarr(raster, store, group="2020", zarr_format=zarr_format)
        write_zarr(raster, store, group="2021", zarr_format=zarr_format)
        write_zarr(raster + 1, store, mode="w", zarr_format=zarr_format)
        xr.testing.assert_equal(xr.open_zarr(store).ndvi.load(), (raster + 1).load())


def test_write_zarr_does_not_write_through_a_link_planted_as_its_lock(tmp_path):
    """A link at ``.<name>.lock`` made the writer create the file it points at."""
    (tmp_path / "victim").mkdir()
    (tmp_path / ".out.zarr.lock").symlink_to(tmp_path / "victim" / "created-here")
    with pytest.raises(OutputExistsError, match="is a link"):
        write_zarr(synthetic_raster((4, 4), name="a"), tmp_path / "out.zarr")
    assert not (tmp_path / "victim" / "created-here").exists()


def test_geotiff_overwrite_replaces_only_a_tiff(tmp_path, raster):
    notes = tmp_path / "out.tif"
    notes.write_text("not an image")
    with pytest.raises(OutputExistsError, match=rf"{re.escape(str(notes))} is not a TIFF file"):
        write_geotiff(raster, notes, mode="w")
    assert notes.read_text() == "not an image"
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(OutputExistsError, match=r"dir\.tif is not a TIFF file"):
        write_geotiff(raster, tmp_path / "dir.tif", mode="w")
    notes.unlink()
    write_geotiff(raster, notes)
    write_geotiff(raster * 2, notes, mode="w")
    with rasterio.open(notes) as src:
        np.testing.assert_allclose(src.read(1), raster.values * 2, equal_nan=True)
    assert hidden(tmp_path) == []


# ------------------------------------------------------------ concurrent writers

# Each writer's first block waits until every writer has started one, so the writers'
# temporaries are alive at the same time (on the old code the first to finish deleted
# the others' temporary folders, and the last moved a store without metadata in place).
# The writers race ROUNDS times, each round on its own output, in one process each (and,
# with the process scheduler, one pool of worker processes each): starting the processes
# is most of the cost, and a race may go one way or the other, so it is run several times.
ROUNDS = 3
WRITER = textwrap.dedent(
    """
    import concurrent.futures, multiprocessing, os, sys, time
    import dask
    from lazyraster import write_geotiff, write_zarr
    from lazyraster.testing import synthetic_raster

    kind, folder, index, n, rounds, scheduler = sys.argv[1:]
    index, n, rounds = int(index), int(n), int(rounds)
    pool = None
    if scheduler == "processes":
        spawn = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn)

    def writer(rendezvous):
        def meet(block):
            open(os.path.join(rendezvous, f"started-{index}"), "a").close()
            for _ in range(6000):  # at most 60 s, then go on anyway
                if len(os.listdir(rendezvous)) >= n:
                    break
                time.sleep(0.01)
            return block + index
        return meet

    for round in range(rounds):
        rendezvous = os.path.join(folder, f"rendezvous-{round}")
        target = os.path.join(folder, f"round-{round}", "out.zarr" if kind == "zarr" else "out.tif")
        da = synthetic_raster((64, 256), name="ndvi", chunks={"y": 64, "x": 64})
        da = da.copy(data=da.data.map_blocks(writer(rendezvous), dtype=da.dtype))
        with dask.config.set(scheduler=scheduler, num_workers=2, pool=pool):
            if kind == "zarr":
                write_zarr(da, target, mode="w")
            else:
                write_geotiff(da, target, mode="w", blocksize=128)
    """
)


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
@pytest.mark.parametrize("kind", ["zarr", "cog"])
def test_concurrent_writers_of_one_output_leave_one_readable_output(tmp_path, kind, scheduler):
    n = 3
    for round in range(ROUNDS):
        (tmp_path / f"rendezvous-{round}").mkdir()
        (tmp_path / f"round-{round}").mkdir()
    command = [sys.executable, "-c", WRITER, kind, str(tmp_path)]
    procs = [
        subprocess.Popen(
            [*command, str(i), str(n), str(ROUNDS), scheduler],
            env=ENV,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * n, errors
    base = synthetic_raster((64, 256), name="ndvi").values
    for round in range(ROUNDS):
        folder = tmp_path / f"round-{round}"
        if kind == "zarr":
            values = xr.open_zarr(folder / "out.zarr").ndvi.values
        else:
            with rasterio.open(folder / "out.tif") as src:
                values = src.read(1)
        assert any(np.array_equal(values, base + i, equal_nan=True) for i in range(n)), round
        assert hidden(folder) == [], round  # no temporary, set-aside output or lock left
        assert len(os.listdir(tmp_path / f"rendezvous-{round}")) == n  # all three raced


# ------------------------------------------------------------ live and dead temporaries

HOLDER = textwrap.dedent(
    """
    import os, sys
    from lazyraster.io._atomic import Temporary

    tmp = Temporary.beside(sys.argv[1])
    os.makedirs(os.path.join(tmp.path, "ndvi"))
    print(tmp.path, flush=True)
    sys.stdin.read()  # hold the temporary until killed
    """
)


def test_a_live_writers_temporary_is_kept_and_a_killed_ones_swept(tmp_path, raster):
    target = tmp_path / "out.zarr"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(target)],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    live = Path(holder.stdout.readline().strip())
    write_zarr(raster, target)
    assert live.is_dir(), "the next write removed a temporary a live writer holds"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    write_zarr(raster + 1, target, mode="w")
    assert not live.exists() and hidden(tmp_path) == []
    np.testing.assert_array_equal(xr.open_zarr(target).ndvi.values, raster.values + 1)


KILLED = textwrap.dedent(
    """
    import os, sys, time
    import dask
    from lazyraster import write_geotiff, write_zarr
    from lazyraster.testing import synthetic_raster

    kind, target, marker = sys.argv[1:]

    def stall(block, block_info=None):
        if block_info[0]["chunk-location"] == (0, 1):
            open(marker, "w").close()  # some blocks are written: kill now
            time.sleep(600)
        return block * 2

    da = synthetic_raster((64, 256), name="ndvi", chunks={"y": 64, "x": 64})
    da = da.copy(data=da.data.map_blocks(stall, dtype=da.dtype))
    with dask.config.set(scheduler="threads"):
        if kind == "zarr":
            write_zarr(da, target, mode="w")
        else:
            write_geotiff(da, target, mode="w", blocksize=128)
    """
)


@pytest.mark.parametrize("kind", ["zarr", "cog"])
def test_sigkill_mid_write_keeps_old_output_and_next_run_cleans(tmp_path, kind):
    da = synthetic_raster((64, 256), name="ndvi", chunks={"y": 64, "x": 64})
    target = tmp_path / ("out.zarr" if kind == "zarr" else "out.tif")
    if kind == "zarr":
        write_zarr(da, target)
    else:
        write_geotiff(da, target, blocksize=128)
    before = tree(tmp_path)
    marker = tmp_path.parent / f"{tmp_path.name}-marker"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, kind, str(target), str(marker)], env=ENV)
    while not marker.exists():
        assert proc.poll() is None, "the writer ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    left = hidden(tmp_path)
    assert any(".tmp-" in name for name in left), left
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith(".")} == before
    if kind == "zarr":
        np.testing.assert_array_equal(xr.open_zarr(target).ndvi.values, da.values)
        write_zarr(da + 1, target, mode="w")
    else:
        with rasterio.open(target) as src:
            np.testing.assert_array_equal(src.read(1), da.values)
        write_geotiff(da + 1, target, mode="w", blocksize=128)
    assert hidden(tmp_path) == []


# ------------------------------------------------------------ the lock itself


def test_lock_is_exclusive_across_processes_and_removed_after(tmp_path):
    target = tmp_path / "out.zarr"
    with output_lock(target):
        probe = subprocess.run(
            [sys.executable, "-c", "import sys; from lazyraster.io._atomic import output_lock; "
             "sys.exit(0 if output_lock(sys.argv[1]).acquire(blocking=False) else 3)",
             str(target)],
            env=ENV,
        )  # fmt: skip
        assert probe.returncode == 3
    assert hidden(tmp_path) == []
    lock = FileLock(str(tmp_path / ".out.zarr.lock"))
    assert lock.acquire(blocking=False)
    lock.release()


def test_sweep_removes_only_unheld_temporaries_of_that_output(tmp_path):
    target = tmp_path / "out.zarr"
    held = Temporary.beside(target)
    os.makedirs(held.path)
    dead = tmp_path / ".out.zarr.tmp-0123"  # left by an old version or a killed writer
    (dead / "c").mkdir(parents=True)
    orphan_lock = tmp_path / ".out.zarr.tmp-4567.lock"
    orphan_lock.touch()
    other = tmp_path / ".other.zarr.tmp-89ab"
    other.mkdir()
    assert sorted(sweep(target)) == [str(dead), str(orphan_lock)]
    assert Path(held.path).is_dir() and other.is_dir()
    held.close()
    assert hidden(tmp_path) == [".other.zarr.tmp-89ab"]


# ------------------------------------------------------------ disk full


@pytest.fixture
def small_disk(tmp_path):
    with tmpfs(tmp_path / "small", "size=2m") as mount:
        yield mount


@pytest.mark.parametrize("kind", ["zarr", "cog"])
def test_disk_full_fails_clearly_and_keeps_the_old_output(small_disk, kind):
    old = synthetic_raster((40, 56), name="ndvi", chunks={"y": 20, "x": 28})
    noise = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)  # incompressible
    big = synthetic_raster((1024, 1024), name="ndvi").copy(data=noise).chunk(256)
    target = small_disk / ("out.zarr" if kind == "zarr" else "out.tif")
    write = write_zarr if kind == "zarr" else write_geotiff
    write(old, target)
    before = tree(small_disk)
    full = rf"no space left on the device while writing {re.escape(str(target))}"
    # one task at a time, so that no task still runs when the write fails: with threads, a
    # task already running may add a block to the temporary after it is removed, which
    # the next write of that output removes (test_sweep_removes_only_unheld_temporaries...)
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(OSError, match=full):
            write(big, target, mode="w")
        assert tree(small_disk) == before and hidden(small_disk) == []
        with pytest.raises(OSError, match="no space left"):
            write(big, small_disk / ("new.zarr" if kind == "zarr" else "new.tif"))
    assert sorted(os.listdir(small_disk)) == [target.name]
    dead = small_disk / f".{target.name}.tmp-dead"  # a killed writer's, filling the disk
    dead.mkdir()
    with open(dead / "block", "wb") as f, pytest.raises(OSError):
        f.write(bytes(2 << 20))
    write(old + 1, target, mode="w")  # dead temporaries are removed before writing
    assert sorted(os.listdir(small_disk)) == [target.name]
