"""``plot`` / ``geo.plot``: the rendered picture's pixels compared with the data.

Each test draws a small raster of known values, saves it as PNG, reads the PNG back
and checks the colour at the centre of each block of pixels against matplotlib's
colour map applied by hand (tests/analysis/_support.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import pyproj
import pytest
import xarray as xr
from affine import Affine
from tests.analysis._support import (
    assert_colour,
    expected,
    image_box,
    pixel,
    render,
)

import lazyraster  # noqa: F401 - registers the accessor
from lazyraster.errors import MissingBandError
from lazyraster.plot import plot

#: Block centres, as fractions of the image from its left and top, by quadrant.
CENTRES = {"nw": (0.25, 0.25), "ne": (0.75, 0.25), "sw": (0.25, 0.75), "se": (0.75, 0.75)}


def blocks(nw, ne, sw, se, *, n=10, name="ndvi", dtype="float64", crs="EPSG:32633"):
    """A 2n x 2n raster of four constant blocks, north up, pixel centres 10 m apart."""
    values = np.empty((2 * n, 2 * n), dtype=dtype)
    values[:n, :n], values[:n, n:], values[n:, :n], values[n:, n:] = nw, ne, sw, se
    x = 500000 + 10 * (np.arange(2 * n) + 0.5)
    y = 7000000 - 10 * (np.arange(2 * n) + 0.5)
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}, name=name)
    return da.rio.write_crs(crs) if crs else da


def nodata_colour(fig):
    """The colour the figure's legend names "nodata"."""
    (legend,) = fig.legends or [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    (handle,) = legend.legend_handles
    assert legend.get_texts()[0].get_text() == "nodata"
    return np.asarray(handle.get_facecolor())[:3]


def test_ndvi_blocks_are_drawn_red_yellow_green_on_minus_one_to_one_and_nan_as_nodata():
    da = blocks(-1.0, 0.0, 1.0, np.nan)
    fig = plot(da, dpi=80)
    img, box = render(fig), image_box(fig)
    for where, value in (("nw", -1.0), ("ne", 0.0), ("sw", 1.0)):
        assert_colour(pixel(img, box, *CENTRES[where]), expected("RdYlGn", value, -1, 1), where)
    nodata = nodata_colour(fig)
    assert_colour(pixel(img, box, *CENTRES["se"]), nodata, "NaN block")
    # a colour of its own: far from every colour of the map
    ramp = expected("RdYlGn", -1, -1, 1), expected("RdYlGn", 0, -1, 1)
    assert all(np.abs(nodata - c).sum() > 0.3 for c in ramp)
    colourbar = fig.axes[-1]
    assert colourbar.get_ylim() == (-1.0, 1.0)


def test_an_index_keeps_the_fixed_range_whatever_its_values():
    """0.1..0.3 NDVI is pale, not the full ramp: the limits are -1..1, not the data's."""
    fig = plot(blocks(0.1, 0.2, 0.3, 0.3, name="ndwi"), dpi=60)
    img, box = render(fig), image_box(fig)
    assert_colour(pixel(img, box, *CENTRES["nw"]), expected("RdYlGn", 0.1, -1, 1))
    assert_colour(pixel(img, box, *CENTRES["sw"]), expected("RdYlGn", 0.3, -1, 1))


def test_an_index_is_recognised_by_its_attributes_as_lazyraster_indices_sets_them():
    ds = xr.Dataset({"green": blocks(0.1, 0.1, 0.2, 0.2), "nir": blocks(0.5, 0.1, 0.2, 0.6)})
    index = ds.geo.index("NDWI").rename("water")  # a name plot does not know
    assert index.attrs["formula"]  # what plot reads
    fig = plot(index, dpi=60)
    img, box = render(fig), image_box(fig)
    value = float(index.values[0, 0])
    assert_colour(pixel(img, box, *CENTRES["nw"]), expected("RdYlGn", value, -1, 1))


@pytest.mark.parametrize("flip", ["y", "x", "both"])
def test_north_is_up_and_east_right_whatever_the_order_of_the_coordinates(flip):
    da = blocks(-1.0, 0.0, 1.0, 0.5)
    reordered = da.isel(
        y=slice(None, None, -1) if flip in ("y", "both") else slice(None),
        x=slice(None, None, -1) if flip in ("x", "both") else slice(None),
    )
    assert (reordered.y[0] < reordered.y[-1]) == (flip in ("y", "both"))
    fig = plot(reordered, dpi=60)
    img, box = render(fig), image_box(fig)
    np.testing.assert_array_equal(render(plot(da, dpi=60)), img)
    assert_colour(pixel(img, box, *CENTRES["nw"]), expected("RdYlGn", -1.0, -1, 1), "north-west")
    assert_colour(pixel(img, box, *CENTRES["se"]), expected("RdYlGn", 0.5, -1, 1), "south-east")


def test_axes_span_the_pixel_edges_in_map_units_with_the_crs_and_equal_aspect():
    fig = plot(blocks(-1.0, 0.0, 1.0, 0.5), dpi=60)
    ax = fig.axes[0]
    # centres 500005..500195 and 6999995..6999805: edges 5 m further out
    assert ax.get_xlim() == (500000.0, 500200.0)
    assert ax.get_ylim() == (6999800.0, 7000000.0)
    assert ax.images[0].get_extent() == [500000.0, 500200.0, 6999800.0, 7000000.0]
    assert ax.get_xlabel() == "x [m], EPSG:32633"
    assert ax.get_ylabel() == "y [m], EPSG:32633"
    assert ax.get_aspect() == 1.0
    render(fig)
    box = image_box(fig)
    assert abs((box[2] - box[0]) - (box[3] - box[1])) <= 1  # square raster, square image


def test_a_geographic_raster_is_labelled_in_degrees_with_its_aspect_at_its_latitude():
    da = blocks(1.0, 2.0, 3.0, 4.0, name="t", crs=None)
    da = da.assign_coords(x=20 + 0.1 * np.arange(20), y=60.95 - 0.1 * np.arange(20))
    fig = plot(da.rio.write_crs("EPSG:4326"), dpi=60)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "longitude [°], EPSG:4326"
    assert ax.get_ylabel() == "latitude [°], EPSG:4326"
    mid = np.radians(float(da.y.mean()))
    assert ax.get_aspect() == pytest.approx(1 / np.cos(mid))


def test_without_a_crs_the_axes_name_the_dims():
    fig = plot(blocks(1.0, 2.0, 3.0, 4.0, crs=None), dpi=60)
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("x", "y")


@pytest.mark.parametrize("key", ["_FillValue", "nodata"])
def test_the_nodata_value_is_drawn_as_nodata(key):
    da = blocks(-9999, 100, 200, 300, name="dn", dtype="int16")
    da.attrs[key] = -9999
    fig = plot(da, dpi=60)
    img, box = render(fig), image_box(fig)
    assert_colour(pixel(img, box, *CENTRES["nw"]), nodata_colour(fig), "nodata block")
    # the other values span the colour map (min..max of the valid values only)
    low, high = fig.axes[-1].get_ylim()
    shown = np.array([100] * 100 + [200] * 100 + [300] * 100, float)
    assert (low, high) == tuple(np.percentile(shown, [2, 98]))
    assert_colour(pixel(img, box, *CENTRES["ne"]), expected("viridis", 100, low, high))


def test_no_nodata_no_legend():
    fig = plot(blocks(-1.0, 0.0, 1.0, 0.5), dpi=60)
    assert not fig.legends


def test_other_data_gets_a_sequential_map_between_the_2nd_and_98th_percentiles():
    values = np.linspace(0, 100, 400).reshape(20, 20)
    values[0, 0] = 1e6  # one outlier does not wash the picture out
    da = blocks(0, 0, 0, 0, name="reflectance").copy(data=values)
    fig = plot(da, dpi=80)
    low, high = np.percentile(values, [2, 98])
    assert fig.axes[-1].get_ylim() == pytest.approx((low, high))
    img, box = render(fig), image_box(fig)
    row, col = 12, 7  # pixel centre at (7.5/20, 12.5/20) of the image
    got = pixel(img, box, 7.5 / 20, 12.5 / 20)
    assert_colour(got, expected("viridis", values[row, col], low, high))


def test_robust_false_takes_the_minimum_and_maximum():
    values = np.linspace(0, 100, 400).reshape(20, 20)
    fig = plot(blocks(0, 0, 0, 0, name="b").copy(data=values), robust=False, dpi=60)
    assert fig.axes[-1].get_ylim() == (0.0, 100.0)


def test_days_of_year_are_sequential_with_a_day_of_year_colour_bar():
    leaf = blocks(80.0, 100.0, 120.0, np.nan, name="first_leaf")
    leaf.attrs = {"long_name": "first leaf day of year (Extended Spring Indices)"}
    leaf.attrs["units"] = "day of year"
    fig = plot(leaf, dpi=60)
    bar = fig.axes[-1]
    assert bar.get_ylabel() == "day of year"
    assert bar.get_ylim() == (80.0, 120.0)
    img, box = render(fig), image_box(fig)
    assert_colour(pixel(img, box, *CENTRES["ne"]), expected("viridis", 100, 80, 120))
    assert_colour(pixel(img, box, *CENTRES["se"]), nodata_colour(fig))


def test_spring_index_output_is_drawn_as_days_of_year():
    from lazyraster.testing import daymet_like

    si = daymet_like(2021).geo.spring_index_dataset().sel(plant="average")
    fig = si.geo.plot(variable="first_bloom")
    assert fig.axes[-1].get_ylabel() == "day of year"


def test_cmap_vmin_and_vmax_override_the_choice():
    fig = plot(blocks(-1.0, 0.0, 1.0, 0.5), cmap="magma", vmin=0, vmax=2, dpi=60)
    img, box = render(fig), image_box(fig)
    for where, value in (("nw", -1.0), ("ne", 0.0), ("sw", 1.0), ("se", 0.5)):
        assert_colour(pixel(img, box, *CENTRES[where]), expected("magma", value, 0, 2), where)


def series(n, *, chunks=None):
    """``n`` daily steps of a 20 x 20 NDVI raster, step ``t`` constant ``t / 10 - 0.5``."""
    values = (np.arange(n)[:, None, None] / 10 - 0.5) * np.ones((n, 20, 20))
    da = blocks(0, 0, 0, 0).expand_dims(time=pd.date_range("2023-05-01", periods=n))
    da = da.copy(data=values)
    return da.chunk(chunks) if chunks else da


def test_one_panel_per_time_step_up_to_max_panels_and_the_figure_says_how_many_are_left():
    fig = plot(series(9), max_panels=4, dpi=50)
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == [f"2023-05-0{d}" for d in range(1, 5)]
    heading = fig.get_suptitle()
    assert "4 of 9 time steps shown, 5 left out" in heading and "max_panels" in heading
    img = render(fig)
    for t in range(4):
        got = pixel(img, image_box(fig, fig.axes.index(panels[t])), 0.5, 0.5)
        assert_colour(got, expected("RdYlGn", t / 10 - 0.5, -1, 1), f"panel {t}")


def test_all_panels_shown_no_note():
    fig = plot(series(3), dpi=50)
    assert fig.get_suptitle() == "ndvi"
    assert len([ax for ax in fig.axes if ax.images]) == 3


def test_time_picks_steps_by_date_and_by_month():
    da = series(40)
    fig = plot(da, time="2023-05-03", dpi=50)
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["2023-05-03"]
    fig = plot(da, time=["2023-06-02", "2023-05-02"], dpi=50)
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["2023-06-02", "2023-05-02"]
    fig = plot(da, time="2023-06", max_panels=20, dpi=20)
    assert len([ax for ax in fig.axes if ax.images]) == 9  # 2023-06-01 .. 09
    with pytest.raises(ValueError, match=r"no step '2024-01-01' in time \(it has 2023-05-01"):
        plot(da, time="2024-01-01")


def test_a_single_scene_panel_keeps_its_date():
    fig = plot(series(1), dpi=50)
    assert fig.axes[0].get_title() == "2023-05-01"


class ChunkLog:
    """Records which (time, y, x) chunks of a dask array were computed."""

    def __init__(self):
        self.seen = []
        self.lock = threading.Lock()

    def array(self, base):
        def record(block, block_info=None):
            with self.lock:
                self.seen.append(tuple(block_info[None]["chunk-location"]))
            return block

        return dsa.map_blocks(record, base, dtype=base.dtype, meta=np.array((), base.dtype))


def test_dask_input_computes_only_the_chunks_of_the_panels_shown():
    log = ChunkLog()
    lazy = series(10)
    lazy = lazy.copy(data=log.array(dsa.from_array(lazy.values, chunks=(1, 10, 10))))
    fig = plot(lazy, max_panels=3, dpi=50)
    assert log.seen, "nothing computed"
    assert sorted(set(log.seen)) == [(t, i, j) for t in range(3) for i in (0, 1) for j in (0, 1)]
    assert len(log.seen) == len(set(log.seen))  # one pass: each chunk computed once
    img = render(fig)
    got = pixel(img, image_box(fig, 2), 0.5, 0.5)
    assert_colour(got, expected("RdYlGn", 0.2 - 0.5, -1, 1))


def test_a_large_lazy_band_is_decimated_to_about_the_panel_size_before_computing():
    """A 10980 x 10980 band (480 MB as float32) is drawn from ~400 x 400 of its pixels."""
    n = 10980
    values = dsa.ones((n, n), chunks=(2048, 2048), dtype="float32") * 0.5
    x = 300000 + 10 * (np.arange(n) + 0.5)
    y = 7000000 - 10 * (np.arange(n) + 0.5)
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}, name="ndvi")
    largest = []

    class Sizes(dask.callbacks.Callback):
        def _posttask(self, key, result, dsk, state, id):
            largest.append(getattr(result, "nbytes", 0))

    with Sizes():
        fig = plot(da.rio.write_crs("EPSG:32633"), dpi=100)
    shown = fig.axes[0].images[0].get_array()
    assert 400 <= shown.shape[0] <= 800 and shown.shape == shown.shape[::-1]
    assert max(largest) <= 2048 * 2048 * 4  # no task result larger than one chunk
    assert fig.axes[0].get_xlim() == (300000.0, 300000.0 + 10 * n)  # the full extent
    img = render(fig)
    assert_colour(pixel(img, image_box(fig), 0.5, 0.5), expected("RdYlGn", 0.5, -1, 1))


