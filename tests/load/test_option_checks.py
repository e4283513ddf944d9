"""Load options that cannot make a grid are refused by name, before anything is read."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from tests.references import SAMPLE

import lazyraster
from lazyraster.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


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
