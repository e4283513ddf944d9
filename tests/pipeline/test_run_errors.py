"""``lazyraster run`` and ``demo`` when things go wrong: damaged files, lost workers, bad places.

Every failure a user can cause or meet (a truncated COG or netCDF, a worker process
killed with SIGKILL, a scheduler that is not there, a read-only output folder) ends in
one line on stderr naming the file, address or path and the fix, and exit status 1;
``on_error: skip`` leaves a damaged scene out and says so. Expected pixel values come
from rasterio reads of the files, never from the code under test.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr
import yaml
from click.testing import CliRunner
from tests.conftest import tmpfs
from tests.pipeline._support import (
    _catalog,
    _damage_first_tile,
    _killing_ndvi,
    _ndvi,
    _spec,
    _truncate,
)
from tests.services import free_port

from lazyraster import build_catalog
from lazyraster.cli import main
from lazyraster.errors import ReadError, WorkerLostError
from lazyraster.pipeline import Step, run_pipeline
from lazyraster.pipeline import _steps as pipeline
from lazyraster.testing import daymet_like


def _cli(*args: str) -> tuple[int, str]:
    """Exit status and stderr without the progress log lines (``HH:MM:SS lazyraster: ...``)."""
    result = CliRunner().invoke(main, list(args))
    log = re.compile(r"^\d\d:\d\d:\d\d lazyraster: ")
    return result.exit_code, "".join(
        line for line in result.stderr.splitlines(keepends=True) if not log.match(line)
    )


def _write(path: Path, spec: dict) -> str:
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.fixture
def scenes(tmp_path):
    source, files = _catalog(tmp_path)
    return source, files


# --------------------------------------------------------------------------- damaged files


def test_a_truncated_cog_fails_the_run_with_one_line_naming_it(scenes, tmp_path):
    source, files = scenes
    _truncate(files["s1"]["nir"])
    with pytest.raises(ReadError) as info:
        run_pipeline(_spec(source, tmp_path / "out"))
    assert info.value.item == "s1" and info.value.href == str(files["s1"]["nir"])
    code, stderr = _cli("run", _write(tmp_path / "s.yaml", _spec(source, tmp_path / "out")))
    assert code == 1
    assert stderr.startswith(f"Error: cannot read {files['s1']['nir']} (item 's1', asset 'nir'): ")
    assert stderr.rstrip().endswith(
        "or leave such scenes out with on_error: skip in the pipeline spec."
    )
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "ndvi.zarr").exists()


def test_skip_leaves_the_truncated_scene_out_and_lists_it(scenes, tmp_path, caplog):
    source, files = scenes
    _truncate(files["s1"]["nir"])
    with caplog.at_level(logging.WARNING, logger="lazyraster"):
        report = run_pipeline(_spec(source, tmp_path / "out", on_error="skip"))
    assert list(report.skipped) == ["s1"]
    assert report.skipped["s1"].startswith(f"{files['s1']['nir']}: ")
    assert report.items == 2
    assert "skipped 1 item(s) whose files cannot be read:\n  s1: " in report.summary()
    assert any("skipped item s1: cannot read" in r.getMessage() for r in caplog.records)
    with xr.open_zarr(tmp_path / "out" / "ndvi.zarr") as ds:
        assert [str(t)[:10] for t in ds.time.values] == ["2021-05-01", "2021-05-21"]
        for k, scene in ((0, "s0"), (1, "s2")):
            np.testing.assert_allclose(ds.ndvi.isel(time=k).values, _ndvi(files[scene]), rtol=1e-6)


def test_skip_of_a_file_damaged_inside_finds_it_while_computing(scenes, tmp_path, caplog):
    source, files = scenes
    _damage_first_tile(files["s2"]["red"])
    with rasterio.open(files["s2"]["red"]) as src:  # what the check before the run sees
        src.read(1, window=((256, 300), (256, 260)))
        with pytest.raises(rasterio.errors.RasterioIOError):
            src.read(1)
    with caplog.at_level(logging.WARNING, logger="lazyraster"):
        report = run_pipeline(_spec(source, tmp_path / "out", on_error="skip"))
    assert list(report.skipped) == ["s2"]
    assert report.skipped["s2"].startswith(f"{files['s2']['red']}: ")
    with xr.open_zarr(tmp_path / "out" / "ndvi.zarr") as ds:
        assert ds.sizes["time"] == 2
        np.testing.assert_allclose(ds.ndvi.isel(time=1).values, _ndvi(files["s1"]), rtol=1e-6)
    # and with on_error: fail the same file is named
    with pytest.raises(ReadError, match=rf"cannot read {files['s2']['red']} \(item 's2'"):
        run_pipeline(_spec(source, tmp_path / "out2"))


def test_skip_of_every_scene_says_none_is_left(scenes, tmp_path):
    source, files = scenes
    for scene in files.values():
        _truncate(scene["red"])
    code, stderr = _cli(
        "run", _write(tmp_path / "s.yaml", _spec(source, tmp_path / "out", on_error="skip"))
    )
    assert code == 1
    assert stderr.startswith("Error: no scene is left: every item's files cannot be read (")
    assert all(str(scene["red"]) in stderr for scene in files.values())


def test_a_truncated_netcdf_is_named(tmp_path):
    ds = daymet_like(2019, shape=(5, 7), seed=3)
    files = tmp_path / "files"
    files.mkdir()
    for variable in ("tmin", "tmax", "dayl"):
        ds[[variable, "lambert_conformal_conic"]].to_netcdf(
            files / f"daymet_v4_daily_na_{variable}_2019.nc", engine="h5netcdf"
        )
    build_catalog(
        [files],
        tmp_path / "catalog",
        collection="daymet-daily",
        pattern="daymet_v4_daily_{region}_{variable}_{year}.nc",
    )
    broken = files / "daymet_v4_daily_na_tmax_2019.nc"
    _truncate(broken, keep=0.5)
    spec = {
        "source": str(tmp_path / "catalog" / "catalog.json"),
        "load": {"bands": ["tmin", "tmax", "dayl"]},
        "steps": [{"spring_index": {"plants": ["lilac"]}}],
        "output": {"zarr": str(tmp_path / "si.zarr")},
    }
    code, stderr = _cli("run", _write(tmp_path / "s.yaml", spec))
    assert code == 1
    assert stderr.startswith(f"Error: cannot read {broken} (item ")
    assert "asset 'tmax'" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_demo_names_a_truncated_file(scenes, tmp_path):
    source, files = scenes
    _truncate(files["s0"]["red"])
    code, stderr = _cli("demo", "--catalog", str(source), "--out", str(tmp_path / "out"))
    assert code == 1
    assert stderr.startswith(f"Error: cannot read {files['s0']['red']} (item 's0', asset 'red')")
    assert len(stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- lost workers


@pytest.fixture
def killing_step(monkeypatch):
    monkeypatch.setitem(pipeline.STEPS, "killing_ndvi", Step(_killing_ndvi, "dataset", "variable"))


def _killing_spec(source: Path, out: Path, marker: Path, times: int, workers: int = 2) -> dict:
    spec = _spec(source, out, cluster={"kind": "processes", "workers": workers})
    spec["steps"] = [{"killing_ndvi": {"marker": str(marker), "times": times, "as": "ndvi"}}]
    return spec


def test_processes_recompute_once_after_a_worker_is_killed(scenes, tmp_path, killing_step, caplog):
    source, files = scenes
    marker = tmp_path / "killed"
    with caplog.at_level(logging.WARNING, logger="lazyraster"):
        run_pipeline(_killing_spec(source, tmp_path / "out", marker, times=1))
    assert Path(f"{marker}.0").exists()  # a worker really was killed
    assert any("a worker process died" in r.getMessage() for r in caplog.records)
    with xr.open_zarr(tmp_path / "out" / "ndvi.zarr") as ds:
        for k in range(3):
            np.testing.assert_allclose(
                ds.ndvi.isel(time=k).values, _ndvi(files[f"s{k}"]), rtol=1e-6
            )


def test_processes_losing_workers_twice_say_so_and_name_local(scenes, tmp_path, killing_step):
    """One worker per pool, so the two deaths are two attempts (with two workers, both
    could die in the first pool: one failed attempt, and the retry would succeed)."""
    source, _ = scenes
    spec = _killing_spec(source, tmp_path / "out", tmp_path / "killed", times=2, workers=1)
    with pytest.raises(WorkerLostError, match=r"died, twice .* --cluster local"):
        run_pipeline(spec)
    for n in range(3):
        Path(f"{tmp_path / 'killed'}.{n}").unlink(missing_ok=True)
    spec = _killing_spec(source, tmp_path / "out", tmp_path / "killed", times=2, workers=1)
    code, stderr = _cli("run", _write(tmp_path / "s.yaml", spec))
    assert code == 1
    assert stderr.startswith("Error: a worker process of the 'processes' scheduler died, twice")
    assert len(stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- bad places


def test_an_unreachable_scheduler_is_one_line_naming_it(scenes, tmp_path):
    source, _ = scenes
    address = f"tcp://127.0.0.1:{free_port()}"
    spec = _spec(source, tmp_path / "out", cluster={"kind": address, "timeout": 2})
    code, stderr = _cli("run", _write(tmp_path / "s.yaml", spec))
    assert code == 1
    assert stderr.startswith(f"Error: cannot reach the dask scheduler at {address} within 2 s (")
    assert stderr.rstrip().endswith("(CLI: --cluster local)")
    assert len(stderr.strip().splitlines()) == 1


@pytest.fixture
def read_only(tmp_path):
    """A read-only tmpfs mounted on a folder of ``tmp_path`` (root only)."""
    with tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        yield folder


def test_a_read_only_output_folder_stops_the_run_before_computing(scenes, tmp_path, read_only):
    source, _ = scenes
    spec = _spec(source, read_only / "out")
    code, stderr = _cli("run", _write(tmp_path / "s.yaml", spec))
    assert code == 1
    assert stderr.strip() == (
        f"Error: {read_only}: Read-only file system, so {read_only}/out/ndvi.zarr cannot be "
        "written; the file system is read-only: choose an output path elsewhere"
    )
    code, stderr = _cli("demo", "--catalog", str(source), "--out", str(read_only / "demo"))
    assert code == 1
    assert stderr.startswith(  # the demo is a run: the same refusal, before computing
        f"Error: {read_only}: Read-only file system, so {read_only}/demo/ndvi.zarr cannot be "
        "written; the file system is read-only"
    )


def test_an_output_below_a_file_is_one_line(scenes, tmp_path):
    source, _ = scenes
    (tmp_path / "afile").write_text("not a folder")
    spec = _spec(source, tmp_path / "afile" / "out")
    code, stderr = _cli("run", _write(tmp_path / "s.yaml", spec))
    assert code == 1
    assert stderr.strip() == (
        f"Error: {tmp_path / 'afile'}: Not a directory; a part of the path is a file, not a "
        "folder: choose another path"
    )


def test_a_local_cluster_whose_workers_keep_dying_says_so(scenes, tmp_path, killing_step):
    source, _ = scenes
    spec = _killing_spec(source, tmp_path / "out", tmp_path / "killed", times=3)
    spec["cluster"] = {"kind": "local", "workers": 1, "threads_per_worker": 1}
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        pytest.raises(WorkerLostError, match=r"the workers running a task died too often"),
    ):
        run_pipeline(spec)
    assert Path(f"{tmp_path / 'killed'}.1").exists()  # two workers were killed
