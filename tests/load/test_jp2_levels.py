"""JPEG2000 bands: read by many threads at once, and at the resolution level a coarser
grid needs.

References are plain rasterio: a single-threaded read of the file, or the JP2 opened at
the level's ``overview_level`` and warped onto the output grid by
:class:`rasterio.vrt.WarpedVRT` with the same resampling and nodata.
"""

from __future__ import annotations

import dask
import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from tests.load._support import TRANSFORM, make_item, write_raster

import lazyraster

ROWS, COLS = 600, 520  # 10 m pixels; levels at 20 m (0) and 40 m (1)


def _jp2(folder, swath_edge: bool):
    """A 10 m uint16 JP2 without nodata tag, smooth and noisy; with ``swath_edge``, DN 0
    (nodata in the catalog, as ESA's) beyond a slanted edge and in a corner block."""
    rng = np.random.default_rng(18)
    rows, cols = np.mgrid[:ROWS, :COLS]
    dn = 2000 + 800 * np.sin(rows / 37) * np.cos(cols / 23) + rng.normal(0, 150, (ROWS, COLS))
    dn = np.clip(dn, 1, 65535).astype(np.uint16)
    if swath_edge:
        dn[:90, :70] = 0
        dn[cols > 0.4 * rows + 380] = 0
    path = write_raster(folder / "B04.jp2", dn[None], driver="JP2OpenJPEG")
    with rasterio.open(path) as src:
        assert src.overviews(1)[:2] == [2, 4]
    return path


@pytest.fixture(scope="module")
def band(tmp_path_factory):
    """A JP2 whose every pixel is valid (no nodata in the file or the catalog)."""
    return _jp2(tmp_path_factory.mktemp("jp2"), swath_edge=False)


@pytest.fixture(scope="module")
def edged(tmp_path_factory):
    """A JP2 with nodata 0 beyond a swath edge."""
    return _jp2(tmp_path_factory.mktemp("jp2-edge"), swath_edge=True)


def warped(path, *, resolution: float, resampling: str, level: int | None) -> np.ndarray:
    """rasterio's warp of the JP2 (at ``level``, None: full resolution) onto the grid
    ``load(resolution=...)`` makes, DN 0 as NaN."""
    left, top = TRANSFORM.c, TRANSFORM.f
    width = int(np.ceil(COLS * 10 / resolution))
    height = int(np.ceil(ROWS * 10 / resolution))
    transform = rasterio.transform.from_origin(left, top, resolution, resolution)
    options = {} if level is None else {"overview_level": level}
    with (
        rasterio.open(path, **options) as src,
        WarpedVRT(
            src,
            crs=src.crs,
            transform=transform,
            width=width,
            height=height,
            resampling=Resampling[resampling],
            src_nodata=0,
            nodata=0,
        ) as vrt,
    ):
        dn = vrt.read(1)
    out = dn.astype(np.float32)
    out[dn == 0] = np.nan
    return out


def load(path, chunks, nodata=None, **options):
    asset = {"href": path} | ({} if nodata is None else {"raster:bands": [{"nodata": nodata}]})
    return lazyraster.load([make_item("a", {"B04": asset})], chunks=chunks, **options).B04[0]


@pytest.mark.parametrize("chunks", [None, {"y": 37, "x": 50}])
def test_eight_threads_load_the_native_grid_as_rasterio_reads_it(edged, chunks):
    with rasterio.open(edged) as src:
        dn = src.read(1)
    expected = dn.astype(np.float32)
    expected[dn == 0] = np.nan
    with dask.config.set(scheduler="threads", num_workers=8):
        got = load(edged, chunks, nodata=0).values
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("chunks", [None, {"y": 37, "x": 50}])
@pytest.mark.parametrize(
    "resolution,resampling,level",
    [(20, "average", 0), (30, "bilinear", 0), (40, "average", 1), (60, "cubic", 1)],
)
def test_a_coarser_grid_reads_the_matching_level(band, chunks, resolution, resampling, level):
    got = load(band, chunks, resolution=resolution, resampling=resampling)
    assert got.rio.transform().a == resolution
    expected = warped(band, resolution=resolution, resampling=resampling, level=level)
    np.testing.assert_array_equal(got.values, expected)
    full = warped(band, resolution=resolution, resampling=resampling, level=None)
    assert got.shape == full.shape and not np.array_equal(got.values, full, equal_nan=True)


@pytest.mark.parametrize("chunks", [None, {"y": 37, "x": 50}])
@pytest.mark.parametrize(
    "resolution,resampling", [(20, "average"), (30, "bilinear"), (60, "average"), (60, "cubic")]
)
def test_a_band_with_nodata_reads_every_pixel(edged, chunks, resolution, resampling):
    """A level blends the nodata beyond a swath edge into the valid pixels beside it
    (values of a few DN, or far from either side, where rasterio's nodata-aware warp of
    every pixel leaves nodata out): with nodata, the level is not read."""
    got = load(edged, chunks, nodata=0, resolution=resolution, resampling=resampling)
    expected = warped(edged, resolution=resolution, resampling=resampling, level=None)
    np.testing.assert_array_equal(got.values, expected)
    level = warped(edged, resolution=resolution, resampling=resampling, level=0)
    assert not np.array_equal(level, expected, equal_nan=True)  # the level would differ


@pytest.mark.parametrize("chunks", [None, {"y": 37, "x": 50}])
@pytest.mark.parametrize("resampling", ["nearest", "mode"])
def test_resamplings_that_pick_values_read_every_pixel(band, chunks, resampling):
    """A level is the wavelet's low-pass band: nearest and mode (classes of SCL) must not
    see it."""
    got = load(band, chunks, resolution=60, resampling=resampling)
    expected = warped(band, resolution=60, resampling=resampling, level=None)
    np.testing.assert_array_equal(got.values, expected)


@pytest.mark.parametrize("resolution", [10, 15])
def test_a_grid_less_than_twice_as_coarse_reads_every_pixel(band, resolution):
    got = load(band, {"y": 64, "x": 45}, resolution=resolution, resampling="average")
    expected = warped(band, resolution=resolution, resampling="average", level=None)
    np.testing.assert_array_equal(got.values, expected)
