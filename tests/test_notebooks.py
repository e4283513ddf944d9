"""The notebooks in notebooks/ run top to bottom and give the reference values.

Each notebook is executed once (a module fixture) by nbclient in a fresh kernel of this
interpreter, started in notebooks/ as Jupyter starts it, with ``LAZYRASTER_WORK`` set to
a temporary folder (each run writes into a new folder in it) and the interpreter's
scripts (``lazyraster``) off ``PATH``, as in a kernel of an environment never activated.
A cell appended to the executed copy saves the notebook's named results; they are
compared with values made outside lazyraster (:mod:`tests.references`: rasterio and
numpy reads of the files, plain-loop focal statistics, ML_SI's published days) within
the tolerances of the analysis and pipeline tests. The checks are functions, so that a
test can hand them a wrong result and see them fail.

The ``laptop_to_cluster`` notebook starts a real SLURM cluster when one is reachable: the
SLURM fixture of the cluster tests provides it here, skipped on a laptop without SLURM
(the notebook then shows the dry run's job script) and failing in CI.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import pickle
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from tests.cluster._support import slurm  # noqa: F401 (the SLURM fixture)
from tests.references import (
    REAL_SAFE,
    loop_focal,
    loop_focal_mean,
    ml_si_published,
    ndvi_of,
    safe_band,
    safe_masked_ndvi,
    sample_ndvi,
    xml_fields,
)

import lazyraster
from lazyraster.testing import daymet_like

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

#: Saves the results named by the test (computed, if lazy) to a pickle file.
_DUMP = """\
import pickle as _pickle
import sys as _sys


def _computed(value):
    return value.compute() if hasattr(value, "compute") else value


with open({path!r}, "wb") as _file:
    _pickle.dump(
        {{"executable": _sys.executable, **{{n: _computed(globals()[n]) for n in {names!r}}}}},
        _file,
    )
"""


@dataclass(frozen=True)
class Notebook:
    """What the test reads from a notebook, how it checks it, and which results are the
    notebook's inputs (the rest are results its check compares with references)."""

    results: tuple[str, ...]
    check: Callable[[dict[str, Any]], None]
    inputs: tuple[str, ...] = ()
    #: How to make a result wrong where :func:`_wrong` would change what is not checked.
    wrong: dict[str, Callable[[Any, Path], list[tuple[str, Any]]]] = dataclasses.field(
        default_factory=dict
    )


