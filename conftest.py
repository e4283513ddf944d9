"""Doctests run in a fresh folder each, beside the bundled sample catalogs.

The examples read ``catalogs/sample/...`` as a user in a checkout would, and write
their outputs (``out/``, ``ndvi.zarr``) into that folder, never into the checkout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _doctest_folder(request: pytest.FixtureRequest) -> None:
    if type(request.node).__name__ != "DoctestItem":
        return
    folder = request.getfixturevalue("tmp_path")
    (folder / "catalogs").symlink_to(ROOT / "catalogs", target_is_directory=True)
    request.getfixturevalue("monkeypatch").chdir(folder)
