"""The docs: the site builds offline, warnings as errors; every public name has an example.

The site (mkdocs.yml) is built once, in a subprocess, into a temporary folder; the checks
read the generated HTML: the API pages come from the docstrings, the CLI page from the
click commands, and no page loads anything from another host.
"""

from __future__ import annotations

import doctest
import html
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import yaml
from tests.cluster import _support

import lazyraster

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).with_name("mkdocs")
#: The public packages and modules: each has a page in the API reference (docs/api/),
#: the command line its own (docs/cli.md).
PACKAGES = ["lazyraster"] + [
    f"lazyraster.{module.name}"
    for module in pkgutil.iter_modules(lazyraster.__path__)
    if not module.name.startswith("_")
]


def _text(page: Path) -> str:
    """The visible text of an HTML page, whitespace collapsed."""
    markup = re.sub(r"<(script|style)\b.*?</\1>", " ", page.read_text(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup)))


def _shows(text: str, phrase: str) -> bool:
    """Whether ``text`` holds ``phrase``, spaces around its punctuation optional.

    The highlighted signatures put each token in its own element, so the text reads
    ``load ( source : ItemsLike``.
    """
    tokens = re.findall(r"\w+|[^\w\s]", phrase)
    return re.search(r"\s*".join(map(re.escape, tokens)), text) is not None


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if not MKDOCS.exists():
        pytest.fail(f"{MKDOCS} is missing: pip install -e '.[test]' installs mkdocs")
    out = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "NO_MKDOCS_2_WARNING": "1",
    }
    built = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def _nav_pages(nav: list) -> list[str]:
    pages = []
    for entry in nav:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_every_page_of_the_nav_is_built(site):
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = _nav_pages(config["nav"])
    assert len(pages) > 30
    for page in pages:
        built = site / ("index.html" if page == "index.md" else page[: -len(".md")] + "/index.html")
        assert built.is_file(), page


def test_api_pages_are_generated_from_the_docstrings(site):
    load = _text(site / "api" / "load" / "index.html")
    assert _shows(load, "load(source: ItemsLike, *, bands: Sequence[str] | None = None")
    assert "Examples" in load and "resolve_items" in load
    focal = _text(site / "api" / "focal" / "index.html")
    # the shared sections filled in at import time, not their placeholders
    assert "%(window_parameters)s" not in focal
    assert "edge" in focal and _shows(focal, "focal_mean(obj")
    errors = _text(site / "api" / "errors" / "index.html")
    assert "LazyrasterError" in errors and "OutputExistsError" in errors


def test_root_api_page_names_every_root_name(site):
    page = _text(site / "api" / "lazyraster" / "index.html")
    for name in set(lazyraster.__all__) - {"__version__"}:
        assert re.search(rf"\b{name}\b", page), name
    assert _shows(page, "warmup(dtypes: Sequence[str] = DTYPES)")


def test_accessor_page_is_generated_from_the_accessor(site):
    import xarray as xr

    page = _text(site / "api" / "accessor" / "index.html")
    methods = {
        name
        for obj in (xr.Dataset(), xr.DataArray())
        for name in dir(obj.geo)
        if not name.startswith("_")
    }
    assert {"ndvi", "focal_mean", "write_zarr"} <= methods
    for name in methods - {"to_zarr", "indices", "spring_index"}:  # old names: a sentence
        assert f".geo.{name}(...)" in page, name
    assert _shows(page, ".geo.ndvi(...) Dataset lazyraster.indices.ndvi")


def test_cli_page_lists_every_subcommand_and_its_options(site):
    from lazyraster.cli import main

    cli = _text(site / "cli" / "index.html")
    assert "lazyraster catalog build" in cli
    for option in ("--out", "--layout", "--pattern", "--checksum", "--no-wait"):
        assert option in cli
    for name, command in main.commands.items():
        assert f"lazyraster {name}" in cli
        for sub in getattr(command, "commands", {}):
            assert f"lazyraster {name} {sub}" in cli
    assert "Sentinel.UNSET" not in cli


