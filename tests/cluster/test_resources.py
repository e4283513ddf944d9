"""Resources: cores by affinity, memory by the smallest of RAM, cgroup and SLURM job."""

from __future__ import annotations

import os

from lazyraster.cluster import _resources


def test_available_cores_follows_affinity():
    allowed = os.sched_getaffinity(0)
    assert _resources.available_cores() == len(allowed)
    one = {min(allowed)}
    os.sched_setaffinity(0, one)  # this thread only; restored below
    try:
        assert _resources.available_cores() == 1
    finally:
        os.sched_setaffinity(0, allowed)


def test_cgroup_limit_v2_nested_and_v1_unlimited(tmp_path):
    (tmp_path / "job_7").mkdir()
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "job_7" / "memory.max").write_text(f"{3 * 2**30}\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/job_7\n")
    assert _resources._cgroup_memory_limit(tmp_path, proc) == 3 * 2**30

    v1 = tmp_path / "v1"
    (v1 / "memory" / "slurm").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (v1 / "memory" / "slurm" / "memory.limit_in_bytes").write_text("1073741824\n")
    proc.write_text("4:memory:/slurm\n3:cpuset:/\n")
    assert _resources._cgroup_memory_limit(v1, proc) == 2**30
    proc.write_text("4:memory:/\n")
    assert _resources._cgroup_memory_limit(v1, proc) is None  # "no limit"


def test_slurm_memory_from_job_environment():
    limit = _resources._slurm_memory_limit
    assert limit({"SLURM_MEM_PER_NODE": "2048"}) == 2 * 2**30
    assert limit({"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "3"}) == 3000 * 2**20
    assert limit({}) is None


def test_available_memory_is_the_smallest_limit(monkeypatch):
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    monkeypatch.delenv("SLURM_MEM_PER_CPU", raising=False)
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "100")
    assert _resources.available_memory() == 100 * 2**20
    monkeypatch.setenv("SLURM_MEM_PER_NODE", str(4 * ram // 2**20))
    assert _resources.available_memory() <= ram
