"""``quicklook`` and ``lazyraster quicklook``: PNGs of COGs and Zarr stores, checked by pixel.

The rasters are written by lazyraster's own writers; the PNG is read back from disk
and the colour at the centre of each block compared with matplotlib's colour map
applied by hand. Where the image lies in the PNG is taken from the figure quicklook
saved (recorded by wrapping ``Figure.savefig``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyproj
import pytest
import rioxarray
import xarray as xr
from click.testing import CliRunner
from matplotlib.figure import Figure
from tests.analysis._support import assert_colour, expected, image_box, pixel, png_pixels

from lazyraster.cli import main
from lazyraster.errors import MissingBandError, OutputExistsError, ReadError
from lazyraster.io import write_geotiff, write_zarr
from lazyraster.plot import quicklook

CLI = "from lazyraster.cli import main; main()"
PNG = b"\x89PNG\r\n\x1a\n"


def quadrants(n, nw, ne, sw, se, *, name="ndvi"):
    """An n x n float32 raster of four constant blocks, 10 m pixels, EPSG:32633."""
    values = np.empty((n, n), "float32")
    h = n // 2
    values[:h, :h], values[:h, h:], values[h:, :h], values[h:, h:] = nw, ne, sw, se
    x = 500000 + 10 * (np.arange(n) + 0.5)
    y = 7000000 - 10 * (np.arange(n) + 0.5)
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}, name=name)
    return da.rio.write_crs("EPSG:32633")


@pytest.fixture
def saved(monkeypatch):
    """The figures saved during the test, in order."""
    figures = []
    original = Figure.savefig

    def record(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


@pytest.fixture
def opened(monkeypatch):
    """The keyword arguments of each ``rioxarray.open_rasterio`` call."""
    calls = []
    original = rioxarray.open_rasterio

    def record(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(rioxarray, "open_rasterio", record)
    return calls


def test_a_cog_is_drawn_from_the_overview_that_fits_with_its_colours_and_nodata(
    tmp_path, saved, opened
):
    cog = write_geotiff(
        quadrants(1024, -1.0, 0.0, 1.0, np.nan), tmp_path / "ndvi.tif", blocksize=256
    )
    png = quicklook(cog, tmp_path / "ndvi.png", dpi=50)
    assert png == tmp_path / "ndvi.png" and png.read_bytes()[:8] == PNG
    # overviews 2x and 4x; a 200-pixel panel needs 256 pixels: the 4x one (level 1)
    assert opened[-1]["overview_level"] == 1
    (fig,) = saved
    assert fig.axes[0].images[0].get_array().shape == (256, 256)
    assert fig.axes[0].get_xlim() == (500000.0, 500000.0 + 10240)
    assert fig.axes[0].get_xlabel() == "x [m], EPSG:32633"
    img, box = png_pixels(png), image_box(fig)
    assert_colour(pixel(img, box, 0.25, 0.25), expected("RdYlGn", -1, -1, 1), "north-west")
    assert_colour(pixel(img, box, 0.75, 0.25), expected("RdYlGn", 0, -1, 1), "north-east")
    assert_colour(pixel(img, box, 0.25, 0.75), expected("RdYlGn", 1, -1, 1), "south-west")
    (legend,) = fig.legends
    nodata = np.asarray(legend.legend_handles[0].get_facecolor())[:3]
    assert_colour(pixel(img, box, 0.75, 0.75), nodata, "nodata")


def test_a_geotiff_nodata_value_is_drawn_as_nodata(tmp_path, saved):
    dn = quadrants(64, 0, 1000, 2000, 3000, name="dn").astype("uint16")
    tif = write_geotiff(dn, tmp_path / "dn.tif", nodata=0)
    png = quicklook(tif, dpi=40)
    assert png == tmp_path / "dn.png"
    (fig,) = saved
    img, box = png_pixels(png), image_box(fig)
    nodata = np.asarray(fig.legends[0].legend_handles[0].get_facecolor())[:3]
    assert_colour(pixel(img, box, 0.25, 0.25), nodata, "nodata value 0")
    low, high = np.percentile([1000] * 3 + [2000] * 3 + [3000] * 3, [2, 98])
    assert_colour(pixel(img, box, 0.25, 0.75), expected("viridis", 2000, low, high))


def series(n):
    da = quadrants(32, 0, 0, 0, 0).expand_dims(time=pd.date_range("2023-05-01", periods=n))
    values = (np.arange(n)[:, None, None] / 10 - 0.5) * np.ones((n, 32, 32), "float32")
    return da.copy(data=values.astype("float32"))


def test_a_zarr_store_is_drawn_one_panel_per_time_step(tmp_path, saved):
    store = write_zarr(series(3), tmp_path / "ndvi.zarr")
    png = quicklook(store, tmp_path / "out.png", dpi=40)
    (fig,) = saved
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["2023-05-01", "2023-05-02", "2023-05-03"]
    assert panels[0].get_ylabel() == "y [m], EPSG:32633"  # the CRS the store kept
    assert panels[0].get_xlim() == (500000.0, 500320.0)
    img = png_pixels(png)
    for t, ax in enumerate(panels):
        got = pixel(img, image_box(fig, fig.axes.index(ax)), 0.5, 0.5)
        assert_colour(got, expected("RdYlGn", t / 10 - 0.5, -1, 1), f"step {t}")


def test_time_picks_a_step_and_max_panels_limits_them(tmp_path, saved):
    store = write_zarr(series(8), tmp_path / "ndvi.zarr")
    quicklook(store, tmp_path / "one.png", time="2023-05-04", dpi=30)
    quicklook(store, tmp_path / "four.png", max_panels=4, dpi=30)
    one, four = saved
    assert [ax.get_title() for ax in one.axes if ax.images] == ["2023-05-04"]
    img = png_pixels(tmp_path / "one.png")
    assert_colour(pixel(img, image_box(one), 0.5, 0.5), expected("RdYlGn", -0.2, -1, 1))
    assert len([ax for ax in four.axes if ax.images]) == 4
    assert "4 of 8 time steps shown, 4 left out" in four.get_suptitle()
    with pytest.raises(ValueError, match="no step '2023-06-01' in time"):
        quicklook(store, tmp_path / "new" / "none.png", time="2023-06-01")
    assert not (tmp_path / "new").exists()  # nothing made before there is a picture


def test_a_group_of_a_store_is_drawn_by_its_path(tmp_path, saved):
    store = tmp_path / "si.zarr"
    for year, value in ((2021, 100.0), (2022, 140.0)):
        leaf = quadrants(16, value, value, value + 20, value + 20, name="first_leaf")
        leaf.attrs = {"units": "day of year"}
        write_zarr(leaf.to_dataset(), store, group=str(year))
    png = quicklook(store / "2022", dpi=30)
    assert png == tmp_path / "si-2022.png"
    (fig,) = saved
    assert fig.axes[-1].get_ylabel() == "day of year"
    img, box = png_pixels(png), image_box(fig)
    assert_colour(pixel(img, box, 0.5, 0.25), expected("viridis", 140, 140, 160))
    assert_colour(pixel(img, box, 0.5, 0.75), expected("viridis", 160, 140, 160))
    with pytest.raises(MissingBandError, match=r"holds the groups 2021, 2022 .*si.zarr/2021"):
        quicklook(store, tmp_path / "root.png")


def test_an_array_folder_of_a_store_selects_that_variable(tmp_path, saved):
    ds = xr.Dataset({"ndvi": quadrants(16, 0.5, 0.5, 0.5, 0.5), "b": quadrants(16, 1, 2, 3, 4)})
    store = write_zarr(ds, tmp_path / "s.zarr")
    png = quicklook(Path(store) / "ndvi", dpi=30)
    assert png == tmp_path / "s-ndvi.png"
    (fig,) = saved
    img = png_pixels(png)
    assert_colour(pixel(img, image_box(fig), 0.5, 0.5), expected("RdYlGn", 0.5, -1, 1))


def test_unknown_or_missing_variable_lists_the_variables(tmp_path):
    ds = xr.Dataset({"ndvi": quadrants(16, 0.5, 0.5, 0.5, 0.5), "b": quadrants(16, 1, 2, 3, 4)})
    store = write_zarr(ds, tmp_path / "s.zarr")
    with pytest.raises(MissingBandError, match=r"no variable 'evi' .*it has: b, ndvi"):
        quicklook(store, tmp_path / "a.png", variable="evi")
    with pytest.raises(MissingBandError, match="has b, ndvi: pass variable="):
        quicklook(store, tmp_path / "a.png")
    tif = write_geotiff(ds, tmp_path / "s.tif")
    with pytest.raises(MissingBandError, match=r"no band 'evi' .*it has: ndvi, b"):
        quicklook(tif, tmp_path / "a.png", variable="evi")
    assert not (tmp_path / "a.png").exists()


def test_not_a_raster_is_refused_naming_what_is_readable(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a raster")
    with pytest.raises(ReadError, match="is not a raster: give a GeoTIFF/COG file or a Zarr"):
        quicklook(text, tmp_path / "a.png")
    with pytest.raises(ReadError, match="not a Zarr store or group"):
        quicklook(tmp_path, tmp_path / "a.png")
    with pytest.raises(ReadError, match="does not exist; check the path"):
        quicklook(tmp_path / "missing.tif", tmp_path / "a.png")


def test_an_existing_png_is_refused_and_kept_unless_overwrite(tmp_path):
    tif = write_geotiff(quadrants(16, -1, 0, 1, 0.5), tmp_path / "ndvi.tif")
    png = tmp_path / "ndvi.png"
    png.write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        quicklook(tif, png)
    assert png.read_bytes() == b"mine"
    quicklook(tif, png, overwrite=True, dpi=30)
    assert png.read_bytes()[:8] == PNG
    assert sorted(os.listdir(tmp_path)) == ["ndvi.png", "ndvi.tif"]  # no temporaries


def test_a_png_another_writer_commits_first_is_kept(tmp_path, monkeypatch):
    """Two quicklooks of one PNG: the one that takes the commit lock second refuses."""
    from lazyraster.io import _atomic

    tif = write_geotiff(quadrants(16, -1, 0, 1, 0.5), tmp_path / "ndvi.tif")
    png = tmp_path / "ndvi.png"
    lock = _atomic.output_lock

    def other_writer_first(target):
        png.write_bytes(b"the other writer's picture")  # committed while this one drew
        return lock(target)

    monkeypatch.setattr(_atomic, "output_lock", other_writer_first)
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        quicklook(tif, png, dpi=30)
    assert png.read_bytes() == b"the other writer's picture"
    assert sorted(os.listdir(tmp_path)) == ["ndvi.png", "ndvi.tif"]  # no temporaries
    quicklook(tif, png, overwrite=True, dpi=30)
    assert png.read_bytes()[:8] == PNG


def test_the_raster_itself_is_never_the_png_even_with_overwrite(tmp_path):
    """``--out`` naming the input (another spelling, a link, a file in the store) is refused."""
    tif = write_geotiff(quadrants(16, -1, 0, 1, 0.5), tmp_path / "ndvi.tif")
    store = write_zarr(quadrants(16, -1, 0, 1, 0.5), tmp_path / "ndvi.zarr")
    (tmp_path / "link.png").symlink_to(tif)
    before = Path(tif).read_bytes()
    for raster, png in [
        (tif, tif),
        (tif, tmp_path / "." / "ndvi.tif"),
        (tif, tmp_path / "link.png"),
        (store, Path(store) / "ndvi.png"),
    ]:
        with pytest.raises(OutputExistsError, match=r"the raster .* to draw"):
            quicklook(raster, png, overwrite=True, dpi=30)
    assert Path(tif).read_bytes() == before
    assert not (Path(store) / "ndvi.png").exists()


KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from matplotlib.figure import Figure
    from lazyraster.plot import quicklook

    original = Figure.savefig

    def savefig(self, fname, **kwargs):
        original(self, fname, **kwargs)
        with open(fname, "r+b") as f:  # half the PNG is on disk when the process dies
            f.truncate(os.path.getsize(fname) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

    Figure.savefig = savefig
    quicklook(sys.argv[1], sys.argv[2], overwrite=True)
    """
)