def _one_pixel_off(values: np.ndarray, by: float = 1e-3) -> np.ndarray:
    """A copy with one valid pixel (the middle one of the valid ones) changed by ``by``."""
    changed = values.copy()
    index = tuple(np.argwhere(np.isfinite(values))[np.isfinite(values).sum() // 2])
    changed[index] += by
    return changed


def _step(values: Any) -> float:
    """How far to move one pixel: one count of integers (DN, days), of floats 0.01 or 1%
    of their largest (DN kept as floats)."""
    if np.issubdtype(values.dtype, np.integer):
        return 1.0
    return max(1e-2, 0.01 * float(np.nanmax(np.abs(np.asarray(values, np.float64)))))


def _wrong(value: Any, tmp: Path) -> list[tuple[str, Any]]:
    """Wrong copies of one result, each labelled with what is wrong in it: one pixel of
    each array (each variable of a Dataset, each entry of a dict), a Zarr store with one
    pixel off, paths in another order, a flag flipped, None where a result is expected
    to be missing."""
    import xarray as xr

    if isinstance(value, bool):
        return [("", not value)]
    if value is None:
        return [("", "a result")]
    if isinstance(value, np.ndarray):
        return [("", _one_pixel_off(value.astype(np.float64), by=_step(value)))]
    if isinstance(value, xr.DataArray):
        values = value.values.astype(np.float64)
        return [("", value.copy(data=_one_pixel_off(values, by=_step(value))))]
    if isinstance(value, xr.Dataset):
        return [
            (f".{n}", value.assign({n: w}))
            for n in value.data_vars
            for _, w in _wrong(value[n], tmp)
        ]
    if isinstance(value, dict):
        return [(f"[{k!r}]", {**value, k: w}) for k in value for _, w in _wrong(value[k], tmp)]
    if isinstance(value, list) and len(value) > 1:
        return [(" reordered", [value[1], value[0], *value[2:]])]
    if str(value).endswith(".zarr"):
        wrong = []
        with xr.open_zarr(value) as ds:
            for label, changed in _wrong(ds.load(), tmp):
                store = Path(tempfile.mkdtemp(dir=tmp)) / Path(value).name
                changed.to_zarr(store, mode="w-", consolidated=False)
                wrong.append((label, store))
        return wrong
    raise TypeError(f"no wrong copy of a {type(value).__name__}")


# quickstart ------------------------------------------------------------------------------


def check_quickstart(ns: dict[str, Any]) -> None:
    """NDVI and its 3x3 focal mean equal rasterio + numpy and a plain loop."""
    expected, transform, crs = sample_ndvi()
    assert ns["ndvi"].rio.crs == crs
    assert ns["ndvi"].rio.transform() == transform
    assert np.isnan(expected).any()  # nodata is part of the check
    np.testing.assert_allclose(
        ns["ndvi"].isel(time=0).values, expected, rtol=2e-6, atol=1e-7, equal_nan=True
    )
    np.testing.assert_allclose(ns["values"], expected, rtol=2e-6, atol=1e-7, equal_nan=True)
    np.testing.assert_allclose(
        ns["focal"], loop_focal_mean(expected), rtol=2e-6, atol=1e-6, equal_nan=True
    )


# focal_statistics ------------------------------------------------------------------------


def check_focal_statistics(ns: dict[str, Any]) -> None:
    """Every window, shape, edge rule and min_count equals the plain loop on the field."""
    field = ns["field"]
    assert np.isnan(field).any() and np.isfinite(field).any()

    def same(got: np.ndarray, **options: Any) -> None:
        want = loop_focal(field, **options)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)

    assert sorted(ns["by_size"]) == [3, 7, 15]
    for size, got in ns["by_size"].items():
        same(got, size=size)
    for shape, got in ns["by_shape"].items():
        same(got, size=15, shape=shape)
    for edge, got in ns["by_edge"].items():
        same(got, size=15, edge=edge)
    assert sorted(map(str, ns["by_min_count"])) == ["1", "25", "all"]
    for count, got in ns["by_min_count"].items():
        same(got, size=7, min_count=count)
    kept = np.where(np.isnan(field), np.nan, loop_focal(field, 7))
    np.testing.assert_allclose(ns["kept_gaps"], kept, rtol=1e-5, atol=1e-6, equal_nan=True)
    radius = 7  # the footprints: a square of 15 x 15 and the disc of radius 7
    dy, dx = np.mgrid[-10:11, -10:11]
    square = (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    circle = dy**2 + dx**2 <= radius**2
    for shape, want in (("square", square), ("circle", circle)):  # running sums: round-off
        np.testing.assert_allclose(ns["footprints"][shape], want * 1.0, atol=1e-6, err_msg=shape)
    std = loop_focal(field, 5, shape="circle", stat=np.std)
    np.testing.assert_allclose(ns["texture"], std, rtol=1e-4, atol=1e-5, equal_nan=True)


# sentinel2_safe --------------------------------------------------------------------------


_PRODUCT_TAGS = ("PROCESSING_BASELINE", "BOA_QUANTIFICATION_VALUE", "BOA_ADD_OFFSET")
_TILE_TAGS = ("HORIZONTAL_CS_CODE", "NROWS", "NCOLS", "ULX", "ULY", "XDIM", "YDIM")


def _matches_real_metadata(safe: Path) -> None:
    """The XML fields the reference reads sit where ESA puts them, in a real product of
    the same processing era (offsets from 04.00 on); the grid is the real 22HBD tile's."""
    ours = xml_fields(safe / "MTD_MSIL2A.xml", _PRODUCT_TAGS)
    new = "_N04" in safe.name or "_N05" in safe.name
    real = next(REAL_SAFE.glob("*_N0509_*T01KAB*.SAFE" if new else "*_N0214_*T22HBD*.SAFE"))
    want = xml_fields(real / "MTD_MSIL2A.xml", _PRODUCT_TAGS)
    assert sorted(ours) == sorted(want)
    if new:
        offsets = next(k for k in ours if k.endswith("BOA_ADD_OFFSET"))
        assert ours[offsets] == want[offsets]  # band_id=0..12, -1000 each
    tile = next(safe.glob("GRANULE/*/MTD_TL.xml"))
    real_tile = next(REAL_SAFE.glob("*T22HBD*.SAFE/GRANULE/*/MTD_TL.xml"))
    ours, want = xml_fields(tile, _TILE_TAGS), xml_fields(real_tile, _TILE_TAGS)
    assert sorted(ours) == sorted(want)
    for field in ("HORIZONTAL_CS_CODE", "ULX", "ULY", "XDIM", "YDIM"):
        key = next(k for k in ours if k.endswith(field))
        # the real tile's values, per resolution (10 m, 20 m; the notebook has no 60 m)
        assert ours[key] == want[key][: len(ours[key])], field


def check_sentinel2_safe(ns: dict[str, Any]) -> None:
    """The masked NDVI, its series, the Zarr store and the COGs equal rasterio + numpy on
    the SAFE folders (offsets from their XML, the SCL classes ESA defines)."""
    import rasterio
    import xarray as xr
    from rio_cogeo.cogeo import cog_validate

    for product in ns["products"]:
        _matches_real_metadata(Path(product))
    expected = np.stack([safe_masked_ndvi(Path(p)) for p in ns["products"]])
    cloudy = np.isnan(expected).any(axis=(1, 2))
    assert cloudy.sum() == 2 and (~cloudy).sum() == 4  # two dates with a cloud mask to apply
    assert len({Path(p).name.split("_")[3] for p in ns["products"]}) == 2  # baselines 03.01, 04.00
    np.testing.assert_allclose(ns["ndvi"].values, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(
        ns["mean_ndvi"], np.nanmean(expected, axis=(1, 2)), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        ns["field_ndvi"], np.nanmean(expected[:, :, :30], axis=(1, 2)), rtol=1e-5, atol=1e-6
    )
    with xr.open_zarr(ns["store"]) as written:
        np.testing.assert_allclose(written.ndvi.values, expected, rtol=1e-5, equal_nan=True)
        assert sorted(written.data_vars) == ["SCL", "ndvi", "nir", "red"]
        for band, name, res in (("B04", "red", 10), ("B08", "nir", 10), ("SCL", "SCL", 20)):
            want = np.stack([safe_band(Path(p), band, res) for p in ns["products"]])
            if res == 20:  # the 20 m classes on the 10 m grid, as the loader puts them
                want = np.repeat(np.repeat(want, 2, axis=1), 2, axis=2)
            else:  # reflectance masked as the NDVI is
                want[np.isnan(expected)] = np.nan
            np.testing.assert_allclose(
                written[name].values, want, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=name
            )
    assert len(ns["cogs"]) == len(expected)
    for path, want in zip(ns["cogs"], expected, strict=True):
        valid, errors, _ = cog_validate(path)
        assert valid, errors
        with rasterio.open(path) as cog:
            got = cog.read(1, masked=True).filled(np.nan)
            assert cog.crs.to_epsg() == 32722
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)


# daymet_spring_index ---------------------------------------------------------------------


def check_daymet_spring_index(ns: dict[str, Any]) -> None:
    """The six stations give ML_SI's published days, every station-year; the Daymet run
    (files -> catalog -> load -> spring index -> Zarr groups) gives what the model gives on
    the data the notebook wrote, held in memory, for first leaf and first bloom."""
    stations = ns["stations"]
    np.testing.assert_array_equal(stations.year, np.arange(1850, 2051))
    for event in ("leaf", "bloom"):
        got = stations[f"first_{event}"].sel(plant="average").values
        np.testing.assert_array_equal(got, ml_si_published(event), err_msg=event)
    direct = lazyraster.spring_index_dataset(daymet_like(2021, shape=(12, 16)))
    expected = direct.sel(plant="average")
    assert int(expected.year) == 2021
    np.testing.assert_array_equal(ns["leaf_2021"].values, expected.first_leaf.values)
    assert sorted(ns["year_2021"].data_vars) == sorted(expected.data_vars)
    for event in expected.data_vars:
        np.testing.assert_array_equal(ns["year_2021"][event].values, expected[event].values)
    assert np.isfinite(expected.first_bloom.values).all()


# laptop_to_cluster -----------------------------------------------------------------------


def _scene_reference(work: Path, date: str) -> tuple[np.ndarray, np.ndarray]:
    """NDVI and its 3x3 focal mean of one scene, from its two COGs with rasterio."""
    import rasterio

    bands = []
    for band in ("B04", "B08"):
        with rasterio.open(work / "scenes" / f"T35VLG_{date}_{band}.tif") as src:
            dn = src.read(1).astype(np.float64)
        dn[dn == src.nodata] = np.nan
        bands.append(dn)
    ndvi = ndvi_of(*bands)
    return ndvi, loop_focal_mean(ndvi)


def _bitwise_equal(got: Any, want: Any) -> None:
    """The two results' arrays are the same to the bit."""
    for name in ("ndvi", "ndvi_mean3"):
        a, b = np.asarray(got[name].values), np.asarray(want[name].values)
        assert a.dtype == b.dtype == np.float32, (name, a.dtype, b.dtype)
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32), err_msg=name)


