"""The ``geo`` accessor: renamed methods keep their old names for one release, and
``import lazyraster`` sets nothing on xarray's classes but what xarray's public
``register_*_accessor`` sets."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr

import lazyraster
from lazyraster.errors import OutputExistsError
from lazyraster.testing import daymet_like


def bands() -> xr.Dataset:
    return xr.Dataset(
        {
            "red": (("y", "x"), np.array([[0.1, 0.2], [0.3, 0.05]])),
            "nir": (("y", "x"), np.array([[0.5, 0.2], [0.4, 0.6]])),
            "swir22": (("y", "x"), np.array([[0.2, 0.1], [0.1, 0.3]])),
        }
    )


def test_indices_function_is_renamed_compute_indices_and_the_old_name_still_works() -> None:
    ds = bands()
    expected = lazyraster.indices.compute_indices(ds, ["NDVI", "NBR"])
    with pytest.warns(FutureWarning, match=r"lazyraster\.indices\.compute_indices"):
        old = lazyraster.indices.indices(ds, ["NDVI", "NBR"])
    xr.testing.assert_identical(old, expected)
    # NDVI from its definition, outside the code under test
    np.testing.assert_allclose(expected.NDVI, (ds.nir - ds.red) / (ds.nir + ds.red), rtol=1e-6)


def test_geo_indices_is_renamed_compute_indices() -> None:
    ds = bands()
    new = ds.geo.compute_indices(["NDVI", "SAVI"], L=0.5)
    with pytest.warns(FutureWarning, match=r"\.geo\.compute_indices"):
        old = ds.geo.indices(["NDVI", "SAVI"], L=0.5)
    xr.testing.assert_identical(old, new)
    xr.testing.assert_identical(
        new, lazyraster.indices.compute_indices(ds, ["NDVI", "SAVI"], L=0.5)
    )


def test_geo_spring_index_is_renamed_for_the_function_it_calls() -> None:
    ds = daymet_like(2021)
    new = ds.geo.spring_index_dataset()
    xr.testing.assert_identical(new, lazyraster.spring_index_dataset(ds))
    with pytest.warns(FutureWarning, match=r"\.geo\.spring_index_dataset"):
        old = ds.geo.spring_index()
    xr.testing.assert_identical(old, new)


def test_geo_to_zarr_is_renamed_write_zarr_and_keeps_refusing_to_overwrite(tmp_path) -> None:
    ds = bands()
    ds.geo.write_zarr(tmp_path / "new.zarr")
    with pytest.warns(FutureWarning, match=r"\.geo\.write_zarr"):
        ds.geo.to_zarr(tmp_path / "old.zarr")
    old, new = (xr.open_zarr(tmp_path / f"{n}.zarr").load() for n in ("old", "new"))
    xr.testing.assert_equal(old, new)  # attributes differ by their write time only
    xr.testing.assert_equal(new, ds)
    # the old name is the writer, not Dataset.to_zarr: an existing output is refused
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(OutputExistsError):
            ds.geo.to_zarr(tmp_path / "old.zarr")
    with pytest.raises(OutputExistsError):
        ds.geo.write_zarr(tmp_path / "new.zarr")


def test_renamed_names_warn_on_call_not_on_lookup() -> None:
    ds = bands()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert callable(ds.geo.indices) and callable(ds.geo.to_zarr)
        assert hasattr(ds.geo, "spring_index")


SNAPSHOT = """
import json, sys, warnings
warnings.simplefilter("error")
import xarray as xr
@xr.register_dataset_accessor("_probe")
class Probe:
    def __init__(self, obj):
        pass
public = type(vars(xr.Dataset)["_probe"])  # what xarray's public registration sets
delattr(xr.Dataset, "_probe")
before = {c: dict(vars(c)) for c in (xr.Dataset, xr.DataArray)}
import lazyraster
xr.Dataset.geo  # the accessor registers as xarray is imported
set_by_us = {
    f"{c.__name__}.{k}": type(v).__name__
    for c in before for k, v in vars(c).items()
    if before[c].get(k) is not v and type(v) is not public
}
print(json.dumps([set_by_us, "rioxarray" in sys.modules]))
da = xr.DataArray([[1.0]], dims=("y", "x"), coords={"y": [0.5], "x": [0.5]})
print(da.rio.write_crs("EPSG:4326").rio.crs.to_epsg())
import rioxarray  # its own registration replaces the stand-in, silently
print(type(xr.Dataset().rio).__module__)
"""


def test_import_sets_nothing_on_xarray_classes_but_public_accessors() -> None:
    """The old ``_Rio`` placeholder was assigned to ``xr.Dataset.rio`` by hand; now
    ``rio`` is a stand-in registered like ``geo``, and ``.rio`` still works after
    ``import lazyraster`` alone, importing rioxarray on first use."""
    done = subprocess.run(
        [sys.executable, "-c", SNAPSHOT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    first, epsg, module = done.stdout.splitlines()
    assert first == "[{}, false]"
    assert epsg == "4326"
    assert module.startswith("rioxarray.")