def test_a_dataset_needs_a_variable_when_it_has_several():
    ds = xr.Dataset({"ndvi": blocks(0.5, 0.5, 0.5, 0.5), "evi": blocks(1, 1, 1, 1, name="evi")})
    with pytest.raises(MissingBandError, match="has ndvi, evi: pass variable="):
        plot(ds)
    with pytest.raises(MissingBandError, match=r"no variable 'nope'.*it has: ndvi, evi"):
        ds.geo.plot(variable="nope")
    a = render(ds.geo.plot(variable="ndvi", dpi=50))
    b = render(plot(ds["ndvi"], dpi=50))
    np.testing.assert_array_equal(a, b)


def test_several_variables_side_by_side_each_with_its_colours():
    ds = xr.Dataset(
        {"ndvi": blocks(0.5, 0.5, 0.5, 0.5), "height": blocks(0, 10, 20, 30, name="height")}
    )
    fig = ds.geo.plot(variable=["ndvi", "height"], dpi=50)
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["ndvi", "height"]
    img = render(fig)
    ndvi_at = pixel(img, image_box(fig, fig.axes.index(panels[0])), 0.5, 0.5)
    assert_colour(ndvi_at, expected("RdYlGn", 0.5, -1, 1))
    low, high = np.percentile([0] * 100 + [10] * 100 + [20] * 100 + [30] * 100, [2, 98])
    height_at = pixel(img, image_box(fig, fig.axes.index(panels[1])), 0.75, 0.25)
    assert_colour(height_at, expected("viridis", 10, low, high))


