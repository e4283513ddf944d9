"""threads, processes, a LocalCluster and a running scheduler compute the same values.

Each kind writes the analysis of the bundled sample catalog and is compared bit for
bit with the threaded result, which itself equals a plain numpy reference. The
processes block leaves this process as it found it: its environment and dask's
config functions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import dask
import dask.bag as db
import numpy as np
import pytest
import xarray as xr
from tests.cluster._support import assert_bitwise_equal, port_open, write_and_read
from tests.cluster._tasks import hash_in_a_worker

import lazyraster
from lazyraster.cluster import _resources
from lazyraster.errors import ClusterConfigError
from lazyraster.testing import synthetic_raster

cluster = lazyraster.cluster


def _synthetic_scene() -> xr.Dataset:
    """Red and NIR with NaNs on a real grid; uneven chunks so tasks spread over workers."""
    red = synthetic_raster((120, 90), seed=1, name="red", nan_fraction=0.05)
    nir = synthetic_raster((120, 90), seed=2, name="nir", nan_fraction=0.05)
    ds = xr.Dataset({"red": red, "nir": nir})
    return ds.chunk({"y": (50, 40, 30), "x": (20, 70)})


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
        assert dask.config.get("num_workers") == _resources.available_cores()
        got = write_and_read(scene, tmp_path / "out.zarr")
    assert dask.config.get("scheduler", None) == before
    assert_bitwise_equal(got, threaded)


def test_threads_equal_plain_numpy_reference(scene, threaded, tmp_path):
    with dask.config.set(scheduler="sync"):
        assert_bitwise_equal(threaded, _reference(scene.compute()))
    # and on data with NaNs and uneven chunks
    synthetic = _synthetic_scene()
    with cluster("threads"):
        got = write_and_read(synthetic, tmp_path / "synthetic.zarr")
    assert_bitwise_equal(got, _reference(synthetic.compute()))
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
        assert sum(w["nthreads"] for w in workers) == _resources.available_cores()
        total = sum(w["memory_limit"] for w in workers)
        expected = _resources.available_memory()  # 1536 MiB unless a cgroup says less
        assert expected <= 1536 * 2**20
        assert expected - len(workers) <= total <= expected
        assert dask.config.get("scheduler") == "dask.distributed"
        got = write_and_read(scene, tmp_path / "out.zarr")
        # the package's settings reach the worker processes
        seen = client.run(lambda: dask.config.get("lazyraster.cluster.log-tail-lines"))
        assert set(seen.values()) == {23}
    assert_bitwise_equal(got, threaded)
    assert not port_open(address)
    assert dask.config.get("scheduler", None) == before


def _worker_plugins(dask_worker) -> list[str]:
    return sorted(dask_worker.plugins)


def test_process_workers_freeze_their_heap_on_close(scene, threaded, tmp_path):
    """The plugin that makes worker processes exit fast is on every worker; same values."""
    from lazyraster.cluster._plugins import FreezeHeapOnClose

    with cluster("local", workers=2, threads_per_worker=1) as client:
        plugins = client.run(_worker_plugins)
        got = write_and_read(scene, tmp_path / "out.zarr")
    assert len(plugins) == 2
    assert all(FreezeHeapOnClose.name in names for names in plugins.values())
    assert_bitwise_equal(got, threaded)


def test_a_local_cluster_of_threads_in_this_process_starts_and_equals_threads(
    scene, threaded, tmp_path
):
    """``processes=False`` runs the workers in this process (inproc://): it must start."""
    with cluster("local", workers=2, threads_per_worker=1, processes=False) as client:
        assert client.scheduler.address.startswith("inproc://")
        got = write_and_read(scene, tmp_path / "out.zarr")
    assert_bitwise_equal(got, threaded)


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
            got = write_and_read(scene, tmp_path / "out.zarr")
        assert client.status == "closed"
        assert running.status.name == "running"  # not ours to shut down
    assert_bitwise_equal(got, threaded)


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


# --------------------------------------------------------------------------- hash seeds


def _hash_with_seed(seed: str) -> int:
    """The hash a fresh interpreter started with ``PYTHONHASHSEED=seed`` gives."""
    env = {**os.environ, "PYTHONHASHSEED": seed}
    command = [sys.executable, "-c", "print(hash('lazyraster'))"]
    return int(subprocess.run(command, env=env, capture_output=True, check=True).stdout)


@pytest.mark.parametrize(("given", "seed"), [(None, "6640"), ("0", "6640"), ("1234", "1234")])
def test_processes_workers_hash_alike_and_this_process_keeps_its_environment(
    given, seed, tmp_path, monkeypatch
):
    if given is None:
        monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    else:
        monkeypatch.setenv("PYTHONHASHSEED", given)
    before = dict(os.environ)
    tasks = [dask.delayed(hash_in_a_worker)(str(tmp_path), pure=False) for _ in range(2)]
    with cluster("processes", workers=2), dask.config.set(chunksize=1):
        answers = dask.compute(*tasks)
        assert dict(os.environ) == before
    assert dict(os.environ) == before
    pids = {pid for pid, _, _ in answers}
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes answered
    assert {h for _, h, _ in answers} == {_hash_with_seed(seed)}
    assert {s for _, _, s in answers} == {seed}


def test_a_bag_groups_by_hash_across_processes_workers():
    words = [f"w{i % 37}" for i in range(3000)]
    bag = db.from_sequence(words, npartitions=12)
    with cluster("processes", workers=2):
        groups = bag.groupby(lambda w: w, shuffle="tasks").map(lambda kv: (kv[0], len(kv[1])))
        got = groups.compute()
    assert sorted(got) == sorted(Counter(words).items())  # each word in one group
