"""Pipeline specs written to hurt: anchor bombs, recursive anchors, duplicate keys, huge files.

The anchor bomb runs in a child process with an address-space ceiling and a wall-clock
ceiling: on the old loader it expanded to 10**9 nodes (96 s and 9.5 GB before exiting 0).
"""

from __future__ import annotations

import itertools
import resource
import subprocess
import sys
from pathlib import Path

import pystac
import pytest
import shapely.geometry
from click.testing import CliRunner
from tests.references import SAMPLE

import lazyraster
from lazyraster.cli import main
from lazyraster.errors import SpecError
from lazyraster.pipeline import _spec as pipeline
from lazyraster.pipeline import load_spec, plan_pipeline

#: Address space for the child: a dry run of a good spec needs about 1 GiB of it.
CEILING = 1536 * 2**20


def _bomb(levels: int) -> str:
    """A valid spec whose step option is 9**levels "lol"s after alias expansion."""
    names = "abcdefghijklmn"[:levels]
    lines = [f"        - &a [{', '.join(['lol'] * 9)}]"]
    lines += [
        f"        - &{cur} [{', '.join([f'*{prev}'] * 9)}]"
        for prev, cur in itertools.pairwise(names)
    ]
    return "\n".join(
        [
            f"source: {SAMPLE}",
            "load: {bands: [red, nir]}",
            "search:",
            "  query:",
            "    gsd:",
            "      neq:",
            *lines,
            "steps:",
            f"  - index: {{name: NDVI, L: *{names[-1]}}}",
            "output: {zarr: never-written.zarr}",
            "",
        ]
    )


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CEILING, CEILING))


def test_an_anchor_bomb_is_refused_within_a_memory_ceiling(tmp_path):
    spec = tmp_path / "bomb.yaml"
    spec.write_text(_bomb(9))  # 9**9 = 387 420 489 leaves
    done = subprocess.run(
        [sys.executable, "-c", "from lazyraster.cli import main; main()", "run", str(spec),
         "--dry-run"],
        preexec_fn=_limited, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"PYTHONPATH": str(Path(lazyraster.__file__).parents[1]), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.strip() == (
        f"Error: {spec}: line 12: the spec expands to more than 100000 YAML nodes through "
        "its aliases (&anchor/*alias); a pipeline spec is a few dozen: write it out without "
        "nested aliases"
    )
    assert not (tmp_path / "never-written.zarr").exists()


def test_aliases_that_stay_small_are_fine(tmp_path):
    spec = tmp_path / "ok.yaml"
    spec.write_text(_bomb(2).replace("index: {name: NDVI, L: *b}", "ndvi: {}"))
    assert [s.name for s in load_spec(spec).steps] == ["ndvi"]


def test_the_expanded_size_is_counted_exactly(tmp_path, monkeypatch):
    # 3 levels: a = 1 + 9 leaves, b = 1 + 9 * 10, c = 1 + 9 * 91 = 820 nodes
    spec = tmp_path / "s.yaml"
    spec.write_text(_bomb(3))
    monkeypatch.setattr(pipeline, "MAX_SPEC_NODES", 819)
    with pytest.raises(SpecError, match="more than 819 YAML nodes"):
        load_spec(spec)
    loader = pipeline._SpecLoader("x: &c [1, 2]\ny: [*c, *c]\n")
    root = loader.get_single_node()
    # x, [1, 2] (3), y, [*c, *c] (1 + 3 + 3): 1 + 1 + 3 + 1 + 7
    assert loader._sizes[id(root)] == 13


def test_a_recursive_anchor_is_refused(tmp_path):
    spec = tmp_path / "r.yaml"
    spec.write_text(f"source: {SAMPLE}\nsearch: {{datetime: &d [2021, *d]}}\noutput: o.zarr\n")
    with pytest.raises(SpecError, match=r"r\.yaml: line 2: an alias refers to the node it is in"):
        load_spec(spec)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "source: a.json\noutput: {zarr: a.zarr}\nsource: b.json\n",
            r"key 'source' appears twice in one mapping \(lines 1 and 3\)",
        ),
        (
            "source: a.json\noutput:\n  zarr: a.zarr\n  overwrite: false\n  overwrite: true\n",
            r"key 'overwrite' appears twice in one mapping \(lines 4 and 5\)",
        ),
        (
            "source: a.json\noutput: {zarr: a.zarr}\nsteps:\n  - focal_mean: {size: 3, size: 5}\n",
            r"key 'size' appears twice in one mapping \(lines 4 and 4\)",
        ),
    ],
)
def test_duplicate_keys_are_an_error_naming_the_key_and_lines(tmp_path, text, message):
    spec = tmp_path / "d.yaml"
    spec.write_text(text)
    with pytest.raises(SpecError, match=rf"d\.yaml: {message}; keep one"):
        load_spec(spec)


