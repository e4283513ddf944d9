"""The docs: the site builds offline, warnings as errors; every public name has an example.

The site (mkdocs.yml) is built once, in a subprocess, into a temporary folder; the checks
read the generated HTML: the API pages come from the docstrings, the CLI page from the
click commands, and no page loads anything from another host.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).with_name("mkdocs")


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