def check_laptop_to_cluster(ns: dict[str, Any]) -> None:
    """Threads give rasterio + numpy's NDVI and the plain-loop mean; LocalCluster, SLURM
    (when the test has a SLURM cluster, always in CI) and the array job's per-scene
    stores give the threaded result bit for bit."""
    references = [_scene_reference(Path(ns["work"]), date) for date in ns["dates"]]
    ndvi = np.stack([r[0] for r in references])
    mean3 = np.stack([r[1] for r in references])
    np.testing.assert_allclose(ns["scene_means"].values, ndvi.mean(axis=(1, 2)), atol=1e-6)
    assert ns["slurm_reachable"] is ns["slurm_expected"]
    runs = ["on_threads", "on_local", "per_scene", *(["on_slurm"] if ns["slurm_expected"] else [])]
    for run in runs:  # each against the references, then bit for bit against threads
        if run == "per_scene":  # the pipeline's store keeps the bands it loaded
            assert sorted(ns[run].data_vars) == ["ndvi", "ndvi_mean3", "nir", "red"]
            bands = ndvi_of(ns[run].red.values, ns[run].nir.values)
            np.testing.assert_allclose(bands, ndvi, rtol=2e-6, atol=1e-7, err_msg="red, nir")
        else:
            assert sorted(ns[run].data_vars) == ["ndvi", "ndvi_mean3"], run
        np.testing.assert_allclose(ns[run].ndvi.values, ndvi, rtol=2e-6, atol=1e-7, err_msg=run)
        np.testing.assert_allclose(
            ns[run].ndvi_mean3.values, mean3, rtol=2e-6, atol=1e-6, err_msg=run
        )
        _bitwise_equal(ns[run], ns["on_threads"])
    if not ns["slurm_expected"]:
        assert ns["on_slurm"] is None