def test_a_process_killed_while_writing_leaves_no_partial_png(tmp_path):
    """SIGKILL with half the new PNG written: the previous one is still there, whole."""
    tif = write_geotiff(quadrants(16, -1, 0, 1, 0.5), tmp_path / "ndvi.tif")
    png = tmp_path / "ndvi.png"
    png.write_bytes(b"the previous picture")
    done = subprocess.run(
        [sys.executable, "-c", KILLED, tif, png], capture_output=True, timeout=300
    )
    assert done.returncode == -9, done.stderr
    assert png.read_bytes() == b"the previous picture"
    left = [p for p in os.listdir(tmp_path) if p.startswith(".ndvi.png.tmp-")]
    assert left, "the killed writer's temporary is beside the PNG, under another name"
    quicklook(tif, png, overwrite=True, dpi=30)
    assert png.read_bytes()[:8] == PNG
    assert sorted(os.listdir(tmp_path)) == ["ndvi.png", "ndvi.tif"]  # swept


@pytest.mark.parametrize("inside", ["", "ndvi"])
def test_a_store_named_from_inside_it_is_drawn_beside_it(tmp_path, monkeypatch, inside):
    """``lazyraster quicklook .`` in the store (or ``..`` in its array): as by its full path."""
    store = write_zarr(series(2), tmp_path / "ndvi.zarr")
    quicklook(store, tmp_path / "reference.png", dpi=30)
    monkeypatch.chdir(Path(store, inside))
    result = CliRunner().invoke(main, ["quicklook", ".." if inside else ".", "--dpi", "30"])
    assert result.exit_code == 0, result.output
    png = tmp_path / "ndvi.png"
    assert Path(result.output.strip()).resolve() == png
    assert png.read_bytes() == (tmp_path / "reference.png").read_bytes()