def test_the_accessor_is_the_function():
    da = blocks(-1.0, 0.0, 1.0, 0.5)
    np.testing.assert_array_equal(render(da.geo.plot(dpi=50)), render(plot(da, dpi=50)))


def test_ax_draws_into_the_users_axes():
    from matplotlib.figure import Figure

    mine = Figure(figsize=(4, 4), dpi=60)
    ax = mine.subplots()
    assert plot(blocks(-1.0, 0.0, 1.0, np.nan), ax=ax) is mine
    img = render(mine)
    box = image_box(mine)
    assert_colour(pixel(img, box, *CENTRES["sw"]), expected("RdYlGn", 1.0, -1, 1))
    with pytest.raises(ValueError, match="ax= takes one panel and there are 3"):
        plot(series(3), ax=mine.subplots())


def test_more_than_one_dim_besides_y_and_x_names_the_fix():
    da = series(2).expand_dims(plant=["lilac", "average"])
    with pytest.raises(ValueError, match=r"select the others first, e.g. .sel\(plant='lilac'\)"):
        plot(da)


def test_colour_limits_the_wrong_way_round_are_refused():
    assert plot(blocks(0.0, 0.1, 0.2, 0.3), vmin=0.5).axes[-1].get_ylim() == (0.5, 1.0)
    with pytest.raises(ValueError, match=r"colour limits 2.0 .. 1.0: give vmin= below vmax="):
        plot(blocks(0.0, 0.1, 0.2, 0.3), vmin=2)


