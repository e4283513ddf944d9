"""Helpers of the cluster tests, shared with the pipeline's: SLURM on this machine.

``slurm`` and ``slurm_env`` are fixtures (a test module takes them in with
``slurm = _support.slurm``, or from ``tests/cluster/conftest.py``). They need the
single-node cluster of ``scripts/services/slurm.sh``: without it a test is skipped on
a laptop and fails in CI (``require_service``).
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from tests.cluster._tasks import mean3x3_block
from tests.conftest import ROOT, require_service
from tests.services import free_port, run_script

from lazyraster.cluster._slurm import _SLURM_ENV

SLURM_SH = ROOT / "scripts" / "services" / "slurm.sh"
SLURM_STATE = ROOT / ".services" / "slurm"

#: Options that keep a SLURM cluster on loopback: scheduler, workers and dashboards.
LOOPBACK = {"interface": "lo", "cores": 1, "memory": "1GiB", "walltime": "00:10:00"}

#: Every environment variable a SLURM option is read from.
SLURM_OPTION_VARIABLES = [v for names in _SLURM_ENV.values() for v in names]


def squeue(conf_env: dict[str, str]) -> list[str]:
    """``<job id> <state>`` of every job the controller knows (pending, running, ...)."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %T"], env=conf_env, capture_output=True, text=True, check=True
    )
    return out.stdout.split("\n")[:-1]


def port_open(address: str) -> bool:
    """Whether something listens on ``tcp://host:port``."""
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def sbatch_lines(script: str) -> list[str]:
    """The ``#SBATCH`` lines of a job script."""
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def assert_bitwise_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """float32 arrays equal bit for bit (NaNs included)."""
    for name in want:
        assert got[name].dtype == want[name].dtype == np.float32
        np.testing.assert_array_equal(got[name].view(np.uint32), want[name].view(np.uint32))


def analysis(ds: xr.Dataset) -> xr.Dataset:
    """NDVI and a 3x3 mean of it with halos across chunks (map_overlap), lazily."""
    import dask.array as da

    ndvi = ds.geo.ndvi()
    smooth = ndvi.copy(
        data=da.map_overlap(
            mean3x3_block,
            ndvi.data,
            depth=1,
            boundary=np.float32(0),
            meta=np.array((), dtype=np.float32),
        )
    )
    return xr.Dataset({"ndvi": ndvi, "ndvi_mean3": smooth})


def write_and_read(ds: xr.Dataset, path: Path) -> dict[str, np.ndarray]:
    """:func:`analysis` written to Zarr by the current scheduler, and read back."""
    # computed on the input's chunks (halos cross them), written on Zarr's regular ones
    analysis(ds).chunk({"y": 40, "x": 45}).to_zarr(path, mode="w", consolidated=False)
    with xr.open_zarr(path, consolidated=False) as written:
        assert written.rio.crs == ds.rio.crs
        return {name: written[name].values for name in ("ndvi", "ndvi_mean3")}


@pytest.fixture(scope="module")
def slurm() -> Iterator[dict[str, str]]:
    """SLURM on this machine, with SLURM_CONF set for the module.

    Reuses the cluster of ``.services/slurm`` when it runs (and leaves it running);
    otherwise starts it with ``scripts/services/slurm.sh start`` on free ports and stops
    it at the end. Installing is never done here (``slurm.sh install``, as root).
    """
    installed = all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "munged"))
    how = "scripts/services/slurm.sh install"  # as root; the fixture starts it then
    started, problem = False, "not installed"
    if installed and run_script(SLURM_SH, "status").returncode == 0:
        problem = ""
    elif installed:
        ports = {
            "LAZYRASTER_SLURMCTLD_PORT": str(free_port()),
            "LAZYRASTER_SLURMD_PORT": str(free_port()),
        }
        result = run_script(SLURM_SH, "start", env=ports)
        started = result.returncode == 0
        problem = "" if started else f"start failed: {result.stderr.strip()[-500:]}"
        how = "scripts/services/slurm.sh start"
    require_service(not problem, f"SLURM ({problem})" if problem else "SLURM", how)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SLURM_CONF", str(SLURM_STATE / "etc" / "slurm.conf"))
            for name in SLURM_OPTION_VARIABLES:
                mp.delenv(name, raising=False)
            yield dict(os.environ)
    finally:
        if started:
            run_script(SLURM_SH, "stop")


@pytest.fixture
def slurm_env(slurm: dict[str, str]) -> Iterator[dict[str, str]]:
    """Each test leaves no job behind (pending, running or completing)."""
    assert squeue(slurm) == [], "jobs left over from before this test"
    yield slurm
    deadline = time.monotonic() + 20
    while squeue(slurm) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert squeue(slurm) == []


#: Credentials of the masking tests: in the environment, and in dask config.
ENV_SECRET = "ana:env-s3cret-4f1d"
CONFIG_SECRET = "Authorization: Bearer cfg-t0ken-9a2c"


def payloads(script: str) -> str:
    """The script and the decoded dask config it carries: everything a reader could see."""
    line = next(x for x in script.splitlines() if "DASK_INTERNAL_INHERIT_CONFIG" in x)
    return script + base64.b64decode(line.split("=", 1)[1]).decode()


#: An ``sbatch`` that records what a reader could see of the credentials while it runs
#: (every process's command line, every file under the watched folders, with its mode
#: and its folder's), then execs the real one. Its settings come from a JSON file beside it.
_SPY = """#!{python}
import json, os, stat, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "spy.json")) as f:
    spy = json.load(f)
secrets = spy["secrets"]
def holds(data):
    return any(s.encode() in data for s in secrets)
commands = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{{pid}}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        continue
    if holds(cmdline):
        commands.append(cmdline.replace(b"\\0", b" ").decode(errors="replace"))
files, seen = [], set()
for root in [*spy["roots"], os.path.dirname(os.path.abspath(sys.argv[-1]))]:
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if path in seen:
                continue
            seen.add(path)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if holds(data):
                files.append([path, stat.S_IMODE(os.stat(path).st_mode),
                              stat.S_IMODE(os.stat(folder).st_mode)])
record = {{"argv": sys.argv[1:], "commands": commands, "files": files,
          "environ": [os.environ.get(n) for n in spy["names"]]}}
with open(spy["record"], "a") as f:
    f.write(json.dumps(record) + "\\n")
os.execv(spy["sbatch"], ["sbatch", *sys.argv[1:]])
"""


def spying_sbatch(
    folder: Path, secrets: list[str], names: list[str], roots: list[Path]
) -> tuple[Path, Path]:
    """Put :data:`_SPY` at ``folder/sbatch``; return the folder (for PATH) and its record.

    ``secrets`` are the values looked for, ``names`` the variables whose values the spy
    reports from its own environment, ``roots`` the folders searched for files.
    """
    import json
    import sys

    folder.mkdir()
    record = folder / "record.jsonl"
    settings = {
        "secrets": secrets,
        "names": names,
        "roots": [str(r) for r in roots],
        "record": str(record),
        "sbatch": shutil.which("sbatch"),
    }
    (folder / "spy.json").write_text(json.dumps(settings))
    spy = folder / "sbatch"
    spy.write_text(_SPY.format(python=sys.executable))
    spy.chmod(0o700)
    return folder, record
