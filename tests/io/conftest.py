"""Fixtures of the writer tests."""

from __future__ import annotations

import pytest
import xarray as xr

from lazyraster.testing import synthetic_raster


@pytest.fixture
def raster() -> xr.DataArray:
    da = synthetic_raster((40, 56), nan_fraction=0.1, name="ndvi")
    return da.assign_attrs(units="1", long_name="NDVI")
