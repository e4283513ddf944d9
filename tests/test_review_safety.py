"""Defects found by the review of issue 14: each test failed before its fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import xarray as xr

from lazyraster import OutputExistsError, write_zarr
from lazyraster.testing import synthetic_raster

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


@pytest.fixture
def raster() -> xr.DataArray:
    return synthetic_raster((8, 8), name="ndvi", chunks={"y": 4, "x": 4})


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("metadata", "user_file"),
    [
        ({"zarr.json": ""}, "thesis.docx"),  # an empty file named like Zarr metadata
        ({".zgroup": '{"zarr_format": 2}'}, "sub/data.csv"),  # valid metadata, user files
        ({"zarr.json": '{"zarr_format": 3, "node_type": "group"}'}, "notes.txt"),
    ],
)
def test_overwrite_refuses_a_zarr_lookalike_holding_user_files(
    tmp_path, raster, metadata, user_file
):
    target = tmp_path / "results"
    target.mkdir()
    for name, text in metadata.items():
        (target / name).write_text(text)
    (target / user_file).parent.mkdir(parents=True, exist_ok=True)
    (target / user_file).write_text("years of work")
    before = tree(target)
    with pytest.raises(OutputExistsError, match=rf"{re.escape(str(target))} is not a Zarr store"):
        write_zarr(raster, target, mode="w")
    assert tree(target) == before


def test_overwrite_still_replaces_stores_with_groups(tmp_path, raster):
    for zarr_format in (2, 3):
        store = tmp_path / f"v{zarr_format}.zarr"
        write_zarr(raster, store, group="2020", zarr_format=zarr_format)
        write_zarr(raster, store, group="2021", zarr_format=zarr_format)
        write_zarr(raster + 1, store, mode="w", zarr_format=zarr_format)
        xr.testing.assert_equal(xr.open_zarr(store).ndvi.load(), (raster + 1).load())
