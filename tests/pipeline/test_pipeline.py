"""lazyraster.pipeline and ``lazyraster run``: specs, values, schedulers, errors, logs.

Expected values come from rasterio reads of the sample GeoTIFFs, numpy and a plain
Python loop for the focal mean; never from the code under test.
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
import yaml
from click.testing import CliRunner
from tests.cluster import _support
from tests.conftest import ROOT
from tests.references import SAMPLE, loop_focal_mean, sample_ndvi

from lazyraster import build_catalog, spring_index
from lazyraster.cli import main
from lazyraster.errors import (
    LazyrasterError,
    MissingBandError,
    OutputExistsError,
    SpecError,
)
from lazyraster.pipeline import Spec, load_spec, plan_pipeline, run_pipeline
from lazyraster.pipeline import _run as pipeline
from lazyraster.testing import daymet_like, raise_if_dask_computes

EXAMPLE = ROOT / "catalogs" / "sample" / "ndvi.yaml"


def _spec(out: Path, **changes) -> dict:
    spec = {
        "source": str(SAMPLE),
        "search": {"datetime": "2021"},
        "load": {"bands": ["red", "nir"], "chunks": 32},  # 3 x 5 chunks of the 80 x 152 scene
        "steps": [{"ndvi": {}}, {"focal_mean": {"variable": "ndvi", "size": 3}}],
        "output": {
            "zarr": str(out / "result.zarr"),
            "geotiff": {"path": str(out / "ndvi.tif"), "variables": ["ndvi", "ndvi_focal_mean"]},
        },
        "cluster": {"kind": "threads"},
    }
    spec.update(copy.deepcopy(changes))
    return spec


def _zarr_values(path: Path) -> dict[str, np.ndarray]:
    with xr.open_zarr(path) as ds:
        return {name: ds[name].values for name in ds.data_vars}


@pytest.fixture(scope="module")
def threaded(tmp_path_factory):
    out = tmp_path_factory.mktemp("threads")
    report = run_pipeline(_spec(out), progress_interval=0)
    return out, report


# --------------------------------------------------------------------------- values


def test_zarr_equals_an_independent_ndvi_andloop_focal_mean(threaded):
    out, report = threaded
    expected, transform, crs = sample_ndvi()
    with xr.open_zarr(out / "result.zarr") as ds:
        assert ds.rio.crs == crs
        assert ds.rio.transform() == transform
        assert ds.ndvi.dtype == np.float32
        ndvi = ds.ndvi.isel(time=0).values
        focal = ds.ndvi_focal_mean.isel(time=0).values
        assert set(ds.data_vars) == {"red", "nir", "ndvi", "ndvi_focal_mean"}
    assert np.isnan(expected).any()  # nodata is part of the test
    np.testing.assert_allclose(ndvi, expected, rtol=2e-6, atol=1e-7, equal_nan=True)
    np.testing.assert_allclose(
        focal, loop_focal_mean(expected), rtol=2e-6, atol=1e-6, equal_nan=True
    )
    assert report.items == 1
    assert report.outputs["zarr"] == [str((out / "result.zarr").resolve())]
    on_disk = sum(p.stat().st_size for p in (out / "result.zarr").rglob("*") if p.is_file())
    assert report.bytes_written == on_disk + (out / "ndvi.tif").stat().st_size
    assert set(report.timings) == {"build", "write"}  # every output written in one compute


def test_cog_holds_both_variables_with_the_grid_of_the_input(threaded):
    out, _ = threaded
    expected, transform, crs = sample_ndvi()
    zarr = _zarr_values(out / "result.zarr")
    with rasterio.open(out / "ndvi.tif") as src:
        assert src.crs == crs and src.transform == transform
        assert src.descriptions == ("ndvi", "ndvi_focal_mean")
        assert src.overviews(1) or min(src.shape) < 512  # a COG of this size needs none
        bands = src.read(masked=False)
    np.testing.assert_array_equal(bands[0], zarr["ndvi"][0])
    np.testing.assert_array_equal(bands[1], zarr["ndvi_focal_mean"][0])
    np.testing.assert_allclose(bands[0], expected, rtol=2e-6, atol=1e-7, equal_nan=True)


@pytest.mark.parametrize(
    "cluster",
    [{"kind": "processes", "workers": 2}, {"kind": "local", "workers": 2, "threads_per_worker": 1}],
    ids=["processes", "local"],
)
def test_every_scheduler_writes_the_same_zarr(threaded, cluster, tmp_path, caplog):
    out, _ = threaded
    caplog.set_level(logging.INFO, logger="lazyraster")
    report = run_pipeline(_spec(tmp_path, cluster=cluster), progress_interval=0.05)
    if cluster["kind"] == "local":  # distributed: progress counted by the scheduler
        progress = [r.getMessage() for r in caplog.records if "tasks done" in r.getMessage()]
        assert progress, caplog.text
        done, total = map(int, progress[-1].split()[1].split("/"))
        assert done == total > 4 * 3 * 5  # more than a task per chunk of the four variables
    assert report.outputs["zarr"] == [str((tmp_path / "result.zarr").resolve())]
    got, want = _zarr_values(tmp_path / "result.zarr"), _zarr_values(out / "result.zarr")
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_more_steps_add_variables_and_match_their_formulas(tmp_path):
    steps = [
        "ndvi",
        {"index": {"name": "SAVI", "L": 0.5}},
        {"focal_max": {"variable": "SAVI", "size": 3, "as": "savi_max"}},
    ]
    spec = _spec(tmp_path, steps=steps, output={"zarr": str(tmp_path / "r.zarr")})
    run_pipeline(spec)
    got = _zarr_values(tmp_path / "r.zarr")
    red, nir = got["red"][0].astype(np.float64), got["nir"][0].astype(np.float64)
    savi = 1.5 * (nir - red) / (nir + red + 0.5)
    np.testing.assert_allclose(got["SAVI"][0], savi, rtol=1e-5, equal_nan=True)
    i, j = 40, 70
    window = got["SAVI"][0, i - 1 : i + 2, j - 1 : j + 2]
    assert got["savi_max"][0, i, j] == np.nanmax(window)


# --------------------------------------------------------------------------- progress log


def test_progress_is_logged_for_local_schedulers(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lazyraster")
    run_pipeline(_spec(tmp_path), progress_interval=0)
    progress = [r.getMessage() for r in caplog.records if "tasks done" in r.getMessage()]
    assert len(progress) > 10
    done, total = map(int, progress[-1].split()[1].split("/"))
    assert done == total > 15  # at least one task per chunk and step
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "1 item(s) found" in messages and "wrote zarr" in messages


# --------------------------------------------------------------------------- errors


def _no_cluster(**options):
    raise AssertionError(f"a cluster was started: {options}")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"serach": {}}, r"unknown key 'serach'; allowed: cluster, load, on_error, output, search"),
        ({"search": {"bbx": [0, 0, 1, 1]}}, r"unknown key 'search.bbx'; allowed: bbox,"),
        ({"load": {"chunks": "big"}}, r"load.chunks must be an integer or a mapping"),
        ({"search": {"bbox": [1, 2, 3]}}, r"search.bbox must be four numbers"),
        ({"steps": [{"ndwi": {}}]}, r"steps\[0\]: unknown step 'ndwi'; allowed: focal_max"),
        ({"steps": ["ndvi", {"focal_mean": {"size": 3}}]}, r"needs option\(s\) variable"),
        ({"steps": [{"focal_mean": {"variable": "ndvi", "sise": 3}}]}, r"no option 'sise'"),
        ({"steps": [{"index": {}}]}, r"step 'index' needs option\(s\) name"),
        ({"steps": "ndvi"}, r"steps must be a list"),
        ({"output": {}}, r"output names no file; give output.zarr"),
        ({"output": {"zarr": 3}}, r"output.zarr must be a string or a mapping"),
        ({"output": {"zarr": "a.zarr", "overwrite": "yes"}}, r"output.overwrite must be true"),
        ({"cluster": {"kind": 4}}, r"cluster.kind must be threads, processes"),
        ({"on_error": "ignore"}, r"on_error must be fail .* or skip .*, not .ignore."),
        ({"search": {"intersects": {"type": "Polygon"}}}, r"search.intersects must be a GeoJSON"),
        ({"search": {"intersects": {"type": "Blob", "coordinates": []}}}, r"intersects must"),
    ],
)
def test_spec_errors_name_the_key_and_the_fix(tmp_path, change, match):
    with pytest.raises(SpecError, match=match):
        Spec.from_mapping(_spec(tmp_path, **change))


@pytest.mark.parametrize("key", ["source", "output"])
def test_missing_source_or_output(tmp_path, key):
    spec = _spec(tmp_path)
    del spec[key]
    with pytest.raises(SpecError, match=rf"'{key}' is missing"):
        run_pipeline(spec)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"load": {"bands": ["red", "swir99"]}}, MissingBandError, "band 'swir99'"),
        ({"steps": [{"focal_mean": {"variable": "ndvi"}}]}, SpecError, "no variable 'ndvi'"),
        ({"steps": [{"focal_mean": {"variable": "red", "size": 4}}]}, SpecError, "size"),
        ({"steps": [{"index": {"name": "NOPE"}}]}, SpecError, "index"),
        ({"output": {"zarr": {"path": "x.zarr", "variables": ["evi"]}}}, SpecError, "no var"),
        ({"cluster": {"kind": "threads", "jobs": 2}}, SpecError, "cluster: .*workers= only"),
    ],
)
def test_errors_found_before_any_cluster_starts_or_pixel_is_read(
    tmp_path, monkeypatch, change, error, match
):
    spec = _spec(tmp_path, **change)
    if "cluster" not in change:
        monkeypatch.setattr(pipeline, "_cluster", _no_cluster)
    with raise_if_dask_computes(), pytest.raises(error, match=match):
        run_pipeline(spec)
    assert not list(tmp_path.iterdir())


def test_existing_output_without_overwrite_writes_nothing(tmp_path, monkeypatch):
    tif = tmp_path / "ndvi.tif"
    tif.write_bytes(b"an older result")
    monkeypatch.setattr(pipeline, "_cluster", _no_cluster)
    with raise_if_dask_computes(), pytest.raises(OutputExistsError, match="overwrite: true"):
        run_pipeline(_spec(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ndvi.tif"]  # no Zarr either
    assert tif.read_bytes() == b"an older result"


def test_overwrite_replaces_the_outputs(tmp_path):
    profile = {"driver": "GTiff", "width": 1, "height": 1, "count": 1, "dtype": "uint8"}
    with rasterio.open(tmp_path / "ndvi.tif", "w", **profile):  # an older result
        pass
    run_pipeline(_spec(tmp_path), overwrite=True)
    with rasterio.open(tmp_path / "ndvi.tif") as src:
        assert src.count == 2


def test_plan_reads_metadata_only(tmp_path):
    with raise_if_dask_computes():
        plan = plan_pipeline(_spec(tmp_path))
    text = plan.describe()
    assert plan.items == 1
    assert plan.variables == ["red", "nir", "ndvi", "ndvi_focal_mean"]
    assert "80 x 152 pixels of 30 x 30" in text and "EPSG:8858" in text
    assert "2. focal_mean(variable='ndvi', size=3)" in text
    assert str(tmp_path / "result.zarr") in text
    assert not list(tmp_path.iterdir())


def test_plan_of_a_slurm_run_shows_the_job_script_and_submits_nothing(tmp_path, monkeypatch):
    for name in ("LAZYRASTER_SLURM_ACCOUNT", "SBATCH_ACCOUNT", "SBATCH_PARTITION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no sinfo: nothing can be submitted
    cluster = {"kind": "slurm", "jobs": 2, "cores": 3, "memory": "5GiB", "account": "proj1"}
    plan = plan_pipeline(_spec(tmp_path / "out", cluster=cluster))
    assert "#SBATCH --cpus-per-task=3" in plan.job_script
    assert "#SBATCH -A proj1" in plan.job_script
    assert "worker job script:" in plan.describe()


def test_example_spec_loads():
    spec = load_spec(EXAMPLE)
    assert spec.source == "catalogs/sample/catalog.json"
    assert [s.name for s in spec.steps] == ["ndvi", "focal_mean"]
    assert set(spec.outputs) == {"zarr", "geotiff"}


def test_load_spec_names_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad\.yaml is not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cannot read the spec"):
        load_spec(tmp_path / "missing.yaml")
    bad.write_text("source: a.json\noutput: {zarr: a.zarr}\nstep: [ndvi]\n")
    with pytest.raises(SpecError, match=r"bad.yaml: unknown key 'step'"):
        load_spec(bad)


def test_spec_error_is_a_lazyraster_error():
    assert issubclass(SpecError, LazyrasterError) and issubclass(SpecError, ValueError)


# --------------------------------------------------------------------------- CLI


def _write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_cli_runs_the_example_spec_and_refuses_to_overwrite(tmp_path, monkeypatch):
    runner = CliRunner()
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["source"] = str(SAMPLE)  # the example's path is relative to the repository root
    spec_file = _write_spec(tmp_path / "ndvi.yaml", spec)
    monkeypatch.chdir(tmp_path)
    # relative output paths of the example land in tmp_path
    args = ["run", str(spec_file), "--progress-interval", "0"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "out/pipeline/ndvi.zarr" in first.stdout and "KiB in all" in first.stdout
    assert "tasks done" in first.stderr and "wrote geotiff" in first.stderr
    zarr = Path("out/pipeline/ndvi.zarr")
    expected, _, _ = sample_ndvi()
    with xr.open_zarr(zarr) as ds:
        np.testing.assert_allclose(ds.ndvi[0].values, expected, rtol=2e-6, equal_nan=True)

    again = runner.invoke(main, ["run", str(spec_file)])
    assert again.exit_code == 1
    assert "already exist" in again.stderr and "--overwrite" in again.stderr
    assert "Traceback" not in again.output

    replaced = runner.invoke(main, ["run", str(spec_file), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output


def test_cli_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    spec_file = _write_spec(tmp_path / "s.yaml", _spec(tmp_path / "out"))
    result = CliRunner().invoke(main, ["run", str(spec_file), "--dry-run", "--cluster", "local"])
    assert result.exit_code == 0, result.output
    assert "1 item(s)" in result.stdout and "focal_mean(variable='ndvi'" in result.stdout
    assert "cluster: local" in result.stdout
    assert not (tmp_path / "out").exists()


def test_a_grid_one_pixel_wide_keeps_its_resolution_in_the_plan_and_the_geotiff(tmp_path):
    # 0.5 degree pixels over the 0.1 degree sample scene: one pixel, whose resolution
    # rioxarray cannot infer from the coordinates alone
    target = {"path": str(tmp_path / "ndvi.tif"), "variables": ["ndvi"]}
    spec = _spec(tmp_path, load={"crs": 4326, "resolution": 0.5}, steps=["ndvi"])
    spec["output"] = {"geotiff": target}
    item = next(pystac.Catalog.from_file(str(SAMPLE)).get_items(recursive=True))
    west, south, east, north = item.bbox
    spec_file = _write_spec(tmp_path / "s.yaml", spec)
    result = CliRunner().invoke(main, ["run", str(spec_file), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "1 x 1 pixels of 0.5 x 0.5" in result.stdout

    run_pipeline(spec)
    with rasterio.open(target["path"]) as src:
        assert src.shape == (1, 1) and src.crs.to_epsg() == 4326
        assert (src.transform.a, src.transform.e) == (0.5, -0.5)
        left, bottom, right, top = src.bounds
    assert left <= west and east <= right and bottom <= south and north <= top
    assert left % 0.5 == 0 and top % 0.5 == 0


def test_cli_cluster_option_overrides_the_spec(tmp_path):
    cluster = {"kind": "slurm", "cores": 1, "memory": "1GiB"}  # would fail here: no SLURM
    spec_file = _write_spec(tmp_path / "s.yaml", _spec(tmp_path, cluster=cluster))
    result = CliRunner().invoke(main, ["run", str(spec_file), "--cluster", "threads"])
    assert result.exit_code == 0, result.output
    assert "computing on threads" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("source: a.json\noutput: {zarr: a.zarr}\nsteps: [ndwi]\n", "unknown step 'ndwi'"),
        ("source: a.json\n", "'output' is missing"),
        ("source: [a\n", "is not valid YAML"),
    ],
)
def test_cli_spec_errors_exit_1_with_the_message_and_no_traceback(tmp_path, text, message):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(text)
    result = CliRunner().invoke(main, ["run", str(spec_file)])
    assert result.exit_code == 1
    assert message in result.stderr and result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output


def test_cli_missing_spec_file(tmp_path):
    result = CliRunner().invoke(main, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "cannot read the spec" in result.stderr


# --------------------------------------------------------------------------- SLURM

# The single-node SLURM of scripts/services/slurm.sh, through the fixtures of
# tests/cluster/_support.py: skipped on a laptop without it, a failure in CI.
slurm = _support.slurm
slurm_env = _support.slurm_env
_LO, _squeue = _support.LOOPBACK, _support.squeue


def test_slurm_worker_jobs_write_the_threaded_zarr_and_cog(slurm_env, threaded, tmp_path):
    out, _ = threaded
    cluster = {"kind": "slurm", "jobs": 2, "log_directory": str(tmp_path), "timeout": 60, **_LO}
    run_pipeline(_spec(tmp_path, cluster=cluster), progress_interval=0.1)
    got, want = _zarr_values(tmp_path / "result.zarr"), _zarr_values(out / "result.zarr")
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    with rasterio.open(tmp_path / "ndvi.tif") as a, rasterio.open(out / "ndvi.tif") as b:
        assert (a.crs, a.transform, a.descriptions) == (b.crs, b.transform, b.descriptions)
        np.testing.assert_array_equal(a.read(), b.read())


def _submit(template: str, spec_file: Path, options: list[str], env: dict, cwd: Path) -> str:
    """Submit docs/sbatch/<template> with a spec; wait for it; return the job's log."""
    env = {
        **env,
        "PYTHONPATH": str(ROOT / "src"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
    }
    submitted = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "-p",
            "debug",
            "-t",
            "5",
            "-D",
            str(cwd),
            "-o",
            str(cwd / "job-%j.log"),
            *options,
            str(ROOT / "docs" / "sbatch" / template),
            str(spec_file),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )  # fmt: skip  (cwd: the multi-node template runs in the submit directory)
    job_id = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 120
    while _squeue(env) and time.monotonic() < deadline:
        time.sleep(0.25)
    return (cwd / f"job-{job_id}.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("template", "options", "kind"),
    [
        ("single-node.sbatch", ["-c", "2", "--mem=2G"], "local"),
        (
            "multi-node.sbatch",
            ["-N", "1", "-n", "3", "-c", "1", "--overcommit", "--mem-per-cpu=700M"],
            "slurm",
        ),
    ],
    ids=["single-node", "multi-node"],
)
def test_sbatch_templates_run_a_spec(slurm_env, threaded, tmp_path, template, options, kind):
    out, _ = threaded
    spec = _spec(Path("out"), cluster={"kind": "threads"})  # the template's kind wins
    spec_file = _write_spec(tmp_path / "spec.yaml", spec)
    env = {**slurm_env, "LAZYRASTER_SLURM_INTERFACE": "lo"}
    log = _submit(template, spec_file, options, env, tmp_path)
    assert (tmp_path / "out" / "result.zarr").exists(), log[-3000:]
    assert f"computing on {kind}" in log and "tasks done" in log, log[-3000:]
    got, want = _zarr_values(tmp_path / "out" / "result.zarr"), _zarr_values(out / "result.zarr")
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert not list(tmp_path.glob("dask-scheduler-*.json"))