def _average_plant_off(stations: Any, tmp: Path) -> list[tuple[str, Any]]:
    """The stations' days with one station-year of the average plant (the one ML_SI
    publishes) a day later, event by event."""
    wrong = []
    for event in ("first_leaf", "first_bloom"):
        days = stations[event].copy(deep=True)
        average = int(np.flatnonzero(days.plant.values == "average")[0])
        year, station = np.argwhere(np.isfinite(days.values[average]))[0]
        days.values[average, year, station] += 1
        wrong.append((f".{event}", stations.assign({event: days})))
    return wrong


NOTEBOOK_CHECKS: dict[str, Notebook] = {
    "laptop_to_cluster": Notebook(
        (
            "work",
            "dates",
            "on_threads",
            "scene_means",
            "on_local",
            "slurm_reachable",
            "on_slurm",
            "per_scene",
        ),
        check_laptop_to_cluster,
        inputs=("work", "dates"),
    ),
    "quickstart": Notebook(("ndvi", "values", "focal"), check_quickstart),
    "focal_statistics": Notebook(
        (
            "field",
            "by_size",
            "by_shape",
            "by_edge",
            "by_min_count",
            "kept_gaps",
            "footprints",
            "texture",
        ),
        check_focal_statistics,
        inputs=("field",),
    ),
    "daymet_spring_index": Notebook(
        ("stations", "leaf_2021", "year_2021"),
        check_daymet_spring_index,
        wrong={"stations": _average_plant_off},
    ),
    "sentinel2_safe": Notebook(
        ("work", "products", "ndvi", "mean_ndvi", "field_ndvi", "store", "cogs"),
        check_sentinel2_safe,
        inputs=("work", "products"),
    ),
}


