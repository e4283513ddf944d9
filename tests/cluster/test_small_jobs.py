"""Small jobs on process-based clusters: what each worker process costs is paid once.

Real worker processes throughout (spawned by dask's ``processes`` scheduler and by a
``LocalCluster``); what is checked is which processes ran what and how many started,
never how long anything took.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from concurrent.futures.process import BrokenProcessPool

import dask
import dask.array as da
import distributed
import numpy as np
import pytest
import rasterio
import xarray as xr
from tests.cluster._tasks import STARTED, kill_me, note_start, pid_block
from tests.pipeline._support import _catalog, _ndvi, _spec

import lazyraster
from lazyraster.pipeline import _run as pipeline
from lazyraster.testing import synthetic_raster

pools = importlib.import_module("lazyraster.cluster._pools")
resources = importlib.import_module("lazyraster.cluster._resources")


def _pids(n_chunks: int) -> set[int]:
    """The processes that ran the ``n_chunks`` tasks of one computation."""
    x = da.zeros(n_chunks, chunks=1, dtype=np.int64).map_blocks(pid_block, dtype=np.int64)
    return set(x.compute().tolist())


# --------------------------------------------------------------------------- one pool


def test_a_processes_block_starts_its_workers_once_for_every_computation():
    with lazyraster.cluster("processes", workers=2):
        seen = [_pids(12) for _ in range(3)]
        assert len(set().union(*seen)) <= 2  # dask alone starts 2 new processes per compute
        assert os.getpid() not in set().union(*seen)


def test_a_broken_pool_is_replaced_for_the_next_computation():
    with lazyraster.cluster("processes", workers=2):
        before = _pids(4)
        with pytest.raises(BrokenProcessPool) as broken:
            meta = np.array((), dtype=float)  # no trial call here: it would kill the test
            da.zeros(4, chunks=1).map_blocks(kill_me, dtype=float, meta=meta).compute()
        # one line, saying how the worker ended: callers quote it in one-line errors
        assert "\n" not in str(broken.value) and "SIGKILL" in str(broken.value)
        after = _pids(4)
        assert after and not after & before  # new processes, and they compute
        assert da.arange(10, chunks=3).sum().compute() == 45


def test_threads_inside_a_processes_block_are_threads():
    with lazyraster.cluster("processes", workers=2):
        x = da.zeros(4, chunks=1, dtype=np.int64).map_blocks(pid_block, dtype=np.int64)
        assert set(x.compute(scheduler="threads").tolist()) == {os.getpid()}
        assert os.getpid() not in set(x.compute().tolist())


def test_a_local_cluster_starts_inside_a_processes_block():
    # distributed's nanny pickles dask's config to start its worker process: the block's
    # scheduler must pickle (as dask's own "processes"), not drag its pool along
    with lazyraster.cluster("processes", workers=1):
        with lazyraster.cluster("local", workers=1) as client:
            assert client.submit(os.getpid).result() != os.getpid()
            assert da.arange(10, chunks=3).sum().compute() == 45
        assert os.getpid() not in _pids(2)


def test_overlapping_processes_blocks_in_two_threads_leave_a_working_scheduler():
    # dask.config.set is process-wide: B's block, entered inside A's and left after it,
    # puts A's (shut down) scheduler back; it must still compute, as dask's own would
    import threading

    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with lazyraster.cluster("processes", workers=1):
            a_in.set()
            b_in.wait()
        a_out.set()

    def second() -> None:
        a_in.wait()
        with lazyraster.cluster("processes", workers=1):
            b_in.set()
            a_out.wait()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert da.arange(10, chunks=3).sum().compute() == 45
    finally:
        dask.config.config.pop("scheduler", None)


def test_a_processes_block_shuts_its_workers_down():
    with lazyraster.cluster("processes", workers=2):
        workers = _pids(6)
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# --------------------------------------------------------------------------- writes


@pytest.fixture
def counted_submits(monkeypatch):
    """Count the tasks sent to the worker processes of a ``processes`` block."""
    sent: list[object] = []
    submit = pools._ProcessPool.submit

    def counting(self, fn, /, *args, **kwargs):
        sent.append(fn)
        return submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(pools._ProcessPool, "submit", counting)
    return sent


def test_persisted_data_are_written_without_going_to_the_worker_processes(
    tmp_path, counted_submits
):
    raster = synthetic_raster((300, 260), chunks={"y": 100, "x": 130}, nan_fraction=0.05)
    lazy = xr.Dataset({"ndvi": raster * 2, "half": raster / 2})
    with lazyraster.cluster("processes", workers=2):
        persisted = lazy.persist()
        assert counted_submits  # the persist ran in the worker processes
        counted_submits.clear()
        zarr_out = lazyraster.write_zarr(persisted, tmp_path / "out.zarr")
        tif_out = lazyraster.write_geotiff(persisted, tmp_path / "out.tif", blocksize=128)
        assert counted_submits == []
        lazyraster.write_zarr(lazy, tmp_path / "lazy.zarr")  # still to compute: processes
        assert counted_submits
    expected = lazy.compute(scheduler="sync")
    with xr.open_zarr(zarr_out) as back:
        np.testing.assert_array_equal(back.ndvi.values, expected.ndvi.values)
        assert back.rio.crs == raster.rio.crs
    with rasterio.open(tif_out) as src:
        np.testing.assert_array_equal(src.read(1), expected.ndvi.values)
        np.testing.assert_array_equal(src.read(2), expected.half.values)


def test_persisted_data_on_a_local_cluster_are_written_where_they_are(tmp_path):
    raster = synthetic_raster((512, 512), chunks={"y": 256, "x": 256})
    lazy = xr.Dataset({"a": raster * 2, "b": raster + 1})
    # Work stealing would move some cheap write tasks to an idle worker on a busy
    # machine (the scheduler's balancing, timing-dependent): without it, what moves is
    # what the writers' graphs ask for.
    with (
        dask.config.set({"distributed.scheduler.work-stealing": False}),
        lazyraster.cluster("local", workers=2, threads_per_worker=1) as client,
    ):

        def sent(dask_worker) -> int:
            return dask_worker.transfer_outgoing_bytes_total

        persisted = lazy.persist()
        distributed.wait(distributed.futures_of(persisted))
        before = sum(client.run(sent).values())
        zarr_out = lazyraster.write_zarr(persisted, tmp_path / "out.zarr")
        lazyraster.write_geotiff(persisted, tmp_path / "out.tif", blocksize=128, overviews=False)
        moved = sum(client.run(sent).values()) - before
    # nothing near the data (2 MiB) left the workers: not to the client, not between them
    assert moved < persisted.nbytes / 10
    with xr.open_zarr(zarr_out) as back:
        np.testing.assert_array_equal(back.a.values, raster.values * 2)


# --------------------------------------------------------------------------- sizing


@pytest.fixture(scope="module")
def three_chunks(tmp_path_factory):
    """Three scenes, one chunk per scene and band: a job of three chunks at a time.

    One catalog for the module: the runs only read it (each writes to its own folder).
    """
    source, files = _catalog(tmp_path_factory.mktemp("three_chunks"))
    return source, files


def _recording(record: dict):
    """``pipeline._cluster`` that notes the workers and threads of the cluster it starts."""
    started = pipeline._cluster

    @contextlib.contextmanager
    def wrapped(**options):
        with started(**options) as client:
            if client is not None:
                record["workers"] = len(client.scheduler_info()["workers"])
                record["threads"] = sum(client.nthreads().values())
            yield client

    return wrapped


@pytest.mark.parametrize("kind", ["processes", "local"])
def test_a_three_chunk_run_starts_at_most_three_workers(kind, three_chunks, tmp_path, monkeypatch):
    source, files = three_chunks
    monkeypatch.setattr(resources, "available_cores", lambda: 8)
    monkeypatch.setenv(STARTED, str(tmp_path / "started"))
    (tmp_path / "started").mkdir()
    record: dict = {}
    monkeypatch.setattr(pipeline, "_cluster", _recording(record))
    monkeypatch.setattr(pipeline, "BYTES_PER_WORKER", 1)  # as if each chunk were big
    spec = _spec(source, tmp_path / "out", cluster=kind)
    spec["load"]["chunks"] = 512  # one chunk per scene and band
    with dask.config.set({"multiprocessing.initializer": note_start}):
        pipeline.run_pipeline(spec)
    if kind == "processes":
        assert len(os.listdir(tmp_path / "started")) == 3  # 8 without the sizing
    else:
        assert record == {"workers": 3, "threads": 6}  # 8 cores: 2 threads each
    with xr.open_zarr(tmp_path / "out" / "ndvi.zarr") as ds:
        for k in range(3):
            np.testing.assert_allclose(
                ds.ndvi.isel(time=k).values, _ndvi(files[f"s{k}"]), rtol=1e-6
            )


def test_a_tiny_run_on_local_is_one_worker_with_every_core_as_threads(
    three_chunks, tmp_path, monkeypatch
):
    source, _ = three_chunks  # 27 chunks of a few KiB: far less than BYTES_PER_WORKER
    monkeypatch.setattr(resources, "available_cores", lambda: 4)
    record: dict = {}
    monkeypatch.setattr(pipeline, "_cluster", _recording(record))
    pipeline.run_pipeline(_spec(source, tmp_path / "out", cluster="local"))
    assert record == {"workers": 1, "threads": 4}


def test_workers_given_in_the_spec_are_kept(three_chunks, tmp_path, monkeypatch):
    source, _ = three_chunks
    record: dict = {}
    monkeypatch.setattr(pipeline, "_cluster", _recording(record))
    spec = _spec(source, tmp_path / "out", cluster={"kind": "local", "workers": 1})
    spec["load"]["chunks"] = 512
    pipeline.run_pipeline(spec)
    assert record["workers"] == 1