def test_pages_load_nothing_from_another_host(site):
    # offline: no Google fonts, no CDN scripts or styles, no social cards
    external = re.compile(r"""<(?:script|link|img)\b[^>]*\b(?:src|href)=["']?(?:https?:)?//""")
    for page in site.rglob("*.html"):
        assert not external.search(page.read_text()), page
    for sheet in site.rglob("*.css"):
        assert "fonts.googleapis" not in sheet.read_text(), sheet


def _public_names() -> list[tuple[str, str]]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        public = getattr(module, "__all__", None)
        if public is None:  # errors: every public class and function defined there
            public = [
                name
                for name, value in vars(module).items()
                if not name.startswith("_") and getattr(value, "__module__", None) == package
            ]
        names.extend((package, name) for name in public)
    return names


def _documented(package: str, name: str) -> object | None:
    """The function or class behind a public name (a callable package: its function)."""
    value = getattr(importlib.import_module(package), name)
    if isinstance(value, types.ModuleType):  # lazyraster.load, lazyraster.cluster
        value = getattr(value, name) if callable(value) else None
    return value if inspect.isfunction(value) or inspect.isclass(value) else None


def test_every_public_package_has_an_api_page_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = set(_nav_pages(config["nav"]))
    for package in PACKAGES:
        name = package.split(".")[-1]
        page = "cli.md" if name == "cli" else f"api/{name}.md"
        assert page in pages, f"{package} has no page {page} in the nav of mkdocs.yml"


def test_every_notebook_is_listed():
    listed = (ROOT / "docs" / "notebooks.md").read_text()
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        assert f"`{notebook.name}`" in listed, notebook.name


def test_the_public_names_are_found():
    names = dict.fromkeys(f"{p}.{n}" for p, n in _public_names())
    assert {"lazyraster.load.load", "lazyraster.errors.ReadError", "lazyraster.ndvi"} <= set(names)
    assert len(names) > 100
    assert set(lazyraster.__all__) <= {n.split(".")[-1] for n in names}


@pytest.mark.parametrize(("package", "name"), _public_names())
def test_public_name_has_an_example_that_runs(package, name):
    value = _documented(package, name)
    if value is None:  # a constant or a tuple such as KERNELS
        return
    text = value.__doc__ or ""
    assert re.search(r"^\s*Examples\n\s*--------$", text, flags=re.M), (
        f"{package}.{name} has no numpydoc Examples section"
    )
    assert "+SKIP" not in text, f"{package}.{name} skips its example"
    tests = doctest.DocTestFinder(recurse=False).find(value, name, globs={})
    assert tests and tests[0].examples, f"{package}.{name}: the Examples hold no >>> line"


# ---------------------------------------------------------------- docs/hpc.md

HPC = ROOT / "docs" / "hpc.md"


def _blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)


def test_hpc_guide_commands_and_options_exist():
    import click

    from lazyraster.cli import main

    shell = "\n".join(_blocks(HPC, "bash")).replace("\\\n", " ")
    shown = re.findall(r"\blazyraster ((?:catalog )?[a-z]+)([^\n|;&]*)", shell)
    assert {"warmup", "run", "--version"} & {name for name, _ in shown}
    for name, rest in shown:
        if name.startswith("-"):
            continue
        command = main
        for part in name.split():
            assert isinstance(command, click.Group) and part in command.commands, name
            command = command.commands[part]
        known = {opt for param in command.params for opt in param.opts}
        for option in re.findall(r"(?<!\S)(--[a-z-]+)", rest):
            assert option in known, f"lazyraster {name} has no {option}"


def test_hpc_guide_variables_and_cluster_keywords_exist():
    import ast

    from dask_jobqueue.core import Job
    from dask_jobqueue.slurm import SLURMJob

    from lazyraster.cluster import _slurm, cluster

    text = HPC.read_text()
    env = {v for names in _slurm._SLURM_ENV.values() for v in names}
    for variable in set(re.findall(r"\bLAZYRASTER_SLURM_[A-Z_]+", text)):
        assert variable in env, variable
    defaults = yaml.safe_load((ROOT / "src" / "lazyraster" / "lazyraster.yaml").read_text())
    for section, key in set(re.findall(r"\bDASK_LAZYRASTER__([A-Z]+)__([A-Z_]+)", text)):
        assert key.lower().replace("_", "-") in defaults["lazyraster"][section.lower()], key
    allowed = set(inspect.signature(cluster).parameters) | set(_slurm._SLURM_ENV) | {"partition"}
    allowed |= set(inspect.signature(SLURMJob.__init__).parameters)
    allowed |= set(inspect.signature(Job.__init__).parameters)
    calls = 0
    for block in _blocks(HPC, "python"):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "lazyraster.cluster":
                calls += 1
                assert {k.arg for k in node.keywords} <= allowed, ast.unparse(node)
    assert calls >= 3
    for block in _blocks(HPC, "yaml"):
        config = yaml.safe_load(block)["jobqueue"]["slurm"]
        assert {key.replace("-", "_") for key in config} <= allowed


# The single-node SLURM of scripts/services/slurm.sh (tests/cluster/_support.py):
# skipped on a laptop without it, a failure in CI.
slurm = _support.slurm
slurm_env = _support.slurm_env
ARRAY = ROOT / "docs" / "sbatch" / "array.sbatch"


@pytest.mark.slow
def test_array_template_runs_the_spec_of_its_task_on_slurm(slurm_env, tmp_path):
    (tmp_path / "catalogs").symlink_to(ROOT / "catalogs", target_is_directory=True)
    other = tmp_path / "other.yaml"
    other.write_text("source: nowhere.json\noutput: {zarr: never.zarr}\n")
    env = {
        **slurm_env,
        "PYTHONPATH": str(ROOT / "src"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{slurm_env['PATH']}",
    }
    command = ["sbatch", "--parsable", "--array=1", "-p", "debug", "-t", "5", "-c", "1"]
    command += ["--mem-per-cpu=1G", "-D", str(tmp_path), "-o", str(tmp_path / "task-%a.log")]
    command += [str(ARRAY), str(other), "catalogs/sample/ndvi.yaml"]
    submitted = subprocess.run(
        command,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert submitted.returncode == 0, submitted.stderr
    deadline = time.monotonic() + 180
    while _support.squeue(env) and time.monotonic() < deadline:
        time.sleep(0.25)
    log = (tmp_path / "task-1.log").read_text()
    assert (tmp_path / "out" / "pipeline" / "ndvi.zarr").is_dir(), log[-3000:]  # the 2nd spec
    assert not (tmp_path / "never.zarr").exists()
    assert not (tmp_path / "task-0.log").exists()


def test_array_template_refuses_a_task_beyond_its_specs(tmp_path):
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1"}
    spec = str(ROOT / "catalogs" / "sample" / "ndvi.yaml")
    beyond = subprocess.run(
        ["bash", str(ARRAY), spec], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert beyond.returncode == 2 and "task 1: only 1 specs given" in beyond.stderr
    env.pop("SLURM_ARRAY_TASK_ID")
    alone = subprocess.run(
        ["bash", str(ARRAY), spec], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert alone.returncode != 0 and "submit with sbatch --array=0-N" in alone.stderr


def test_scene_script_of_the_hpc_guide_writes_the_scene_of_its_task(tmp_path, monkeypatch):
    import runpy

    import xarray as xr

    (script,) = [b for b in _blocks(HPC, "python") if b.startswith("# scene.py")]
    (tmp_path / "scene.py").write_text(script)
    (tmp_path / "catalogs").symlink_to(ROOT / "catalogs", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    monkeypatch.setattr(sys, "argv", ["scene.py", "catalogs/sample/catalog.json", "out"])
    runpy.run_path("scene.py", run_name="__main__")
    sample = ROOT / "catalogs" / "sample" / "catalog.json"
    (item,) = lazyraster.resolve_items(str(sample))
    written = xr.open_zarr(tmp_path / "out" / f"{item.id}.zarr")
    expected = lazyraster.ndvi(lazyraster.load(str(sample), bands=["red", "nir"])).compute()
    xr.testing.assert_allclose(written["ndvi"].load(), expected, rtol=1e-6)
