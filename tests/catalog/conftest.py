"""Fixtures of the catalog tests: sample inputs of every format, a Daymet catalog, a CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.catalog._support import DAYMET

from lazyraster.catalog import build_catalog
from lazyraster.testing import write_daymet, write_safe, write_sample_cog


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Daymet-like netCDF files (2 regions x 2 years x 3 variables), two COGs, a SAFE."""
    root = tmp_path_factory.mktemp("inputs")
    for region in ("na", "pr"):
        for year in (2020, 2021):
            for variable in ("tmax", "tmin", "dayl"):
                name = DAYMET.format(region=region, variable=variable, year=year)
                write_daymet(root / "daymet" / name, variable=variable, year=year, days=30)
    write_sample_cog(root / "cogs" / "20230430_B04.tif")
    write_sample_cog(root / "cogs" / "20230430_B08.tif", seed=1)
    write_safe(root / "s2", size_10m=6, bands={"10m": ["B04", "B08"], "20m": ["SCL"]})
    return root


@pytest.fixture
def daymet_catalog(inputs, tmp_path) -> Path:
    """A catalog of the Daymet inputs: collection ``daymet``, ``${region}/${year}``."""
    out = tmp_path / "stac"
    report = build_catalog(inputs / "daymet", out, pattern=DAYMET, layout="${region}/${year}",
                           collection="daymet", checksum=True)  # fmt: skip
    assert report.ok
    return out


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    """A CliRunner working in an empty folder of its own."""
    monkeypatch.chdir(tmp_path)
    return CliRunner()