def test_the_full_example_of_the_docs_is_a_valid_spec():
    text = (ROOT / "docs" / "pipeline.md").read_text()
    block = text.split("## A full example")[1].split("```yaml\n")[1].split("```")[0]
    spec = Spec.from_mapping(yaml.safe_load(block))
    assert [s.name for s in spec.steps][:3] == ["mask_clouds", "ndvi", "index"]
    assert spec.cluster["kind"] == "slurm" and spec.outputs["geotiff"].variables == ("ndvi",)


@pytest.mark.parametrize(("text", "expected"), [("2021", "2021"), ("2021-03-19", "2021-03-19")])
def test_unquoted_yaml_dates_are_read_as_text(tmp_path, text, expected):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(f"source: a.json\nsearch: {{datetime: {text}}}\noutput: {{zarr: a}}\n")
    assert load_spec(spec_file).search["datetime"] == expected


def test_zarr_groups_go_into_one_store_and_an_existing_group_is_refused(tmp_path):
    store = tmp_path / "years.zarr"
    for group in ("2021", "2022"):
        output = {"zarr": {"path": str(store), "group": group, "variables": ["ndvi"]}}
        report = run_pipeline(_spec(tmp_path, steps=["ndvi"], output=output))
        assert report.variables == ["ndvi"]  # red and nir were not persisted
    again = {"zarr": {"path": str(store), "group": "2021"}}
    with pytest.raises(OutputExistsError, match=r"years\.zarr:2021"):  # the writer's name
        run_pipeline(_spec(tmp_path, steps=["ndvi"], output=again))
    a, b = (xr.open_zarr(store, group=g) for g in ("2021", "2022"))
    np.testing.assert_array_equal(a.ndvi.values, b.ndvi.values)
    assert list(a.data_vars) == ["ndvi"]


def test_a_source_that_cannot_be_read_is_named(tmp_path):
    spec_file = _write_spec(tmp_path / "s.yaml", _spec(tmp_path, source="no/such/catalog.json"))
    result = CliRunner().invoke(main, ["run", str(spec_file), "--dry-run"])
    assert result.exit_code == 1
    assert "source 'no/such/catalog.json' cannot be read" in result.stderr
    assert "Traceback" not in result.output


def test_spring_index_step_equals_the_direct_numpy_model(tmp_path):
    ds = daymet_like(2019, shape=(5, 7), seed=3)
    for variable in ("tmin", "tmax", "dayl"):
        path = tmp_path / "files" / f"daymet_v4_daily_na_{variable}_2019.nc"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds[[variable, "lambert_conformal_conic"]].to_netcdf(path, engine="h5netcdf")
    build_catalog(
        [tmp_path / "files"],
        tmp_path / "catalog",
        collection="daymet-daily",
        pattern="daymet_v4_daily_{region}_{variable}_{year}.nc",
    )
    spec = {
        "source": str(tmp_path / "catalog" / "catalog.json"),
        "load": {"bands": ["tmin", "tmax", "dayl"]},
        "steps": [{"spring_index": {"plants": ["lilac", "zabelii"]}}],
        "output": {"zarr": {"path": str(tmp_path / "si.zarr"), "variables": ["first_leaf"]}},
    }
    run_pipeline(spec)
    direct = spring_index(ds.tmin, ds.tmax, dayl=ds.dayl, plants=["lilac", "zabelii"])
    assert np.isfinite(direct.first_leaf.values).all()  # every pixel reaches first leaf
    with xr.open_zarr(tmp_path / "si.zarr") as written:
        assert list(written.data_vars) == ["first_leaf"]
        np.testing.assert_array_equal(
            written.first_leaf.squeeze(drop=True).values,
            direct.first_leaf.squeeze(drop=True).values,
        )
