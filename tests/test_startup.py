"""Start-up: what ``import lazyraster`` and the CLI load, and where numba kernels are cached.

Each check runs in a fresh interpreter (``sys.modules`` of this one is full already).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import lazyraster

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "catalogs" / "sample" / "catalog.json"
CLI = "from lazyraster.cli import main; main()"
HEAVY = [
    "distributed", "numba", "stackstac", "pystac_client", "zarr", "dask.array", "dask",
    "matplotlib",
]  # fmt: skip


def fresh(code: str, env: dict[str, str] | None = None, user: list[str] | None = None) -> str:
    """Run ``code`` in a new interpreter (optionally as another user); its stdout."""
    done = subprocess.run(
        [*(user or []), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def loaded_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    return set(json.loads(fresh(code).splitlines()[-1]))


def test_import_loads_no_heavy_module_and_registers_the_accessor_with_xarray() -> None:
    modules = loaded_after("import lazyraster")
    assert not modules & {*HEAVY, "xarray", "rioxarray", "lazyraster.accessor"}
    ours = {m for m in modules if m.startswith("lazyraster")}
    assert ours == {"lazyraster", "lazyraster._imports"}
    # the accessor needs xarray, and nothing more: registered as xarray is imported
    modules = loaded_after("import lazyraster, xarray; xarray.Dataset.geo")
    assert "lazyraster.accessor" in modules
    assert not modules & set(HEAVY)


def test_the_plot_method_loads_matplotlib_only_when_it_draws() -> None:
    modules = loaded_after("import lazyraster, xarray; xarray.DataArray.geo.plot")
    assert "lazyraster.plot._figure" in modules
    assert "matplotlib" not in modules
    modules = loaded_after(
        "import lazyraster, xarray\n"
        "fig = xarray.DataArray([[1.0, 2.0]], dims=('y', 'x')).geo.plot()\n"
        "fig.savefig('/dev/null', format='png')"
    )
    assert "matplotlib" in modules
    assert "matplotlib.pyplot" not in modules  # no pyplot, no GUI backend, outside IPython


def test_accessor_works_after_importing_only_the_package() -> None:
    for order in (
        "import lazyraster\nimport xarray as xr",
        "import xarray as xr\nimport lazyraster",
    ):
        out = fresh(
            f"{order}\nimport numpy as np\n"
            "ds = xr.Dataset({'red': ('x', np.array([1.0, 1.0])), 'nir': ('x', [3.0, 1.0])})\n"
            "print(ds.geo.ndvi().values.tolist())"
        )
        assert out.split() == ["[0.5,", "0.0]"]


def test_accessor_registers_although_xarray_was_looked_up_before_its_import() -> None:
    # "is xarray installed?" checks (importlib.util.find_spec) ask the meta path finders
    # without importing; the hook must still run when xarray is imported later
    out = fresh(
        "import importlib.util, lazyraster\n"
        "assert importlib.util.find_spec('xarray') is not None\n"
        "import xarray as xr\n"
        "print(hasattr(xr.Dataset, 'geo'), hasattr(xr.DataArray, 'geo'))"
    )
    assert out.split() == ["True", "True"]


def test_rio_accessor_works_after_importing_only_the_package() -> None:
    """Users relied on ``import lazyraster`` bringing ``.rio``: its first use imports it."""
    out = fresh(
        "import sys, warnings\nwarnings.simplefilter('error')\nimport lazyraster, xarray as xr\n"
        "print('rioxarray' in sys.modules)\n"
        "da = xr.DataArray([[1.0]], dims=('y', 'x'), coords={'y': [0.5], 'x': [0.5]})\n"
        "print(da.rio.write_crs('EPSG:4326').rio.crs.to_epsg(), xr.Dataset().rio.crs)\n"
        "print(xr.DataArray.rio.__module__.split('.')[0])"
    )
    assert out.split() == ["False", "4326", "None", "rioxarray"]
    # rioxarray imported by the loader (or the user) replaces the placeholder silently
    out = fresh(
        "import warnings\nwarnings.simplefilter('error')\nimport lazyraster, xarray as xr\n"
        "import rioxarray\nprint(xr.Dataset.rio.__module__.split('.')[0])"
    )
    assert out.split() == ["rioxarray"]


def test_defaults_reach_dask_config_whenever_it_is_imported() -> None:
    for order in ("import lazyraster\nimport dask.config", "import dask\nimport lazyraster"):
        out = fresh(f"{order}\nprint(dask.config.get('lazyraster.load.max-pixels'))")
        assert out.split() == ["10000000000"]
    # a set block before any library use keeps the defaults after it
    out = fresh(
        "import lazyraster, dask\n"
        "with dask.config.set({'lazyraster.gdal.GDAL_CACHEMAX': 1}): pass\n"
        "print(dask.config.get('lazyraster.gdal.GDAL_CACHEMAX'))"
    )
    assert out.split() == ["256"]


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["catalog", "build", "--help"], ["run", "--help"],
     ["quicklook", "--help"]],
)  # fmt: skip
def test_cli_help_and_version_load_only_click_and_the_cli(args: list[str]) -> None:
    modules = loaded_after(
        f"from lazyraster.cli import main\ntry:\n    main({args!r})\nexcept SystemExit:\n    pass"
    )
    ours = {m for m in modules if m.startswith("lazyraster")}
    assert ours == {"lazyraster", "lazyraster._imports", "lazyraster.cli"}
    assert not modules & {*HEAVY, "xarray", "numpy"}


def test_version_is_the_installed_one() -> None:
    out = fresh("from lazyraster.cli import main\nmain(['--version'])")
    assert out.strip() == f"lazyraster, version {lazyraster.__version__}"


def test_every_public_name_resolves_to_its_module_object() -> None:
    for name in lazyraster.__all__:
        value = getattr(lazyraster, name)
        if name in lazyraster._SUBMODULES:  # the callable packages load and cluster
            assert value is sys.modules[f"lazyraster.{name}"], name
        elif name != "__version__":
            home = __import__(f"lazyraster.{lazyraster._HOME[name]}", fromlist=[name])
            assert value is getattr(home, name), name
    assert set(lazyraster.__all__) <= set(dir(lazyraster))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lazyraster.nope  # noqa: B018


def test_load_and_cluster_are_callable_packages_that_hide_nothing() -> None:
    """``lazyraster.load(...)`` calls the loader and ``lazyraster.load`` is its package."""
    out = fresh(
        "from lazyraster import *\nimport lazyraster.load as L, lazyraster.cluster as C\n"
        "import inspect, lazyraster\n"
        "print(callable(load), callable(ndvi), L is load, C is cluster, L.__name__,"
        " C.__name__, L.resolve_items.__module__, C.available_cores.__module__,"
        " search.__module__, list(inspect.signature(load).parameters)[0],"
        " list(inspect.signature(cluster).parameters)[0])"
    )
    assert out.split() == [
        "True",
        "True",
        "True",
        "True",
        "lazyraster.load",
        "lazyraster.cluster",
        "lazyraster.load._load",
        "lazyraster.cluster._resources",
        "lazyraster.catalog._search",
        "source",
        "kind",
    ]


# ------------------------------------------------------------------- numba's cache


def kernel_stats(code: str, env: dict[str, str], user: list[str] | None = None) -> dict:
    """Per kernel (hits, misses) after ``code`` in a fresh process."""
    out = fresh(
        f"{code}\nimport json\nfrom lazyraster._kernels import kernels\n"
        "count = lambda c: sum(c.values())\n"
        "print(json.dumps({n: [count(d.stats.cache_hits), count(d.stats.cache_misses)]"
        " for n, d in kernels().items()}))",
        env,
        user,
    )
    return json.loads(out.splitlines()[-1])


WORK = (
    "import lazyraster\nfrom lazyraster.testing import daymet_like\n"
    f"ds = lazyraster.load({str(SAMPLE)!r})\n"
    "ndvi = ds.geo.ndvi().compute()\nndvi.geo.focal_mean(size=3).compute()\n"
    "ndvi.geo.focal_median(size=5, shape='circle').compute()\n"
    "ds.geo.index('EVI2').compute(); ds.geo.index('SAVI').compute()\n"
    "daymet_like(2021).geo.spring_index_dataset().compute()\n"
)


WARMUP = "from lazyraster.cli import main\nmain(['warmup', '--dtype', 'uint16'])"


@pytest.fixture(scope="module")
def warmed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], str]:
    """One cold ``lazyraster warmup`` shared by the cache tests: its env and its output."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path_factory.mktemp("numba") / "shared")}
    return env, fresh(WARMUP, env)


