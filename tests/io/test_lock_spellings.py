"""One output, one lock, however its path is spelled (relative, absolute, through a
linked folder, with a trailing slash, ``..`` after a link)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from lazyraster.io._atomic import output_lock


@pytest.fixture
def linked(tmp_path, monkeypatch):
    """``real/`` and ``link -> real`` in ``tmp_path`` (the working directory)."""
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "up").symlink_to(tmp_path / "real" / "sub")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_spelling_of_an_output_names_one_lock(linked):
    spellings = [
        "real/out.zarr",
        str(linked / "real" / "out.zarr"),
        "link/out.zarr",
        "link/out.zarr/",
        str(linked / "link" / "out.zarr") + "/",
        "real/up/../out.zarr",  # the kernel resolves up -> sub first, then ..
    ]
    assert {output_lock(s).path for s in spellings} == {str(linked / "real" / ".out.zarr.lock")}


def test_one_output_spelled_twice_in_one_commit_is_refused_not_a_self_deadlock(linked):
    script = textwrap.dedent(
        """
        import dask
        from lazyraster.io import commit_together, write_zarr
        from lazyraster.testing import synthetic_raster

        da = synthetic_raster((8, 8)).rename("v")
        writes = [write_zarr(da, p, compute=False) for p in ("real/a.zarr", "link/a.zarr")]
        try:
            dask.compute(*commit_together(*writes))
        except ValueError as exc:
            print("refused:", exc)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,  # before the fix the one process waited for its own lock forever
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert run.returncode == 0, run.stderr
    assert "refused: two outputs computed together write" in run.stdout
    assert not (linked / "real" / "a.zarr").exists()
