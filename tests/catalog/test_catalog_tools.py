"""describe and localize, and the ``lazyraster catalog`` command line (validate: test_validate)."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pystac
import pytest
from click.testing import CliRunner
from tests.catalog._support import DAYMET, item_files

from lazyraster.catalog import (
    describe_catalog,
    format_description,
)
from lazyraster.cli import EXIT_SKIPPED, main
from lazyraster.errors import CatalogError

EXAMPLES = Path(__file__).parents[1] / "data" / "stac-examples"
API_ITEMS = Path(__file__).parents[1] / "data" / "stac-api-items"


# ----------------------------------------------------------------------------- describe
def test_describe_counts_span_bbox_and_assets(daymet_catalog, inputs):
    summary = describe_catalog(daymet_catalog)
    assert summary["items"] == 4
    tree = [(n["depth"], n["type"], n["id"], n["items"]) for n in summary["tree"]]
    assert tree == [
        (0, "Catalog", "stac", 0),
        (1, "Collection", "daymet", 0),
        (2, "Catalog", "na", 0),
        (3, "Catalog", "2020", 1),
        (3, "Catalog", "2021", 1),
        (2, "Catalog", "pr", 0),
        (3, "Catalog", "2020", 1),
        (3, "Catalog", "2021", 1),
    ]
    group = summary["collections"]["daymet"]
    assert group["items"] == 4
    assert group["start"] == "2020-01-01T00:00:00Z"
    assert group["end"] == "2021-01-31T00:00:00Z"  # 30 days of bounds from 1 January 2021
    assert sorted(group["assets"]) == ["dayl", "tmax", "tmin"]
    items = [json.loads(p.read_text()) for p in item_files(daymet_catalog).values()]
    west = min(i["bbox"][0] for i in items)
    assert group["bbox"][0] == west
    text = format_description(summary)
    assert "collection daymet: 4 item(s)" in text and "      Catalog 2020 (1 items)" in text


def test_describe_takes_a_collection_as_root(tmp_path):
    """A static catalog whose root is a Collection (valid STAC) is described as pystac
    reads it, not refused with pystac's STACTypeError."""
    root = pystac.Collection(
        "c",
        "a collection root",
        pystac.Extent(
            pystac.SpatialExtent([[0, 0, 1, 1]]),
            pystac.TemporalExtent([[None, None]]),
        ),
    )
    item = pystac.Item(
        "i",
        {"type": "Point", "coordinates": [0.5, 0.5]},
        [0.5, 0.5, 0.5, 0.5],
        datetime.datetime(2023, 4, 30),
        {},
    )
    root.add_item(item)
    root.normalize_and_save(str(tmp_path), pystac.CatalogType.SELF_CONTAINED)
    summary = describe_catalog(tmp_path / "collection.json")
    expected = pystac.read_file(str(tmp_path / "collection.json"))
    assert summary["id"] == expected.id
    assert summary["items"] == len(list(expected.get_items()))
    assert summary["tree"][0]["type"] == "Collection"


@pytest.mark.parametrize("name", ["feature-collection", "item"])
def test_describe_refuses_what_is_no_catalog_in_one_line(tmp_path, name):
    """An ItemCollection (what an API returns) or an Item: one line naming the fix, not
    a traceback."""
    if name == "item":
        source = EXAMPLES / "1.0.0" / "simple-item.json"
    else:
        source = API_ITEMS / "planetarycomputer__naip.json"
    path = tmp_path / source.name
    shutil.copy(source, path)
    with pytest.raises(CatalogError, match="not a catalog"):
        describe_catalog(path)
    result = CliRunner().invoke(main, ["catalog", "describe", str(path)])
    assert result.exit_code != 0
    assert not isinstance(result.exception, pystac.STACTypeError)
    assert len(result.output.strip().splitlines()) == 1, result.output


# ---------------------------------------------------------------------------------- CLI
def test_cli_build_describe_validate_localize(runner, inputs):
    args = ["catalog", "build", str(inputs / "daymet"), "--out", "stac", "--pattern", DAYMET,
            "--layout", "${region}", "--collection", "daymet", "--checksum", "--id", "dm",
            "--title", "Daymet"]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "4 items (4 added, 0 updated, 0 unchanged, 0 pruned), 0 skipped" in result.output
    root = json.loads(Path("stac/catalog.json").read_text())
    assert (root["id"], root["title"]) == ("dm", "Daymet")
    item = json.loads(Path("stac/daymet/pr/daymet_v4_daily_pr_2021.json").read_text())
    assert item["assets"]["tmin"]["file:checksum"].startswith("1220")
    result = runner.invoke(main, args)  # incremental: nothing to read
    assert "0 added, 0 updated, 4 unchanged" in result.output

    result = runner.invoke(main, ["catalog", "describe", "stac"])
    assert result.exit_code == 0 and "collection daymet: 4 item(s)" in result.output
    result = runner.invoke(main, ["catalog", "describe", "stac", "--json"])
    assert json.loads(result.output)["items"] == 4

    result = runner.invoke(main, ["catalog", "validate", "stac"])
    assert result.exit_code == 0 and "valid: 8 STAC objects, 12 asset hrefs" in result.output


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    from lazyraster import cli

    monkeypatch.setattr(cli.sys.stderr, "isatty", lambda: False)
    assert cli._progress("reading") is None
    monkeypatch.setattr(cli.sys.stderr, "isatty", lambda: True)
    update = cli._progress("reading")
    for done in range(1, 4):
        update(done, 3)
    assert "reading" in capsys.readouterr().err


def test_cli_bad_files_exit_code_and_strict(runner, inputs):
    Path("src").mkdir()
    Path("src/20230101_red.tif").write_bytes((inputs / "cogs/20230430_B04.tif").read_bytes())
    Path("src/20230102_red.tif").write_bytes(b"garbage")
    args = ["catalog", "build", "src", "--out", "stac", "--pattern", "{date}_{band}.tif"]
    result = runner.invoke(main, args)
    assert result.exit_code == EXIT_SKIPPED
    assert "1 items (1 added" in result.output and "1 skipped" in result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and "20230102_red.tif: not a readable raster" in skipped[0]
    before = Path("stac/catalog.json").read_bytes()
    result = runner.invoke(main, [*args, "--strict"])
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit
    assert "Error:" in result.output and "Traceback" not in result.output
    assert "20230102_red.tif" in result.output
    assert Path("stac/catalog.json").read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pattern", "{date"], "unbalanced"),
        (["--pattern", "fixed.tif"], "has no {field}"),
        (["--layout", "${year"], "Invalid value for '--layout'"),
        (["--datetime", "yesterday"], "Invalid value for '--datetime'"),
        (["--bands", ","], "comma-separated"),
        (["--workers", "0"], "Invalid value for '--workers'"),
    ],
)
def test_cli_bad_options_name_the_fix(runner, inputs, extra, message):
    result = runner.invoke(
        main, ["catalog", "build", str(inputs / "cogs"), "--out", "stac", *extra]
    )
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output and not Path("stac").exists()


def test_cli_errors_without_traceback(runner, inputs):
    Path("notcat").mkdir()
    Path("notcat/data.txt").write_text("x")
    result = runner.invoke(main, ["catalog", "build", str(inputs / "cogs"), "--out", "notcat"])
    assert result.exit_code == 1 and "is not a catalog" in result.output
    result = runner.invoke(main, ["catalog", "build", "missing", "--out", "stac"])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(main, ["catalog", "describe", "notcat"])
    assert result.exit_code == 1 and "no catalog at notcat" in result.output
    result = runner.invoke(main, ["catalog", "validate", "notcat"])
    assert result.exit_code == 1 and "lazyraster catalog build" in result.output
    runner.invoke(main, ["catalog", "build", str(inputs / "cogs"), "--out", "stac",
                         "--pattern", "{date}_{band}.tif"])  # fmt: skip
    result = runner.invoke(main, ["catalog", "localize", "stac", "--assets", "tmin",
                                  "--to", "local"])  # fmt: skip
    assert result.exit_code == 1 and "choose among ['B04', 'B08']" in result.output
    Path("stac/20230430.json").write_text("{broken")
    result = runner.invoke(main, ["catalog", "validate", "stac"])
    assert result.exit_code == 1 and "not a readable STAC JSON file" in result.output
    assert all("Traceback" not in r for r in (result.output,))
