"""A run's outputs come from the writers, are checked before any pixel is read, and are
all written or none: a failure during the one compute (a file that cannot be read, a
killed worker, a killed run) leaves no output, no temporary, and an output being
replaced as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import yaml
from tests.pipeline._support import DATES, _catalog, _damage_first_tile, _killing_ndvi, _spec

from lazyraster.errors import OutputExistsError, ReadError, SpecError, WorkerLostError
from lazyraster.pipeline import Step, run_pipeline
from lazyraster.pipeline import _steps as steps

DAYS = [d.strftime("%Y-%m-%d") for d in DATES]


@pytest.fixture
def scenes(tmp_path):
    return _catalog(tmp_path)


def _both(source: Path, out: Path, **extra) -> dict:
    """Zarr of ndvi and one COG of ndvi per date (``out/ndvi_<date>.tif``)."""
    spec = _spec(source, out, **extra)
    spec["output"]["geotiff"] = {"path": str(out / "ndvi"), "variables": ["ndvi"]}
    return spec


def _state(out: Path) -> dict[str, bytes]:
    """Every file below ``out`` (hidden ones too) and its bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def test_an_existing_per_date_cog_is_refused_before_any_cog_is_read(scenes, tmp_path):
    """The spec names ``out/ndvi``; the writer writes ``out/ndvi_<date>.tif``. With every
    source COG gone, a run that read a pixel would fail with a ReadError: the refusal
    comes first, from the writer, naming the file it would write."""
    source, files = scenes
    out = tmp_path / "out"
    out.mkdir()
    existing = out / f"ndvi_{DAYS[1]}.tif"
    with rasterio.open(
        existing, "w", driver="GTiff", width=1, height=1, count=1, dtype="uint8"
    ) as dst:
        dst.write(np.full((1, 1, 1), 7, dtype="uint8"))
    before = existing.read_bytes()
    for scene in files.values():
        for path in scene.values():
            path.unlink()
    with pytest.raises(OutputExistsError, match=rf"{existing}.*output.overwrite: true"):
        run_pipeline(_both(source, out))
    assert _state(out) == {existing.name: before}  # no Zarr, no temporary, no lock


def test_the_report_lists_the_files_the_writer_wrote(scenes, tmp_path):
    source, _ = scenes
    out = tmp_path / "out"
    report = run_pipeline(_both(source, out))
    assert report.outputs["geotiff"] == [str(out / f"ndvi_{day}.tif") for day in DAYS]
    assert report.outputs["zarr"] == [str(out / "ndvi.zarr")]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["ndvi.zarr", *(f"ndvi_{day}.tif" for day in DAYS)]
    )


def test_a_read_error_mid_run_leaves_the_outputs_being_replaced_intact(scenes, tmp_path):
    source, files = scenes
    out = tmp_path / "out"
    run_pipeline(_both(source, out))
    before = _state(out)
    _damage_first_tile(files["s1"]["red"])  # opens, reads its end: fails only while computing
    with pytest.raises(ReadError, match=str(files["s1"]["red"])):
        run_pipeline(_both(source, out), overwrite=True)
    assert _state(out) == before
    assert _hidden(out) == []


def _commit_seen(block: np.ndarray, *, target: str, block_id: tuple[int, ...]) -> np.ndarray:
    """In the first block only: wait (at most 5 s) for ``target`` to appear, then fail, so
    that a commit made before the whole compute succeeded is seen."""
    if any(block_id):
        return block
    deadline = time.monotonic() + 5
    while not os.path.exists(target) and time.monotonic() < deadline:
        time.sleep(0.05)
    raise RuntimeError(f"failing on purpose; {target} exists: {os.path.exists(target)}")


def _failing_copy(ds: xr.Dataset, *, variable: str, target: str) -> xr.DataArray:
    data = ds[variable].data.map_blocks(
        _commit_seen, target=target, dtype=ds[variable].dtype, meta=np.array((), "float32")
    )
    return ds[variable].copy(data=data)


def test_no_output_is_committed_before_every_output_is_computed(scenes, tmp_path, monkeypatch):
    """The Zarr store's data are done long before the COG's task fails; its commit still
    waits for the COG's data, so the failure leaves no Zarr store."""
    monkeypatch.setitem(steps.STEPS, "failing_copy", Step(_failing_copy, "dataset", "variable"))
    source, _ = scenes
    out = tmp_path / "out"
    spec = _spec(source, out, cluster={"kind": "threads", "workers": 3})
    zarr = out / "ndvi.zarr"
    spec["steps"] = [
        "ndvi",
        {"failing_copy": {"variable": "ndvi", "target": str(zarr), "as": "bad"}},
    ]
    spec["output"]["geotiff"] = {"path": str(out / "bad.tif"), "variables": ["bad"]}
    with pytest.raises(RuntimeError, match="exists: False"):
        run_pipeline(spec)
    assert not out.exists()  # nor the folder made for the outputs


