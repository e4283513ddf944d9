"""The notebooks (jupytext percent scripts in notebooks/) run and give the reference values.

Each notebook runs top to bottom once (a module fixture); its results, read from the
namespace it leaves, are compared with values made outside lazyraster
(:mod:`tests.references`) within the tolerances of the analysis and pipeline tests.
The checks are functions, so that a test can hand them a wrong result and see them fail.
"""

from __future__ import annotations

import ast
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.references import loop_focal_mean, ml_si_published, sample_ndvi

import lazyraster
from lazyraster.testing import daymet_like

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


def check_quickstart(ns: dict[str, Any]) -> None:
    """NDVI and its 3x3 focal mean equal rasterio + numpy and a plain loop."""
    expected, transform, crs = sample_ndvi()
    assert ns["ndvi"].rio.crs == crs
    assert ns["ndvi"].rio.transform() == transform
    assert np.isnan(expected).any()  # nodata is part of the check
    np.testing.assert_allclose(ns["values"], expected, rtol=2e-6, atol=1e-7, equal_nan=True)
    np.testing.assert_allclose(
        ns["focal"], loop_focal_mean(expected), rtol=2e-6, atol=1e-6, equal_nan=True
    )


def check_daymet_spring_index(ns: dict[str, Any]) -> None:
    """The six stations give ML_SI's published days, every station-year; the Daymet run
    (files -> catalog -> load -> spring index -> Zarr) gives what the model gives on the
    data the notebook wrote, held in memory."""
    stations = ns["stations"]
    np.testing.assert_array_equal(stations.year, np.arange(1850, 2051))
    for event in ("leaf", "bloom"):
        got = stations[f"first_{event}"].sel(plant="average").values
        np.testing.assert_array_equal(got, ml_si_published(event), err_msg=event)
    direct = lazyraster.spring_index_dataset(daymet_like(2021, shape=(12, 16)))
    expected = direct.first_leaf.sel(plant="average")
    assert int(expected.year) == 2021
    np.testing.assert_array_equal(ns["leaf_2021"].values, expected.values)


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "quickstart": check_quickstart,
    "daymet_spring_index": check_daymet_spring_index,
}


@pytest.fixture(scope="module", params=[p.stem for p in NOTEBOOKS])
def notebook(request, tmp_path_factory) -> tuple[str, dict[str, Any]]:
    """(name, namespace) of a notebook run from the repository root."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        mp.setenv("LAZYRASTER_WORK", str(tmp_path_factory.mktemp(request.param)))
        return request.param, runpy.run_path(str(ROOT / "notebooks" / f"{request.param}.py"))


def test_notebook_gives_the_reference_values(notebook):
    name, namespace = notebook
    CHECKS[name](namespace)


def _perturbed(name: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """The namespace with one value of the notebook's main result changed."""
    changed = dict(namespace)
    if name == "quickstart":
        values = namespace["values"].copy()
        row, col = np.argwhere(np.isfinite(values))[len(values) // 2]
        values[row, col] += 1e-3  # one pixel, by less than NDVI's printed precision
        changed["values"] = values
    else:
        leaf = namespace["stations"].first_leaf.copy(deep=True)
        average = int(np.flatnonzero(leaf.plant.values == "average")[0])
        year, station = np.argwhere(np.isfinite(leaf.values[average]))[0]
        leaf.values[average, year, station] += 1  # one station-year, one day later
        changed["stations"] = namespace["stations"].assign(first_leaf=leaf)
    return changed


def test_a_wrong_result_fails_the_check(notebook):
    name, namespace = notebook
    with pytest.raises(AssertionError):
        CHECKS[name](_perturbed(name, namespace))


def test_every_notebook_has_a_check():
    assert NOTEBOOKS
    assert sorted(CHECKS) == sorted(p.stem for p in NOTEBOOKS)


def test_the_notebooks_import_nothing_from_tests():
    """Users run the notebooks: what they compute is theirs, the comparison is here."""
    for path in NOTEBOOKS:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "tests" for n in names), (path.name, names)
