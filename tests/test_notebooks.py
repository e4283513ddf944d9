"""Every notebook (jupytext percent scripts in notebooks/) runs top to bottom."""

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    namespace = runpy.run_path(str(path), run_name="__main__")
    assert namespace  # the notebooks assert on their own values


def test_there_are_notebooks():
    assert NOTEBOOKS