def test_cli_writes_the_png_and_prints_its_path(tmp_path):
    store = write_zarr(series(2), tmp_path / "ndvi.zarr")
    out = tmp_path / "pics" / "n.png"  # a missing folder is made, as the writers do
    result = CliRunner().invoke(
        main, ["quicklook", str(store), "--out", str(out), "--time", "2023-05-02", "--dpi", "30"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    assert out.read_bytes()[:8] == PNG
    result = CliRunner().invoke(main, ["quicklook", str(store), "--out", str(out)])
    assert result.exit_code != 0 and "--overwrite" in result.output
    result = CliRunner().invoke(main, ["quicklook", str(store), "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/missing.tif"], "does not exist"),
        (["{tmp}/notes.txt"], "is not a raster"),
        (["{tmp}/ndvi.zarr", "--variable", "evi"], "it has: ndvi"),
        (["{tmp}/ndvi.zarr", "--time", "1999-01-01"], "no step '1999-01-01' in time"),
        (["{tmp}/ndvi.zarr", "--out", "{tmp}/notes.txt"], "already exists"),
        (["{tmp}/notes.txt", "--time", "2023-05-01"], "has no time steps"),
    ],
)
def test_cli_bad_input_is_one_line_on_stderr_and_a_non_zero_exit(tmp_path, args, message):
    write_zarr(series(2), tmp_path / "ndvi.zarr")
    (tmp_path / "notes.txt").write_text("not a raster")
    argv = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(main, ["quicklook", *argv])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0]
    assert not any(p.suffix == ".png" for p in tmp_path.iterdir())