def test_max_panels_below_one_is_refused():
    with pytest.raises(ValueError, match="max_panels=0"):
        plot(series(2), max_panels=0)


def test_variables_of_one_kind_side_by_side_share_one_colour_scale():
    """First leaf 80..100 and first bloom 100..120: one "day of year" bar, 80..120."""
    doy = {"units": "day of year"}
    leaf = blocks(80.0, 80.0, 100.0, 100.0, name="first_leaf").assign_attrs(doy)
    bloom = blocks(100.0, 100.0, 120.0, 120.0, name="first_bloom").assign_attrs(doy)
    ds = xr.Dataset({"first_leaf": leaf, "first_bloom": bloom}).assign_coords(year=2021)
    fig = ds.geo.plot(variable=["first_leaf", "first_bloom"], dpi=50)
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["first_leaf year 2021", "first_bloom year 2021"]
    bars = [ax for ax in fig.axes if not ax.images]
    assert [bar.get_ylabel() for bar in bars] == ["day of year"]
    assert bars[0].get_ylim() == (80.0, 120.0)
    img = render(fig)
    at = pixel(img, image_box(fig, fig.axes.index(panels[1])), 0.5, 0.25)
    assert_colour(at, expected("viridis", 100.0, 80, 120), "bloom on the shared scale")


def test_irregular_latitudes_are_drawn_cell_by_cell_north_up():
    """lat/lon dims, latitudes ascending and unevenly spaced: each cell between midpoints."""
    lat = np.array([60.0, 60.5, 61.5, 63.0])  # south first, uneven
    lon = np.array([20.0, 21.0, 22.0, 23.0])
    values = np.array([[1.0] * 4, [1.0] * 4, [-1.0] * 4, [-1.0] * 4])  # green south, red north
    da = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="ndvi")
    fig = plot(da, dpi=60)
    ax = fig.axes[0]
    assert not ax.images and ax.collections  # a mesh of cells, not an image
    # edges: 59.75 | 60.25 | 61.0 | 62.25 | 63.75
    assert ax.get_ylim() == (59.75, 63.75)
    img = render(fig)
    height = fig.bbox.height
    box = ax.get_window_extent()

    def at(lat_value):
        row = int(height - box.y0 - (lat_value - 59.75) / 4.0 * box.height)
        return img[row, int(box.x0 + box.width / 2)]

    assert_colour(at(60.0), expected("RdYlGn", 1.0, -1, 1), "southern cell")
    assert_colour(at(62.0), expected("RdYlGn", -1.0, -1, 1), "cell from 61.0 to 62.25")
    assert_colour(at(61.1), expected("RdYlGn", -1.0, -1, 1), "just north of the 61.0 edge")
    assert_colour(at(60.9), expected("RdYlGn", 1.0, -1, 1), "just south of the 61.0 edge")


IPYTHON = """
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
result = shell.run_cell(
    "import numpy as np, xarray as xr, lazyraster\\n"
    "fig = xr.DataArray(np.zeros((4, 4)), dims=('y', 'x'), name='ndvi').geo.plot()"
)
assert result.success, result.error_in_exec
data, _ = shell.display_formatter.format(shell.user_ns["fig"])
import matplotlib.pyplot as plt
print(sorted(data), plt.get_fignums())
"""


def test_in_a_notebook_the_figure_shows_as_an_image_and_is_not_kept_by_pyplot():
    """IPython with the notebook's inline backend: a returned figure renders as PNG."""
    done = subprocess.run(
        [sys.executable, "-c", IPYTHON],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "['image/png', 'text/plain'] []"


@pytest.mark.parametrize("transform", [True, False], ids=["transform", "coordinates"])
def test_a_raster_one_pixel_wide_has_square_pixels_in_map_units(transform):
    """Five pixels of 10 m down one column: the image is 10 m wide and five times as tall."""
    values = np.linspace(0.0, 1.0, 5).reshape(5, 1)
    da = xr.DataArray(
        values, dims=("y", "x"), coords={"y": 7000045 - 10 * np.arange(5.0), "x": [500005.0]}
    ).rio.write_crs("EPSG:32633")
    if transform:
        da = da.rio.write_transform(Affine(10, 0, 500000, 0, -10, 7000050))
    fig = plot(da.rename("ndvi"), dpi=80)
    assert fig.axes[0].images[0].get_extent() == [500000.0, 500010.0, 7000000.0, 7000050.0]
    img, box = render(fig), image_box(fig)
    left, top, right, bottom = box
    assert abs((bottom - top) - 5 * (right - left)) <= 2  # the PNG's image: 1 x 5 squares
    for row, value in enumerate(values[:, 0]):
        got = pixel(img, box, 0.5, (row + 0.5) / 5)
        assert_colour(got, expected("RdYlGn", value, -1, 1), f"row {row}")


def test_a_crs_without_a_name_is_labelled_by_its_projection_method():
    laea = "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m"
    wkt = pyproj.CRS.from_proj4(laea).to_wkt()
    assert pyproj.CRS.from_wkt(wkt).name == "unknown"  # as a PROJ string gives it
    undefined = wkt.replace('PROJCRS["unknown"', 'PROJCRS["undefined"')
    for text in (wkt, undefined):
        ax = plot(blocks(1.0, 2.0, 3.0, 4.0, name="t").rio.write_crs(text), dpi=40).axes[0]
        assert ax.get_xlabel() == "x [m], Lambert Azimuthal Equal Area"
        assert ax.get_ylabel() == "y [m], Lambert Azimuthal Equal Area"


@pytest.mark.parametrize("key", ["_FillValue", "nodata"])
def test_a_nan_nodata_on_an_integer_raster_is_no_nodata(key):
    da = blocks(100, 200, 300, 400, name="dn", dtype="int16")
    da.attrs[key] = np.nan
    fig = plot(da, dpi=60)
    assert not fig.legends  # no pixel is nodata
    img, box = render(fig), image_box(fig)
    low, high = fig.axes[-1].get_ylim()
    assert (low, high) == tuple(np.percentile(np.repeat([100, 200, 300, 400], 100), [2, 98]))
    for where, value in zip(CENTRES, (100, 200, 300, 400), strict=True):
        assert_colour(pixel(img, box, *CENTRES[where]), expected("viridis", value, low, high))


def test_dates_are_refused_with_the_day_of_year_named():
    dates = np.array(["2021-03-01", "2021-04-01", "2021-05-01", "NaT"], "datetime64[ns]")
    da = blocks(0, 1, 2, 3, name="leaf_date", dtype="int64").copy(data=np.zeros((20, 20), "M8[ns]"))
    da.values[:] = dates[0]
    with pytest.raises(TypeError, match=r"leaf_date holds dates .*\.dt\.dayofyear"):
        plot(da)
    fig = plot(da.dt.dayofyear.rename("day"), dpi=40)  # the fix named works
    assert fig.axes[0].images[0].get_array().min() == 60  # 1 March 2021


@pytest.mark.parametrize(("degrees", "n"), [(30.0, 10), (180.0, 10), (30.0, 300)])
def test_a_rotated_geotiff_is_drawn_in_map_coordinates_where_its_pixels_lie(tmp_path, degrees, n):
    """Also decimated (n=300: every 2nd pixel drawn), and turned by 180 degrees (south up)."""
    import rasterio
    import rioxarray

    values = blocks(-1.0, 0.0, 1.0, 0.5, n=n).values
    transform = Affine(10, 0, 500000, 0, -10, 7000000) * Affine.rotation(degrees)
    path = tmp_path / "rotated.tif"
    profile = {"driver": "GTiff", "width": 2 * n, "height": 2 * n, "count": 1, "dtype": "float64"}
    with rasterio.open(path, "w", crs="EPSG:32633", transform=transform, **profile) as dst:
        dst.write(values, 1)
    da = rioxarray.open_rasterio(path).isel(band=0).rename("ndvi")
    fig = plot(da, dpi=60)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x [m], EPSG:32633"
    img = render(fig)
    corners = [transform * (c, r) for c in (0, 2 * n) for r in (0, 2 * n)]
    xs, ys = zip(*corners, strict=True)
    assert ax.get_xlim() == pytest.approx((min(xs), max(xs)))
    assert ax.get_ylim() == pytest.approx((min(ys), max(ys)))
    height = fig.bbox.height
    centres = [(n / 2, n / 2), (3 * n / 2, n / 2), (n / 2, 3 * n / 2), (3 * n / 2, 3 * n / 2)]
    for (col, row), value in zip(centres, (-1.0, 0.0, 1.0, 0.5), strict=True):
        x, y = ax.transData.transform(transform * (col, row))  # a block's centre, by hand
        got = img[int(height - y), int(x)]
        assert_colour(got, expected("RdYlGn", value, -1, 1), f"block at column {col}, row {row}")
