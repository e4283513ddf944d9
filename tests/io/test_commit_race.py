"""Writes computed together, all outputs or none, when runs race or are killed.

Real processes (``subprocess``): several runs of one set of outputs (a Zarr store, a
COG and a per-step GeoTIFF, as one pipeline spec writes) computed at the same time, and
a run killed (``SIGKILL``) while it holds the outputs' locks. Each run writes its own
constant, so an output set mixed from two runs shows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

import lazyraster
from lazyraster.io import output_lock

SRC = Path(lazyraster.__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(SRC)}

# A run of three outputs, each of its blocks the constant ``value``. With a rendezvous
# folder, every block waits until each of the ``n`` runs has started one, so that the
# runs commit at about the same time; with ``stall``, the run stops (until killed) in
# its first swap, holding every output's lock.
RUN = textwrap.dedent(
    """
    import os, sys, time
    import dask
    import numpy as np
    import xarray as xr
    from lazyraster.io import _atomic, commit_together, discard_temporaries
    from lazyraster.io import write_geotiff, write_zarr
    from lazyraster.testing import synthetic_raster

    folder, value, mode, rendezvous, n, stall = sys.argv[1:]
    value, n = float(value), int(n)

    def meet(block):
        if rendezvous:
            open(os.path.join(rendezvous, f"started-{value}"), "a").close()
            for _ in range(6000):  # at most 60 s, then go on anyway
                if len(os.listdir(rendezvous)) >= n:
                    break
                time.sleep(0.01)
        return np.full_like(block, value)

    if stall:
        def stalled(tmp, target):
            open(stall, "w").close()
            time.sleep(600)
        _atomic.commit = stalled

    da = synthetic_raster((64, 256), name="v", chunks={"y": 64, "x": 64})
    da = da.copy(data=da.data.map_blocks(meet, dtype=da.dtype))
    steps = xr.concat([da, da], dim="step").assign_coords(step=[1, 2])
    writes = []
    try:
        writes.append(write_zarr(da, os.path.join(folder, "a.zarr"), mode=mode, compute=False))
        writes.append(write_geotiff(
            da, os.path.join(folder, "a.tif"), mode=mode, blocksize=128, compute=False
        ))
        writes.append(write_geotiff(
            steps, os.path.join(folder, "s.tif"), per="step", mode=mode, blocksize=128,
            compute=False,
        ))
        dask.compute(*commit_together(*writes), scheduler="threads", num_workers=2)
    finally:
        discard_temporaries(*writes)
    """
)

OUTPUTS = ("a.zarr", "a.tif", "s_1.tif", "s_2.tif")


def _run(folder: Path, value: int, mode: str, rendezvous: str = "", n: int = 1, stall: str = ""):
    args = [str(folder), str(value), mode, rendezvous, str(n), stall]
    return subprocess.Popen(
        [sys.executable, "-c", RUN, *args], env=ENV, stderr=subprocess.PIPE, text=True
    )


def _values(folder: Path) -> dict[str, set[float]]:
    """The distinct values of each output in ``folder``."""
    found = {}
    for name in OUTPUTS:
        path = folder / name
        if name.endswith(".zarr"):
            found[name] = set(np.unique(xr.open_zarr(path).v.values).tolist())
        else:
            with rasterio.open(path) as src:
                found[name] = set(np.unique(src.read(1)).tolist())
    return found


def _hidden(folder: Path) -> list[str]:
    """Temporaries, set-aside outputs and lock files left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("attempt", range(2))
@pytest.mark.parametrize("mode", ["w-", "w"])
def test_concurrent_runs_of_one_output_set_leave_every_output_from_one_run(tmp_path, mode, attempt):
    n = 3
    out, meet = tmp_path / "out", tmp_path / "rendezvous"
    out.mkdir()
    meet.mkdir()
    runs = [_run(out, value, mode, str(meet), n) for value in range(1, n + 1)]
    errors = [run.communicate()[1] for run in runs]
    codes = [run.returncode for run in runs]
    winners = [value for value, code in zip(range(1, n + 1), codes, strict=True) if code == 0]
    if mode == "w-":  # one run commits everything, each other one is refused, commits nothing
        assert len(winners) == 1, errors
        losers = [e for e, code in zip(errors, codes, strict=True) if code != 0]
        assert all("OutputExistsError" in e and "already exists" in e for e in losers), losers
    else:  # every run replaces the whole set in turn
        assert codes == [0] * n, errors
    values = _values(out)
    assert len(set(map(frozenset, values.values()))) == 1, f"outputs mixed from runs: {values}"
    (only,) = set(map(frozenset, values.values()))
    assert len(only) == 1 and next(iter(only)) in (winners if mode == "w-" else range(1, n + 1))
    assert _hidden(out) == []  # no temporary, set-aside output or lock file left


def test_a_run_killed_holding_the_locks_leaves_old_outputs_and_the_next_run_takes_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = _run(out, 1, "w-")
    assert first.wait() == 0, first.stderr.read()
    marker = tmp_path / "stalled"
    killed = _run(out, 2, "w", stall=str(marker))
    while not marker.exists():
        assert killed.poll() is None, killed.stderr.read()
        time.sleep(0.05)
    locks = sorted(name for name in _hidden(out) if name.endswith(".lock") and ".tmp-" not in name)
    assert locks == [f".{name}.lock" for name in sorted(OUTPUTS)]  # every output's, at once
    assert not any(output_lock(out / name).acquire(blocking=False) for name in OUTPUTS)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    assert _values(out) == {name: {1.0} for name in OUTPUTS}  # the old outputs, whole
    assert any(".tmp-" in name for name in _hidden(out))  # what the killed run left
    nxt = _run(out, 3, "w")
    assert nxt.wait() == 0, nxt.stderr.read()  # its stale locks are taken over
    assert _values(out) == {name: {3.0} for name in OUTPUTS}
    assert _hidden(out) == []


# A per-step GeoTIFF of many steps under a low soft limit on open files, which the
# temporaries' locks (one per step, held by the writer) fit in, and the outputs' locks
# (one more per step, held by the commit) do not: the commit raises the soft limit.
MANY = textwrap.dedent(
    """
    import os, resource, sys
    import dask
    import xarray as xr
    from lazyraster.io import commit_together, discard_temporaries, write_geotiff
    from lazyraster.testing import synthetic_raster

    folder, steps = sys.argv[1], int(sys.argv[2])
    da = synthetic_raster((16, 16), name="v")
    write_geotiff(da, os.path.join(folder, "warm.tif"), cog=False, blocksize=16)  # imports
    os.remove(os.path.join(folder, "warm.tif"))
    soft = len(os.listdir("/proc/self/fd")) + steps + steps // 2  # the temporaries' locks fit
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    stack = xr.concat([da + i for i in range(steps)], dim="step").assign_coords(step=range(steps))
    write = write_geotiff(
        stack, os.path.join(folder, "s.tif"), per="step", cog=False, blocksize=16, compute=False
    )
    try:
        dask.compute(*commit_together(write), scheduler="sync")
    finally:
        discard_temporaries(write)
    """
)


def test_a_commit_of_more_outputs_than_the_soft_open_file_limit_allows_succeeds(tmp_path):
    steps = 48
    done = subprocess.run(
        [sys.executable, "-c", MANY, str(tmp_path), str(steps)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.glob("s_*.tif"))) == steps
    assert _hidden(tmp_path) == []
