"""describe and localize, and the ``lazyraster catalog`` command line (validate: test_validate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lazyraster.catalog import (
    build_catalog,
    describe_catalog,
    format_description,
)
from lazyraster.cli import EXIT_SKIPPED, main
from lazyraster.testing import write_daymet, write_safe, write_sample_cog

DAYMET = "daymet_v4_daily_{region}_{variable}_{year}.nc"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    for region in ("na", "pr"):
        for year in (2020, 2021):
            for variable in ("tmax", "tmin", "dayl"):
                name = DAYMET.format(region=region, variable=variable, year=year)
                write_daymet(root / "daymet" / name, variable=variable, year=year, days=30)
    write_sample_cog(root / "cogs" / "20230430_B04.tif")
    write_sample_cog(root / "cogs" / "20230430_B08.tif", seed=1)
    write_safe(root / "s2", size_10m=6, bands={"10m": ["B04", "B08"], "20m": ["SCL"]})
    return root


@pytest.fixture
def daymet_catalog(inputs, tmp_path) -> Path:
    out = tmp_path / "stac"
    report = build_catalog(inputs / "daymet", out, pattern=DAYMET, layout="${region}/${year}",
                           collection="daymet", checksum=True)  # fmt: skip
    assert report.ok
    return out


def item_files(out: Path) -> dict[str, Path]:
    return {
        p.stem: p for p in out.rglob("*.json") if json.loads(p.read_text())["type"] == "Feature"
    }


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


# ---------------------------------------------------------------------------------- CLI
@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    """A CliRunner working in an empty folder of its own."""
    monkeypatch.chdir(tmp_path)
    return CliRunner()


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
