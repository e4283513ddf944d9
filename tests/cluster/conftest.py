"""Fixtures of the cluster tests: the analysis every kind runs, SLURM, a clean environment."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from tests.cluster._support import SLURM_OPTION_VARIABLES, slurm, slurm_env, write_and_read  # noqa: F401 (fixtures for this folder)
from tests.conftest import ROOT

import lazyraster

SAMPLE_CATALOG = ROOT / "catalogs" / "sample" / "catalog.json"


@pytest.fixture(scope="module")
def scene() -> xr.Dataset:
    """Red and NIR of the bundled sample catalog, read from its GeoTIFFs by the workers."""
    ds = lazyraster.load(SAMPLE_CATALOG, bands=["red", "nir"], chunks={"y": 30, "x": 50})
    return ds.isel(time=0)  # 80 x 152 pixels in 3 x 4 chunks


@pytest.fixture(scope="module")
def threaded(scene, tmp_path_factory) -> dict[str, np.ndarray]:
    """The threaded result, the reference every other kind must equal bit for bit."""
    with lazyraster.cluster("threads"):
        return write_and_read(scene, tmp_path_factory.mktemp("threads") / "out.zarr")


@pytest.fixture
def clean_slurm_env(monkeypatch):
    """No SLURM option set in the environment (``LAZYRASTER_SLURM_*``, ``SBATCH_*``)."""
    for name in SLURM_OPTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch
