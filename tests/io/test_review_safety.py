"""Defects found by the review of issue 14: each test failed before its fix."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import xarray as xr
from click.testing import CliRunner
from tests.references import SAMPLE

import lazyraster
from lazyraster import OutputExistsError, pipeline, write_zarr
from lazyraster.catalog import build_catalog, localize_catalog
from lazyraster.cli import main
from lazyraster.errors import CatalogError, SpecError
from lazyraster.pipeline import _spec
from lazyraster.testing import synthetic_raster

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


@pytest.fixture
def raster() -> xr.DataArray:
    return synthetic_raster((8, 8), name="ndvi", chunks={"y": 4, "x": 4})


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("metadata", "user_file"),
    [
        ({"zarr.json": ""}, "thesis.docx"),  # an empty file named like Zarr metadata
        ({".zgroup": '{"zarr_format": 2}'}, "sub/data.csv"),  # valid metadata, user files
        ({"zarr.json": '{"zarr_format": 3, "node_type": "group"}'}, "notes.txt"),
    ],
)
def test_overwrite_refuses_a_zarr_lookalike_holding_user_files(
    tmp_path, raster, metadata, user_file
):
    target = tmp_path / "results"
    target.mkdir()
    for name, text in metadata.items():
        (target / name).write_text(text)
    (target / user_file).parent.mkdir(parents=True, exist_ok=True)
    (target / user_file).write_text("years of work")
    before = tree(target)
    with pytest.raises(OutputExistsError, match=rf"{re.escape(str(target))} is not a Zarr store"):
        write_zarr(raster, target, mode="w")
    assert tree(target) == before


def test_overwrite_still_replaces_stores_with_groups(tmp_path, raster):
    for zarr_format in (2, 3):
        store = tmp_path / f"v{zarr_format}.zarr"
        write_zarr(raster, store, group="2020", zarr_format=zarr_format)
        write_zarr(raster, store, group="2021", zarr_format=zarr_format)
        write_zarr(raster + 1, store, mode="w", zarr_format=zarr_format)
        xr.testing.assert_equal(xr.open_zarr(store).ndvi.load(), (raster + 1).load())


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


@pytest.mark.parametrize(
    "value", ["[" * 50_000 + "]" * 50_000, "{a: " * 30_000 + "1" + "}" * 30_000]
)
def test_deeply_nested_spec_is_one_line_error_not_recursion(tmp_path, value):
    """Under 1 MiB, 50 000 brackets used to raise RecursionError with a traceback."""
    spec = tmp_path / "deep.yaml"
    spec.write_text(f"source: {value}\n")
    limit = rf"line 1: lists and mappings nest deeper than {pipeline.MAX_SPEC_DEPTH} levels"
    with pytest.raises(SpecError, match=limit):
        pipeline.load_spec(spec)
    result = CliRunner().invoke(main, ["run", str(spec), "--dry-run"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "nest deeper" in result.output
    depth = pipeline.MAX_SPEC_DEPTH - 1  # the top-level mapping is one level
    assert _spec._parse_spec("[" * depth + "]" * depth, "spec") is not None


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
    (tmp_path / ".out.zarr.lock").symlink_to(tmp_path / "victim" / "created-here")
    with pytest.raises(OutputExistsError, match="is a link"):
        write_zarr(synthetic_raster((4, 4), name="a"), tmp_path / "out.zarr")
    assert not (tmp_path / "victim" / "created-here").exists()


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


def test_credentials_in_a_source_url_are_masked_in_errors_and_plans(tmp_path):
    """The CLI printed ``http://ana:s3cret@...`` in its error line and dry-run plan."""
    import socket

    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = tmp_path / "cred.yaml"
    source = f"http://ana:s3cret@127.0.0.1:{port}/catalog.json"
    spec.write_text(f"source: {source}\nload: {{bands: [red]}}\noutput: {{zarr: out.zarr}}\n")
    result = CliRunner().invoke(main, ["run", str(spec), "--dry-run"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "s3cret" not in result.output
    assert f"http://***@127.0.0.1:{port}/catalog.json" in result.output
    plan = pipeline.Plan(pipeline.load_spec(spec), 1, "grid", ["red"], {})
    assert "s3cret" not in plan.describe() and "***@127.0.0.1" in plan.describe()


@pytest.mark.parametrize("group", ["2020/..", "../other.zarr", "a//b", "./2020"])
def test_a_zarr_group_must_be_names_inside_the_store(tmp_path, raster, group):
    """``group="2020/.."`` named the store itself: mode="w" replaced every group."""
    store = tmp_path / "store.zarr"
    write_zarr(raster, store, group="2020")
    write_zarr(raster, store, group="2021")
    before = tree(store)
    with pytest.raises(ValueError, match="must be names separated by '/'"):
        write_zarr(raster + 1, store, group=group, mode="w")
    assert tree(store) == before
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"source: cat.json\noutput: {{zarr: {{path: out.zarr, group: '{group}'}}}}\n")
    with pytest.raises(SpecError, match=r"output\.zarr\.group: Zarr group"):
        pipeline.load_spec(spec)


@pytest.mark.parametrize("resolution", [0, -10, float("nan"), float("inf"), True])
def test_load_refuses_a_resolution_that_is_not_a_positive_number(resolution):
    """0 raised ZeroDivisionError, -10 an AssertionError from stackstac."""
    with pytest.raises(ValueError, match=r"resolution=.* must be a positive number"):
        lazyraster.load(SAMPLE, bands=["red"], resolution=resolution)


def test_a_tiny_resolution_is_refused_by_the_grid_limit_not_a_memory_error(tmp_path):
    """Without bbox, resolution=1e-9 built the grid's coordinates: MemoryError, traceback."""
    with pytest.raises(ValueError, match=r"the requested grid is \d+ x \d+ = .* pixels"):
        lazyraster.load(SAMPLE, bands=["red"], resolution=1e-9)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        f"source: {SAMPLE}\nload: {{bands: [red], resolution: 1.0e-9}}\n"
        "output: {zarr: out.zarr}\n"
    )
    result = CliRunner().invoke(main, ["run", str(spec), "--dry-run"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "lazyraster.load.max-pixels" in result.output.strip().splitlines()[-1]
    assert lazyraster.load(SAMPLE, bands=["red"], resolution=20).sizes["x"] > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"chunks": 0}, r"chunks: y=0 must be a whole number of pixels"),
        ({"chunks": {"time": 1, "y": -5, "x": 64}}, r"chunks: y=-5 must be"),
        ({"resampling": "bogus"}, r"resampling='bogus' is not a rasterio resampling"),
    ],
)
def test_load_names_bad_chunks_and_resampling(options, message):
    """chunks=0 raised ZeroDivisionError, resampling='bogus' a bare KeyError."""
    with pytest.raises(ValueError, match=message):
        lazyraster.load(SAMPLE, bands=["red"], **options)
    assert lazyraster.load(SAMPLE, bands=["red"], chunks=-1, resampling="bilinear").chunks


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_unicode_line_separator_in_a_slurm_option_is_refused(separator):
    """The dry-run plan (``splitlines``) showed ``#SBATCH --uid=0`` as a line of its own."""
    from lazyraster.errors import ClusterConfigError

    account = f"acct{separator}#SBATCH --uid=0"
    refused = pytest.raises(ClusterConfigError, match=r"account=.* line separator")
    with (
        refused,
        lazyraster.cluster("slurm", dry_run=True, cores=1, memory="1GiB", account=account),
    ):
        pass