def test_kernels_index_expressions_and_closures_load_from_the_cache(
    warmed: tuple[dict[str, str], str],
) -> None:
    """Warm cache, fresh process: every kernel that runs is a cache hit, none compiles.

    Covers the closures in focal (``_make_box_moments``), two different index
    expressions (one interpreter kernel runs every expression), and the spring index.
    """
    env, _ = warmed
    kernel_stats(WORK, env)
    stats = kernel_stats(WORK, env)
    ran = {n: s for n, s in stats.items() if any(s)}
    assert {"load._reader._decode", "indices._expression._run",
            "focal._kernels._box_moments_finite", "focal._kernels._span_order",
            "phenology._kernels._spring_index_kernel"} <= set(ran)  # fmt: skip
    assert all(misses == 0 for _, misses in ran.values()), ran


def _as_nobody() -> list[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root to run a process as user nobody (root ignores file modes)")
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def world_readable_tmp() -> Iterator[Path]:
    """A temporary folder other users can reach (pytest's own is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="lazyraster-startup-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_wheel_in_a_read_only_site_packages_caches_in_the_user_cache(
    world_readable_tmp: Path,
) -> None:
    """pip's wheel, installed where its user cannot write: numba falls back per user.

    numba's ``_InTreeCacheLocator`` needs a writable ``__pycache__`` beside the module;
    else ``_UserWideCacheLocator`` takes ``$XDG_CACHE_HOME/numba``. The first process
    compiles and writes its index files there (none in site-packages); the second
    loads every kernel from them.
    """
    user = _as_nobody()
    tmp_path = world_readable_tmp
    wheels, site, home = tmp_path / "wheels", tmp_path / "site", tmp_path / "home"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", wheels, ROOT], check=True, timeout=600)
    (wheel,) = wheels.glob("lazyraster-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)
    home.mkdir()
    os.chown(home, *_nobody_ids())
    env = {
        "PYTHONPATH": str(site),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        "NUMBA_CACHE_DIR": "",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    code = f"import lazyraster\nassert lazyraster.__file__.startswith({str(site)!r})\n" + WORK
    first = kernel_stats(code, env, user)
    assert any(misses for _, misses in first.values())
    cached = list((home / "cache" / "numba").rglob("*.nbi"))
    # numba names each folder <package folder>_<hash of its path>, each file <module>.<kernel>
    modules = {f"{p.parent.name.rsplit('_', 1)[0]}/{p.name.split('.')[0]}" for p in cached}
    assert modules >= {
        "load/_reader",
        "indices/_expression",
        "focal/_kernels",
        "phenology/_kernels",
    }
    assert not list(site.rglob("*.nbi"))
    second = kernel_stats(code, env, user)
    ran = {n: s for n, s in second.items() if any(s)}
    assert ran and all(hits and not misses for hits, misses in ran.values()), ran


def _nobody_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def test_warmup_fills_the_cache_once_and_says_where(warmed: tuple[dict[str, str], str]) -> None:
    """``lazyraster warmup`` compiles into NUMBA_CACHE_DIR; run again, it compiles nothing."""
    env, first = warmed
    shared = Path(env["NUMBA_CACHE_DIR"])
    assert " 0 compiled" not in first
    assert f"cache: {shared}" in first
    second = fresh(WARMUP, env)
    assert "signatures loaded from the cache, 0 compiled and cached" in second
    assert list(shared.rglob("*.nbi"))


def test_warmup_with_a_dtype_it_cannot_prepare_fails_in_one_line() -> None:
    for dtype in ("foo", "complex128"):
        done = subprocess.run(
            [sys.executable, "-c", CLI, "warmup", "--dtype", dtype],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode != 0
        assert "Traceback" not in done.stderr, done.stderr
        assert f"{dtype!r}" in done.stderr and "float32" in done.stderr