def test_a_worker_killed_twice_leaves_the_outputs_being_replaced_intact(
    scenes, tmp_path, monkeypatch
):
    monkeypatch.setitem(steps.STEPS, "killing_ndvi", Step(_killing_ndvi, "dataset", "variable"))
    source, _ = scenes
    out = tmp_path / "out"
    run_pipeline(_both(source, out))
    before = _state(out)
    spec = _both(source, out, cluster={"kind": "processes", "workers": 2})
    marker = tmp_path / "killed"
    # both workers may be killed in one pass: enough kills that each pass loses one
    spec["steps"] = [{"killing_ndvi": {"marker": str(marker), "times": 8, "as": "ndvi"}}]
    with pytest.raises(WorkerLostError):
        run_pipeline(spec, overwrite=True)
    assert Path(f"{marker}.1").exists()  # two workers really were killed
    assert _state(out) == before
    assert _hidden(out) == []


_BLOCKING_RUN = """
import os, sys, time
import numpy as np
from lazyraster.pipeline import Step, STEPS, run_pipeline

def wait(block, *, marker):
    open(marker, "w").close()
    time.sleep(600)
    return block

def blocking_ndvi(ds, *, marker):
    ndvi = ds.geo.ndvi()
    data = ndvi.data.map_blocks(wait, marker=marker, dtype=ndvi.dtype, meta=np.array((), "f4"))
    return ndvi.copy(data=data)

STEPS["blocking_ndvi"] = Step(blocking_ndvi, "dataset", "variable")
run_pipeline(sys.argv[1], overwrite=True)
"""


def test_a_run_killed_mid_write_leaves_the_previous_outputs(scenes, tmp_path):
    """SIGKILL of the run itself: nothing can clean up, but the previous outputs stay
    whole, and the next run removes what the killed one left."""
    source, _ = scenes
    out = tmp_path / "out"
    run_pipeline(_both(source, out))
    before = _state(out)
    marker = tmp_path / "writing"
    spec = _both(source, out)
    spec["steps"] = [{"blocking_ndvi": {"marker": str(marker), "as": "ndvi"}}]
    spec_file = tmp_path / "blocking.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.Popen([sys.executable, "-c", _BLOCKING_RUN, str(spec_file)], env=env)
    try:
        while not marker.exists():
            assert run.poll() is None, "the run ended before writing"
            time.sleep(0.05)
        assert _hidden(out)  # the writes' temporaries, held by the run
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
    assert {k: v for k, v in _state(out).items() if not k.startswith(".")} == before
    run_pipeline(_both(source, out), overwrite=True)
    assert _hidden(out) == []
    with xr.open_zarr(out / "ndvi.zarr") as ds:
        assert ds.sizes["time"] == 3


@pytest.mark.parametrize(
    ("zarr", "geotiff"),
    [(f"ndvi_{DAYS[0]}.tif", "ndvi.tif"), ("ndvi.zarr", "ndvi.zarr/{}.tif")],
    ids=["a-cog-at-the-zarr-path", "cogs-inside-the-zarr"],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_outputs_that_collide_are_refused_before_either_is_written(
    scenes, tmp_path, zarr, geotiff, overwrite
):
    """A COG at, or inside, the Zarr store's path: committing one would fail, or replace
    the other, after the other was in place. Refused before anything is computed."""
    source, _ = scenes
    out = tmp_path / "out"
    spec = _spec(source, out)
    spec["output"]["zarr"]["path"] = str(out / zarr)
    spec["output"]["geotiff"] = {"path": str(out / geotiff), "variables": ["ndvi"]}
    with pytest.raises(SpecError, match="give each output its own path"):
        run_pipeline(spec, overwrite=overwrite)
    assert not out.exists()  # nor a folder made for an output


def test_a_failed_group_write_leaves_no_new_store(scenes, tmp_path):
    """A Zarr group output: the store, its root and parent groups are new outputs too."""
    source, files = scenes
    out = tmp_path / "out"
    spec = _spec(source, out)
    spec["output"]["zarr"] = {"path": str(out / "g.zarr"), "group": "a/b", "variables": ["ndvi"]}
    _damage_first_tile(files["s1"]["red"])  # opens, reads its end: fails only while computing
    with pytest.raises(ReadError, match=str(files["s1"]["red"])):
        run_pipeline(spec)
    assert not out.exists()
    files["s1"]["red"].unlink()
    spec["on_error"] = "skip"
    run_pipeline(spec)
    assert xr.open_zarr(out / "g.zarr", group="a/b").ndvi.sizes["time"] == len(DAYS) - 1