def test_cli_error_in_a_real_process_has_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", CLI, "quicklook", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"Error: {tmp_path} is a folder but not a Zarr store")


LCC = "+proj=lcc +lat_1=25 +lat_2=60 +lat_0=42.5 +lon_0=-100 +x_0=0 +y_0=0 +datum=WGS84"


def test_a_netcdf_file_is_drawn_in_the_crs_of_its_cf_grid_mapping(tmp_path, saved):
    """xarray writes the file with a Daymet-like grid mapping: CF parameters, no WKT."""
    grid_mapping = pyproj.CRS.from_proj4(LCC).to_cf()
    del grid_mapping["crs_wkt"]
    da = quadrants(32, -1.0, 0.0, 1.0, np.nan)
    ds = xr.Dataset(
        {
            "ndvi": (("y", "x"), da.values, {"grid_mapping": "lambert_conformal_conic"}),
            "other": (("y", "x"), da.values * 2, {"grid_mapping": "lambert_conformal_conic"}),
            "lambert_conformal_conic": ((), 0, grid_mapping),
        },
        coords={"y": da.y.values, "x": da.x.values},
    )
    ds.to_netcdf(tmp_path / "ndvi.nc")
    png = quicklook(tmp_path / "ndvi.nc", variable="ndvi", dpi=40)
    assert png == tmp_path / "ndvi-ndvi.png"
    (fig,) = saved
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x [m], Lambert Conic Conformal (2SP)"
    assert ax.get_xlim() == (500000.0, 500320.0)
    img, box = png_pixels(png), image_box(fig)
    assert_colour(pixel(img, box, 0.25, 0.25), expected("RdYlGn", -1, -1, 1), "north-west")
    assert_colour(pixel(img, box, 0.75, 0.25), expected("RdYlGn", 0, -1, 1), "north-east")
    assert_colour(pixel(img, box, 0.25, 0.75), expected("RdYlGn", 1, -1, 1), "south-west")
    nodata = np.asarray(fig.legends[0].legend_handles[0].get_facecolor())[:3]
    assert_colour(pixel(img, box, 0.75, 0.75), nodata, "nodata")
    with pytest.raises(MissingBandError, match=r"has ndvi, other: .*--variable"):
        quicklook(tmp_path / "ndvi.nc", tmp_path / "b.png")


