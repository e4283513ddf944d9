"""Shared fixtures: numpy/dask backends and the skip-or-fail rule for real services."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import xarray as xr

from lazyraster.testing import uneven_chunks

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
pytest_plugins = ["tests.services"]  # nginx_server, nginx, stac_api: real servers on loopback


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