def _kernel_path(folder: Path) -> Path:
    """A Jupyter data folder whose ``python3`` kernel is this interpreter."""
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python 3", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return folder


def execute(name: str, tmp: Path, env: dict[str, str], cwd: Path = NOTEBOOKS) -> dict[str, Any]:
    """Run notebook ``name`` in a fresh kernel started in ``cwd``; the results its check
    names."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    dump = tmp / "results.pickle"
    nb.cells.append(
        nbformat.v4.new_code_cell(_DUMP.format(path=str(dump), names=NOTEBOOK_CHECKS[name].results))
    )
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(env=env)
    results = pickle.loads(dump.read_bytes())
    assert results.pop("executable") == sys.executable
    results["executed"] = nb
    return results


def _path_without(path: str, holds: Callable[[Path], bool]) -> str:
    """``PATH`` without the folders that ``holds`` is true of."""
    return os.pathsep.join(p for p in path.split(os.pathsep) if p and not holds(Path(p)))


def _kernel_env(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """``env`` for a kernel: a work folder, this interpreter as ``python3``, and ``PATH``
    without this interpreter's scripts (a kernel of an environment never activated)."""
    scripts = Path(os.path.abspath(sys.executable)).parent
    path = _path_without(env.get("PATH", ""), lambda p: os.path.abspath(p) == str(scripts))
    assert shutil.which("lazyraster", path=path) is None
    (tmp / "work").mkdir()
    return {
        **env,
        "LAZYRASTER_WORK": str(tmp / "work"),
        "PATH": path,
        "JUPYTER_PATH": str(_kernel_path(tmp / "jupyter")),
        "IPYTHONDIR": str(tmp / "ipython"),
    }


@pytest.fixture(scope="module", params=sorted(NOTEBOOK_CHECKS))
def notebook(request, tmp_path_factory) -> tuple[str, dict[str, Any]]:
    """(name, results) of a notebook run in a fresh kernel."""
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    env = dict(os.environ)
    if name == "laptop_to_cluster":
        try:
            env = dict(request.getfixturevalue("slurm"))
        except pytest.skip.Exception:  # no SLURM on this laptop: the notebook's dry run
            env["SLURM_CONF"] = str(tmp / "no-slurm.conf")
    env = _kernel_env(env, tmp)
    results = execute(name, tmp, env)
    results["slurm_expected"] = Path(env.get("SLURM_CONF", "/nonexistent")).is_file()
    return name, results


def test_notebook_gives_the_reference_values(notebook):
    name, results = notebook
    NOTEBOOK_CHECKS[name].check(results)


def test_each_wrong_result_fails_the_check(notebook, tmp_path):
    """Every result the notebook computes, made wrong in turn (one pixel of each array,
    each variable, each entry), fails the check: none is left unread or unreferenced."""
    name, results = notebook
    spec = NOTEBOOK_CHECKS[name]
    missed, tried = [], 0
    for result in spec.results:
        if result in spec.inputs:
            continue
        make = spec.wrong.get(result, _wrong)
        for label, value in make(results[result], tmp_path):
            tried += 1
            try:
                spec.check({**results, result: value})
            except AssertionError:
                continue
            missed.append(f"{result}{label}")
    assert tried >= len(spec.results) - len(spec.inputs)
    assert not missed, f"{name}: the check passes with these wrong: {missed}"


def test_each_figure_is_shown_once(notebook):
    """Every map and plot appears, once: a figure returned and also flushed by pyplot would
    show twice, one drawn on axes of a figure never shown not at all."""
    name, results = notebook
    cells = [c for c in results["executed"].cells if c.cell_type == "code"]
    shown = [sum("image/png" in o.get("data", {}) for o in c.outputs) for c in cells]
    drawing = [bool(re.search(r"geo\.plot\(|plt\.subplots\(", c.source)) for c in cells]
    assert all(n <= 1 for n in shown), (name, shown)
    assert [n == 1 for n in shown] == drawing, (name, shown, drawing)


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_has_a_check():
    assert sorted(p.stem for p in _notebooks()) == sorted(NOTEBOOK_CHECKS)
    assert not list(NOTEBOOKS.glob("*.py")), "notebooks are .ipynb files"


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_the_notebook_is_stored_without_outputs(path):
    """Outputs belong to a run, not to git: none stored, no execution counts."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert nb.metadata.kernelspec.name == "python3"
    assert sum(cell.cell_type == "markdown" for cell in nb.cells) >= len(code) // 2


def _code(path: Path) -> ast.Module:
    """The notebook's code cells as one module (shell lines ``!...`` left out)."""
    nb = nbformat.read(path, as_version=4)
    cells = [re.sub(r"(?m)^\s*[!%].*$", "", c.source) for c in nb.cells if c.cell_type == "code"]
    return ast.parse("\n\n".join(cells))


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_the_notebook_uses_the_public_api_only(path):
    """Users run the notebooks: what they compute is theirs, the comparison is here; and
    they import lazyraster's public names, never a private module or anything from tests."""
    for node in ast.walk(_code(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        assert not any(n.split(".")[0] == "tests" for n in names), (path.name, names)
        assert not any(part.startswith("_") for n in names for part in n.split(".")), names


def test_a_notebook_runs_from_the_repository_root(tmp_path):
    """A kernel started in the repository's root (``jupyter lab`` run there) finds the
    repository's files as one started in notebooks/ does."""
    results = execute("quickstart", tmp_path, _kernel_env(dict(os.environ), tmp_path), cwd=ROOT)
    check_quickstart(results)


def test_a_second_run_writes_into_a_new_folder(tmp_path):
    """Run twice with one ``LAZYRASTER_WORK``: each run writes into a folder of its own,
    its Zarr store and COGs included, and gives the reference values again."""
    env = _kernel_env(dict(os.environ), tmp_path)
    runs = []
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
        runs.append(execute("sentinel2_safe", tmp_path / run, env))
        check_sentinel2_safe(runs[-1])
    first, second = (Path(r["work"]) for r in runs)
    assert first != second and first.parent == second.parent == tmp_path / "work"
    assert Path(runs[1]["store"]).is_relative_to(second)
    printed = [o.get("text", "") for c in runs[1]["executed"].cells for o in c.get("outputs", [])]
    assert any(f"writing into {second}" in text for text in printed)


def test_the_dry_run_works_without_slurm(tmp_path):
    """No sbatch on ``PATH`` (a laptop): the notebook shows the job script, runs the rest on
    threads and a LocalCluster, and gives the reference values."""
    env = _kernel_env(dict(os.environ), tmp_path)
    env["PATH"] = _path_without(env["PATH"], lambda p: (p / "sbatch").exists())
    assert shutil.which("sbatch", path=env["PATH"]) is None
    results = execute("laptop_to_cluster", tmp_path, env)
    assert results["slurm_reachable"] is False and results["on_slurm"] is None
    check_laptop_to_cluster({**results, "slurm_expected": False})
    shown = [o.get("text", "") for c in results["executed"].cells for o in c.get("outputs", [])]
    assert any("#SBATCH" in text for text in shown), "the dry run's job script is shown"


#: A URL (other than this machine's services) in a notebook's code.
_URL = re.compile(r"https?://(?!127\.0\.0\.1[:/])")


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_no_cell_downloads_or_reads_shared_data(path):
    """The notebooks run offline on the repository's own files: no URL but 127.0.0.1 in
    any code cell, nothing read from outside the repository (``../shared``)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert not _URL.search(cell.source), (path.name, cell.source)
        assert "shared/" not in cell.source, (path.name, cell.source)
        assert "../" not in cell.source, (path.name, "paths go through REPO", cell.source)