def test_cli_names_variable_and_lists_the_variables_of_a_store_with_several(tmp_path):
    ds = xr.Dataset({"ndvi": quadrants(16, 0.5, 0.5, 0.5, 0.5), "b": quadrants(16, 1, 2, 3, 4)})
    store = write_zarr(ds, tmp_path / "s.zarr")
    result = CliRunner().invoke(main, ["quicklook", str(store)])
    assert result.exit_code == 1 and result.stdout == ""
    assert "the Dataset has b, ndvi: pass" in result.stderr
    assert "--variable" in result.stderr
    result = CliRunner().invoke(main, ["quicklook", str(store), "--variable", "evi"])
    assert "it has: b, ndvi" in result.stderr and "--variable" in result.stderr


@pytest.mark.parametrize("where", ["folder", "under a file", "another format"])
def test_a_png_path_no_file_can_take_is_refused_before_reading(tmp_path, where, opened):
    """Also a name of another format (PNG bytes in ``map.jpg`` would be read as no JPEG)."""
    tif = write_geotiff(quadrants(16, -1, 0, 1, 0.5), tmp_path / "ndvi.tif")
    (tmp_path / "pics").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    png, message = {
        "folder": (tmp_path / "pics", "is a folder: give the PNG"),
        "under a file": (tmp_path / "notes.txt" / "sub" / "a.png", "notes.txt, which is a file"),
        "another format": (tmp_path / "pics" / "map.jpg", "is not named .png: give"),
    }[where]
    with pytest.raises(ValueError, match=message):
        quicklook(tif, png, overwrite=True)
    assert opened == []  # refused before any data is read
    done = subprocess.run(
        [sys.executable, "-c", CLI, "quicklook", str(tif), "--out", str(png)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"Error: {png}") and message in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["ndvi.tif", "notes.txt", "pics"]
    assert os.listdir(tmp_path / "pics") == [] and (tmp_path / "notes.txt").read_text() == "mine"


def test_cli_quicklook_does_not_import_distributed(tmp_path):
    """dask looks for a distributed client when it computes: not when none can exist."""
    tif = write_geotiff(quadrants(16, -1, 0, 1, 0.5), tmp_path / "ndvi.tif")
    code = (
        "import sys\nfrom lazyraster.cli import main\ntry:\n    main()\nexcept SystemExit:\n"
        "    print(sorted(m for m in sys.modules if m.split('.')[0] == 'distributed'))"
    )
    argv = [sys.executable, "-c", code, "quicklook", str(tif), "--out", str(tmp_path / "a.png")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(tmp_path / "a.png"), "[]"]
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG
