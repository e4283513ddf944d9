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
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

import lazyraster

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).with_name("mkdocs")
#: The packages whose public names the API reference documents.
PACKAGES = [
    "lazyraster",
    "lazyraster.catalog",
    "lazyraster.load",
    "lazyraster.indices",
    "lazyraster.focal",
    "lazyraster.phenology",
    "lazyraster.masking",
    "lazyraster.io",
    "lazyraster.cluster",
    "lazyraster.pipeline",
    "lazyraster.testing",
    "lazyraster.errors",
    "lazyraster.config",
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
