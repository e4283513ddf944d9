"""The catalog tools never write through a link, nor outside the catalog they are given.

A catalog linking an item elsewhere, a link planted as the builder's lock file, an
output folder that is a symbolic link: each is refused, and nothing it points at changes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from lazyraster import OutputExistsError
from lazyraster.catalog import build_catalog, localize_catalog
from lazyraster.cli import main
from lazyraster.errors import CatalogError

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def test_localize_refuses_to_rewrite_an_item_outside_the_catalog_folder(tmp_path):
    """A catalog linking someone else's item must not make localize rewrite that file."""
    (tmp_path / "cat" / "data").mkdir(parents=True)
    (tmp_path / "foreign").mkdir()
    band = tmp_path / "cat" / "data" / "b.tif"
    band.write_bytes(b"II*\x00data")
    foreign = tmp_path / "foreign" / "item.json"
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "victim",
        "geometry": None,
        "properties": {"datetime": "2020-01-01T00:00:00Z"},
        "links": [],
        "assets": {"red": {"href": str(band)}},
    }
    foreign.write_text(json.dumps(item))
    before = foreign.read_bytes()
    catalog = {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": "c",
        "description": "links an item it does not hold",
        "links": [{"rel": "item", "href": str(foreign)}],
    }
    (tmp_path / "cat" / "catalog.json").write_text(json.dumps(catalog))
    with pytest.raises(CatalogError, match=rf"item 'victim' at {re.escape(str(foreign))}"):
        localize_catalog(tmp_path / "cat", assets=["red"], to=tmp_path / "local")
    assert foreign.read_bytes() == before
    assert not (tmp_path / "local").exists()


@pytest.fixture
def scene_folder(tmp_path) -> Path:
    from lazyraster.testing import write_sample_cog

    write_sample_cog(tmp_path / "data" / "20230430_red.tif", shape=(4, 4))
    return tmp_path / "data"


def test_build_does_not_write_through_a_link_planted_as_its_lock(tmp_path, scene_folder):
    """A link at ``.stac.lock`` made the builder truncate its target and write a pid."""
    victim = tmp_path / "victim" / "bashrc"
    victim.parent.mkdir()
    victim.write_text("precious config\n")
    (tmp_path / ".stac.lock").symlink_to(victim)
    with pytest.raises(OutputExistsError, match=r"\.stac\.lock is a link, not a lock file"):
        build_catalog(scene_folder, tmp_path / "stac", pattern="{date}_{band}.tif")
    assert victim.read_text() == "precious config\n"
    (tmp_path / ".stac.lock").unlink()
    os.link(victim, tmp_path / ".stac.lock")  # a hard link is refused as well
    with pytest.raises(OutputExistsError, match="is a link"):
        build_catalog(scene_folder, tmp_path / "stac", pattern="{date}_{band}.tif")
    assert victim.read_text() == "precious config\n"


def test_build_refuses_a_symlinked_output_folder_and_leaves_nothing(tmp_path, scene_folder):
    """The link used to be swapped away, the build to fail after it, a stale link to stay."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "stac").symlink_to(real)
    with pytest.raises(OutputExistsError, match=r"stac is a symbolic link .*folder itself"):
        build_catalog(scene_folder, tmp_path / "stac", pattern="{date}_{band}.tif")
    assert (tmp_path / "stac").is_symlink() and list(real.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "real", "stac"]
    result = CliRunner().invoke(
        main,
        [
            "catalog",
            "build",
            str(scene_folder),
            "--out",
            str(tmp_path / "stac"),
            "--pattern",
            "{date}_{band}.tif",
        ],
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "is a symbolic link" in result.output
    report = build_catalog(scene_folder, real, pattern="{date}_{band}.tif")
    assert report.added == ["20230430"]
