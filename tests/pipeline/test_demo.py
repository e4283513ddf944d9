import numpy as np
import pytest
import rasterio
import xarray as xr
from click.testing import CliRunner
from tests.references import SAMPLE, loop_focal_mean, sample_ndvi

import lazyraster
from lazyraster.cli import main
from lazyraster.pipeline._demo import run_demo


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = CliRunner().invoke(main, ["demo", "--catalog", str(SAMPLE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_demo_prints_outputs_sizes_and_timings(demo_out):
    out, output = demo_out
    for name in ("ndvi.zarr", "ndvi.tif", "ndvi.png"):
        assert str(out / name) in output
    assert "KiB" in output and "load" in output and " s" in output


def test_demo_zarr_has_values_crs_and_transform_of_the_input(demo_out):
    out, _ = demo_out
    expected, transform, crs = sample_ndvi()
    ds = xr.open_zarr(out / "ndvi.zarr")
    assert ds.rio.crs == crs
    assert ds.rio.transform() == transform
    np.testing.assert_allclose(
        ds.ndvi.isel(time=0).values, expected, rtol=1e-6, atol=1e-7, equal_nan=True
    )


def test_demo_geotiff_has_values_crs_and_transform_of_the_input(demo_out):
    out, _ = demo_out
    expected, transform, crs = sample_ndvi()
    with rasterio.open(out / "ndvi.tif") as src:
        assert src.crs == crs
        assert src.transform == transform
        assert src.dtypes[0] == "float32"
        values = src.read(1, masked=False)
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7, equal_nan=True)


def test_demo_quicklook_is_a_png(demo_out):
    out, _ = demo_out
    assert (out / "ndvi.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_refuses_to_overwrite_and_changes_nothing(demo_out):
    out, _ = demo_out
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    result = CliRunner().invoke(main, ["demo", "--catalog", str(SAMPLE), "--out", str(out)])
    assert result.exit_code != 0
    assert "--overwrite" in result.output
    assert "Traceback" not in result.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_demo_overwrite_replaces_outputs(tmp_path):
    first = run_demo(SAMPLE, tmp_path)
    with pytest.raises(lazyraster.OutputExistsError, match="overwrite=True"):
        run_demo(SAMPLE, tmp_path)
    second = run_demo(SAMPLE, tmp_path, overwrite=True)
    assert second.outputs == first.outputs
    assert all(p.exists() for p in second.outputs.values())


def test_demo_bad_catalog_is_one_line_error(tmp_path):
    result = CliRunner().invoke(
        main, ["demo", "--catalog", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code != 0
    assert result.output.startswith("Error:")
    assert not (tmp_path / "o").exists()


def test_demo_zarr_focal_mean_equals_a_plain_loop(demo_out):
    out, _ = demo_out
    expected = loop_focal_mean(sample_ndvi()[0])
    ds = xr.open_zarr(out / "ndvi.zarr")
    assert ds.ndvi_focal_mean.dtype == np.float32
    np.testing.assert_allclose(
        ds.ndvi_focal_mean.isel(time=0).values, expected, rtol=1e-5, atol=1e-6, equal_nan=True
    )