def test_merge_keys_may_override_what_they_merge(tmp_path):
    spec = tmp_path / "m.yaml"
    spec.write_text(
        f"source: {SAMPLE}\nbase: &base {{zarr: a.zarr, overwrite: false}}\n".replace(
            "base:", "output:"
        )
        + "cluster: {kind: threads}\n"
    )
    assert load_spec(spec).outputs["zarr"].path == "a.zarr"
    text = "x: &b {zarr: a.zarr, overwrite: false}\ny:\n  <<: *b\n  overwrite: true\n"
    assert pipeline._parse_spec(text, "s") == {
        "x": {"zarr": "a.zarr", "overwrite": False},
        "y": {"zarr": "a.zarr", "overwrite": True},
    }


def test_a_huge_file_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "MAX_SPEC_BYTES", 1000)
    spec = tmp_path / "big.yaml"
    spec.write_text(f"source: {SAMPLE}\noutput: o.zarr\n# {'x' * 2000}\n")
    with pytest.raises(SpecError, match=r"big\.yaml is larger than 1000 bytes"):
        load_spec(spec)


def test_a_binary_file_is_named(tmp_path):
    spec = tmp_path / "bin.yaml"
    spec.write_bytes(b"source: \xff\xfe\n")
    with pytest.raises(SpecError, match=r"bin\.yaml is not UTF-8 text"):
        load_spec(spec)


# --------------------------------------------------------------------------- intersects

#: Inside the sample scene (bbox -55.99304, -25.405886, -55.94061, -25.386212).
_INSIDE = shapely.geometry.box(-55.98, -25.40, -55.96, -25.39).__geo_interface__
_OUTSIDE = shapely.geometry.box(10, 10, 11, 11).__geo_interface__


def _spec(tmp_path: Path, source: str, geometry: dict, **search) -> dict:
    return {
        "source": source,
        "search": {"intersects": geometry, **search},
        "load": {"bands": ["red", "nir"]},
        "steps": ["ndvi"],
        "output": {"zarr": str(tmp_path / "o.zarr")},
    }


def test_intersects_searches_a_static_catalog_and_clips_the_load(tmp_path):
    plan = plan_pipeline(_spec(tmp_path, str(SAMPLE), _INSIDE))
    assert plan.items == 1
    whole = lazyraster.load(SAMPLE, bands=["red"])
    clipped = lazyraster.load(SAMPLE, bands=["red"], bbox=shapely.geometry.shape(_INSIDE).bounds)
    assert (
        plan.grid.split(", ")[1] == f"{clipped.rio.height} x {clipped.rio.width} pixels of 30 x 30"
    )
    assert clipped.rio.height < whole.rio.height
    with pytest.raises(lazyraster.errors.EmptyResultError, match="no items"):
        plan_pipeline(_spec(tmp_path, str(SAMPLE), _OUTSIDE))


def test_intersects_searches_a_stac_api(tmp_path, stac_api):
    catalog = lazyraster.search(SAMPLE)
    collection_id = stac_api.unique_id("lazyraster-intersects")
    items = []
    for item in catalog:
        copy = item.clone()
        copy.collection_id = collection_id
        copy.remove_links("collection")
        copy.make_asset_hrefs_absolute()
        items.append(copy)
    collection = pystac.Collection(
        collection_id,
        "sample scene for intersects",
        pystac.Extent(
            pystac.SpatialExtent([items[0].bbox]),
            pystac.TemporalExtent([[items[0].datetime, items[0].datetime]]),
        ),
    )
    stac_api.load(collection, items)
    inside = plan_pipeline(_spec(tmp_path, stac_api.url, _INSIDE, collections=[collection_id]))
    assert inside.items == 1
    static = plan_pipeline(_spec(tmp_path, str(SAMPLE), _INSIDE))
    assert inside.grid == static.grid
    with pytest.raises(lazyraster.errors.EmptyResultError):
        plan_pipeline(_spec(tmp_path, stac_api.url, _OUTSIDE, collections=[collection_id]))


def test_run_on_broken_yaml_is_one_line(tmp_path):
    """``lazyraster run`` on a spec with a YAML syntax error: one line naming where."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("source: catalogs/sample/catalog.json\nsteps: [ndvi\n")
    result = CliRunner().invoke(main, ["run", str(spec)])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "not valid YAML" in lines[0] and "line 3" in lines[0]
