"""Shared fixtures: numpy/dask backends and the skip-or-fail rule for real services.

``make test`` runs the suite on two processes (``pytest -n 2 --dist loadgroup``).
``pytest_collection_modifyitems`` below keeps together, on one worker, the tests that
share something a second worker would break or pay for twice (``xdist_group``):

- every test that uses SLURM (its module fixture starts and stops the cluster, and each
  test checks that no job is left over, which another worker's jobs would break);
- every test that uses the STAC API (one server per checkout, ``.services/stac-api``);
- the tests of one module that share a module-scoped fixture (one notebook run, one
  cluster, one set of files made once per module), one group per parameter of it.

nginx needs no group: each worker runs its own (``tests/services.py``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import xarray as xr

from lazyraster.testing import uneven_chunks

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
pytest_plugins = ["tests.services"]  # nginx_server, nginx, stac_api: real servers on loopback


SLURM_FIXTURES = {"slurm", "slurm_env"}
#: The notebook (tests/test_notebooks.py) that asks for SLURM inside its fixture.
SLURM_NOTEBOOKS = {"laptop_to_cluster"}


def _xdist_group(item: pytest.Item) -> str | None:
    """The group of ``item`` (see the module's docstring), or None: any worker will do."""
    names = set(getattr(item, "fixturenames", ()))
    params = getattr(getattr(item, "callspec", None), "params", {})
    if names & SLURM_FIXTURES or params.get("notebook") in SLURM_NOTEBOOKS:
        return "slurm"
    if "stac_api" in names:
        return "stac-api"
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    shared = sorted(
        name for name, defs in definitions.items() if defs[-1].scope in {"module", "class"}
    )
    if not shared:
        return None
    ids = [f"{name}={params[name]}" for name in shared if name in params]
    group = ":".join([item.nodeid.split("::")[0], *ids])
    # xdist finds the group after the last "@" of the test id, and only when no "]" follows
    # it (a parametrized id ends in "]"): neither may appear in the name.
    return group.translate(str.maketrans("[]@", "()_"))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that must share a worker with ``xdist_group`` (see above)."""
    for item in items:
        group = None if item.get_closest_marker("xdist_group") else _xdist_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop a ``--dist loadgroup`` run in which xdist dropped the groups.

    pytest-xdist passes a test's group to its scheduler as a suffix of the test id; pytest
    9.2 keeps the id elsewhere, so the suffix is lost and grouped tests would run on
    several workers at once (pytest-dev/pytest-xdist#1386; the test extra pins pytest below
    9.2 until xdist follows).
    """
    if not session.config.getoption("loadgroup", default=False):
        return
    lost = [
        item.nodeid
        for item in session.items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
    ]
    if lost:
        message = (
            f"pytest-xdist ignored the xdist_group of {len(lost)} tests (e.g. {lost[0]}): "
            'install a pytest it supports, pip install "pytest<9.2" (pytest-xdist#1386)'
        )
        print(message, file=sys.stderr)  # a worker's error reaches the terminal only so
        raise pytest.UsageError(message)


def require_service(available: bool, name: str, how: str) -> None:
    """Skip the calling test on a laptop, fail it in CI, when a service is missing."""
    if available:
        return
    message = f"{name} is not running; start it with `{how}`"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted on ``folder`` with mount ``options`` (root only; CI runs as root)."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "lazyraster-test", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    require_service(
        mounted.returncode == 0, f"a tmpfs ({mounted.stderr.strip()})", "run the tests as root"
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


@pytest.fixture(params=["numpy", "dask"])
def backend(request):
    """Return a function that puts an xarray object on numpy or on unevenly chunked dask."""

    def convert(obj: xr.DataArray | xr.Dataset) -> xr.DataArray | xr.Dataset:
        if request.param == "numpy":
            return obj.compute()
        chunks = {dim: uneven_chunks(size) for dim, size in obj.sizes.items()}
        return obj.chunk(chunks)

    convert.name = request.param
    return convert
