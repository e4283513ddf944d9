"""SLURM worker jobs on a real controller, and what is said when they do not start.

The tests that submit need the single-node cluster of ``scripts/services/slurm.sh``;
they are skipped on a laptop without it and fail in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from tests.cluster._support import (
    CONFIG_SECRET,
    ENV_SECRET,
    LOOPBACK,
    assert_bitwise_equal,
    payloads,
    port_open,
    spying_sbatch,
    squeue,
    write_and_read,
)
from tests.conftest import ROOT

import lazyraster
from lazyraster.cluster import _factory, _jobs
from lazyraster.errors import ClusterConfigError, ClusterStartError

cluster = lazyraster.cluster


def test_job_description_shows_state_and_log_tail(tmp_path, monkeypatch):
    log = tmp_path / "dask-worker-42.err"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "ImportError: no numba\n")
    pattern = tmp_path / "dask-worker-%J.err"  # as scontrol shows it: not expanded
    shown = (
        "JobId=42 JobName=dask-worker JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0 "
        f"StdErr={pattern} StdOut={pattern}"
    )
    monkeypatch.setattr(
        _jobs,
        "_run",
        lambda args, timeout=30: subprocess.CompletedProcess(args, 0, shown + "\n", ""),
    )
    monkeypatch.setattr(_jobs.shutil, "which", lambda name: f"/usr/bin/{name}")
    text = _jobs._describe_jobs(["42"])
    assert text.startswith("job 42: FAILED (Reason=NonZeroExitCode, ExitCode=1:0)")
    assert text.count(str(log)) == 1  # the same file is shown once
    assert "ImportError: no numba" in text and "line 71" in text and "line 70\n" not in text


def test_log_path_patterns_are_expanded():
    info = {"JobId": "7", "JobName": "dask-worker", "UserId": "ana(1001)", "BatchHost": "n1"}
    expand = _jobs._expand_log_path
    assert expand("/l/%x-%j.out", info) == "/l/dask-worker-7.out"
    assert expand("/l/%u/%N-%4J-%%.err", info) == "/l/ana/n1-0007-%.err"
    assert expand("/l/slurm-%A_%a.out", {**info, "ArrayJobId": "5", "ArrayTaskId": "2"}) == (
        "/l/slurm-5_2.out"
    )


def test_slurm_two_jobs_equal_threads_bit_for_bit(slurm_env, scene, threaded, tmp_path):
    with (
        dask.config.set({"lazyraster.cluster.log-tail-lines": 17}),
        cluster("slurm", jobs=2, log_directory=str(tmp_path), timeout=60, **LOOPBACK) as client,
    ):
        address = client.scheduler.address
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2
        assert all(w.startswith("tcp://127.0.0.1:") for w in workers)
        jobs = squeue(slurm_env)
        assert len(jobs) == 2 and all(j.endswith("RUNNING") for j in jobs)
        got = write_and_read(scene, tmp_path / "out.zarr")
        # both workers took part, and the package's settings reached them
        assert all(
            n > 0 for n in client.run(lambda dask_worker: dask_worker.state.executed_count).values()
        )
        seen = client.run(lambda: dask.config.get("lazyraster.cluster.log-tail-lines"))
        assert set(seen.values()) == {17}
    assert_bitwise_equal(got, threaded)
    assert not port_open(address)


def _slow_block(block: np.ndarray) -> np.ndarray:
    time.sleep(0.15)
    return block * np.float32(2)


@pytest.mark.slow
def test_slurm_scancel_of_a_worker_still_gives_the_right_answer(slurm_env, tmp_path):
    from distributed import KilledWorker

    values = np.arange(64 * 32, dtype=np.float32).reshape(64, 32)
    lazy = da.from_array(values, chunks=8).map_blocks(_slow_block, dtype=np.float32)
    with cluster("slurm", jobs=2, log_directory=str(tmp_path), timeout=60, **LOOPBACK) as client:
        job_ids = [line.split()[0] for line in squeue(slurm_env)]
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
        cluster("slurm", partition="no-such-partition", **LOOPBACK),
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
        cluster("slurm", **{**LOOPBACK, "memory": too_much}),
    ):
        pass
    with (
        pytest.raises(ClusterConfigError, match=r"sbatch --test-only.*Invalid feature"),
        cluster("slurm", job_extra_directives=["--constraint=no-such-feature"], **LOOPBACK),
    ):
        pass
    assert time.monotonic() - start < 10
    assert squeue(slurm_env) == []  # nothing was submitted


def test_slurm_refused_submission_is_an_error_not_a_hang(slurm_env, monkeypatch):
    # As if sbatch --test-only had passed and the real submission then failed.
    monkeypatch.setattr(_factory, "_check_with_sbatch", lambda resolved: None)
    start = time.monotonic()
    with (
        pytest.raises(ClusterStartError, match="sbatch did not accept 1 worker job"),
        cluster("slurm", job_extra_directives=["--constraint=no-such-feature"], **LOOPBACK),
    ):
        pass
    assert time.monotonic() - start < 10


def test_slurm_adaptive_computes_and_cleans_up_after_an_error(slurm_env, tmp_path):
    values = np.arange(40 * 40, dtype=np.float32).reshape(40, 40)
    with (
        pytest.raises(KeyError, match="raised inside the block"),
        cluster(
            "slurm", adapt=(1, 2), log_directory=str(tmp_path), timeout=60, **LOOPBACK
        ) as client,
    ):
        address = client.scheduler.address
        assert len(client.scheduler_info()["workers"]) >= 1
        lazy = da.from_array(values, chunks=10) * np.float32(3)
        np.testing.assert_array_equal(lazy.compute(), values * np.float32(3))
        raise KeyError("raised inside the block")
    assert not port_open(address)  # and slurm_env checks that no job is left


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
            **LOOPBACK,
        ),
    ):
        pass
    message = str(info.value)
    assert "FAILED" in message and "ExitCode=3:0" in message
    assert "the worker environment is broken" in message
    assert str(tmp_path) in message


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
    while squeue(env) and time.monotonic() < deadline:
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


def test_slurm_workers_get_credentials_no_command_line_or_open_file_holds(
    slurm_env, tmp_path, monkeypatch
):
    """The credentials reach the workers, and nothing a reader could see holds them.

    A spying ``sbatch`` first on PATH records, at each call, every process's command
    line (``ps``) and every file under the temporary folder (where the job scripts and
    the credentials file go) and the log folder that holds a value, with the file's mode
    and its folder's. A value on a command line, in a job script, or in a file that
    group or others may read, fails here.
    """
    monkeypatch.setenv("GDAL_HTTP_USERPWD", ENV_SECRET)
    names = ["GDAL_HTTP_USERPWD", "GDAL_HTTP_HEADERS"]
    temporary, logs = tmp_path / "tmp", tmp_path / "logs"
    temporary.mkdir()
    logs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    spy, record = spying_sbatch(
        tmp_path / "bin", [ENV_SECRET, "cfg-t0ken"], names, [temporary, logs]
    )
    monkeypatch.setenv("PATH", f"{spy}{os.pathsep}{os.environ['PATH']}")

    def seen_by_worker() -> dict[str, list]:
        import rasterio.env

        with rasterio.env.Env():
            gdal = [rasterio.env.get_gdal_config(n) for n in names]
        return {"environ": [os.environ.get(n) for n in names], "gdal": gdal}

    with (
        dask.config.set({"lazyraster.gdal.GDAL_HTTP_HEADERS": CONFIG_SECRET}),
        cluster("slurm", jobs=1, log_directory=str(logs), timeout=60, **LOOPBACK) as client,
    ):
        (seen,) = client.run(seen_by_worker).values()
        (job_id,) = [line.split()[0] for line in squeue(slurm_env)]
        stored = subprocess.run(
            ["scontrol", "write", "batch_script", job_id, "-"],
            env=slurm_env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    assert seen == {"environ": [ENV_SECRET, CONFIG_SECRET], "gdal": [ENV_SECRET, CONFIG_SECRET]}
    assert "#SBATCH --cpus-per-task=1" in stored  # the script SLURM keeps on disk
    text = payloads(stored)
    assert ENV_SECRET not in text and "cfg-t0ken" not in text
    assert "# GDAL_HTTP_USERPWD=*** comes with the job's environment" in text
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    (submit,) = [c for c in calls if "--test-only" not in c["argv"]]
    for call in calls:
        assert call["commands"] == [], "a credential is on a command line"
        for path, mode, folder in call["files"]:
            assert mode & 0o077 == 0 and folder & 0o077 == 0, f"{path} {mode:o} {folder:o}"
    assert len(submit["files"]) == 1  # the credentials file, and no job script
    assert submit["environ"] == [ENV_SECRET, CONFIG_SECRET]  # sbatch has them to export
    assert submit["argv"][0] == "--export=ALL"
    left = [p for p in temporary.rglob("*") if p.is_file()]
    assert not [p for p in left if ENV_SECRET in p.read_text(errors="replace")]
    logged = "".join(p.read_text(errors="replace") for p in logs.iterdir() if p.is_file())
    assert ENV_SECRET not in logged and "cfg-t0ken" not in logged
