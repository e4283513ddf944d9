"""Focal statistics against a plain-loop reference, scipy.ndimage and analytic cases."""

from __future__ import annotations

import warnings

import dask.array as dsa
import numpy as np
import pytest
import scipy.ndimage as ndi
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.strategies import chunked_plane, seeds

import lazyraster  # noqa: F401  (registers .geo)
from lazyraster import focal
from lazyraster.testing import raise_if_dask_computes, synthetic_raster

STATS = ["sum", "mean", "std", "min", "max", "median"]
SHAPES = ["square", "circle"]
EDGES = ["nodata", "reflect", "nearest"]


def run(stat, obj, **kwargs):
    return getattr(focal, f"focal_{stat}")(obj, **kwargs)


# --------------------------------------------------------------------------------------
# Independent references
# --------------------------------------------------------------------------------------


def offsets(size, shape):
    r = size // 2
    return [
        (dy, dx)
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
        if shape == "square" or dy * dy + dx * dx <= r * r
    ]


def source_index(i, n, edge):
    """Index read for position ``i`` of an axis of length ``n``; None if outside (nodata)."""
    if 0 <= i < n:
        return i
    if edge == "nodata":
        return None
    if edge == "nearest":
        return min(max(i, 0), n - 1)
    m = i % (2 * n)  # reflect with the edge repeated: period 2n
    return m if m < n else 2 * n - 1 - m


def loop_reference(values, stat, *, size, shape, edge, min_count=1, ddof=0):
    """Slow plain-Python focal statistic: one list of valid values per pixel."""
    ny, nx = values.shape
    out = np.full((ny, nx), np.nan)
    window = offsets(size, shape)
    if min_count == "all":
        min_count = len(window)
    for i in range(ny):
        for j in range(nx):
            found = []
            for dy, dx in window:
                y = source_index(i + dy, ny, edge)
                x = source_index(j + dx, nx, edge)
                if y is None or x is None:
                    continue
                v = float(values[y, x])
                if v == v:
                    found.append(v)
            if not found or len(found) < min_count:
                continue
            if stat == "sum":
                out[i, j] = sum(found)
            elif stat == "mean":
                out[i, j] = sum(found) / len(found)
            elif stat == "std":
                if len(found) - ddof > 0:
                    mean = sum(found) / len(found)
                    ss = sum((v - mean) ** 2 for v in found)
                    out[i, j] = (ss / (len(found) - ddof)) ** 0.5
            elif stat == "min":
                out[i, j] = min(found)
            elif stat == "max":
                out[i, j] = max(found)
            else:
                found.sort()
                h = len(found) // 2
                out[i, j] = found[h] if len(found) % 2 else (found[h - 1] + found[h]) / 2
    return out


def footprint(size, shape):
    r = size // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy**2 + xx**2 <= r * r) if shape == "circle" else np.ones((size, size), bool)


def assert_close(actual, expected, rtol=1e-6):
    actual = np.asarray(actual, dtype=np.float64)
    scale = np.nanmax(np.abs(expected)) if np.isfinite(expected).any() else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(scale, 1.0))


# --------------------------------------------------------------------------------------
# Against the loop reference, on numpy and on unevenly chunked dask
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stat", STATS)
def test_matches_loop_reference(backend, stat, shape, edge):
    da = synthetic_raster((13, 17), nan_fraction=0.25, seed=3) * 10 - 2
    expected = loop_reference(da.values, stat, size=5, shape=shape, edge=edge, min_count=2)
    result = run(stat, backend(da), size=5, shape=shape, edge=edge, min_count=2)
    assert result.dtype == np.float32
    assert_close(result.values, expected)


@pytest.mark.parametrize("size", [1, 3, 7])
@pytest.mark.parametrize("stat", STATS)
def test_window_sizes_and_min_count_all(backend, stat, size):
    da = synthetic_raster((11, 9), nan_fraction=0.1, seed=size)
    kwargs = {"size": size, "shape": "circle", "edge": "nodata", "min_count": "all"}
    expected = loop_reference(da.values, stat, **kwargs)
    assert_close(run(stat, backend(da), **kwargs).values, expected)


@pytest.mark.parametrize("ddof", [0, 1])
def test_std_ddof(backend, ddof):
    da = synthetic_raster((10, 12), nan_fraction=0.3, seed=9)
    expected = loop_reference(da.values, "std", size=3, shape="square", edge="reflect", ddof=ddof)
    result = focal.focal_std(backend(da), size=3, edge="reflect", ddof=ddof)
    assert_close(result.values, expected)


# --------------------------------------------------------------------------------------
# Against scipy.ndimage where the semantics match (no NaN; scipy's "reflect"/"nearest")
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("edge", ["reflect", "nearest"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", [3, 9])
def test_scipy_filters(backend, size, shape, edge):
    da = synthetic_raster((30, 41), seed=size)
    values = da.values.astype(np.float64)
    fp = footprint(size, shape)
    kw = {"size": size, "shape": shape, "edge": edge}
    data = backend(da)
    mean = ndi.correlate(values, fp / fp.sum(), mode=edge)
    assert_close(focal.focal_mean(data, **kw).values, mean)
    assert_close(focal.focal_sum(data, **kw).values, ndi.correlate(values, fp * 1.0, mode=edge))
    assert_close(
        focal.focal_min(data, **kw).values, ndi.minimum_filter(values, footprint=fp, mode=edge)
    )
    assert_close(
        focal.focal_max(data, **kw).values, ndi.maximum_filter(values, footprint=fp, mode=edge)
    )
    assert_close(
        focal.focal_median(data, **kw).values, ndi.median_filter(values, footprint=fp, mode=edge)
    )
    std = ndi.generic_filter(values, np.std, footprint=fp, mode=edge)
    assert_close(focal.focal_std(data, **kw).values, std, rtol=1e-5)


def test_square_mean_matches_uniform_filter_and_not_mirror():
    da = synthetic_raster((20, 20), seed=1)
    values = da.values.astype(np.float64)
    result = focal.focal_mean(da, size=7, edge="reflect").values
    assert_close(result, ndi.uniform_filter(values, 7, mode="reflect"))
    # scipy's "mirror" does not repeat the edge pixel: a different mode
    assert not np.allclose(result, ndi.uniform_filter(values, 7, mode="mirror"))


def test_nodata_all_is_the_course_script_convolve(backend):
    """min_count="all" with edge="nodata" is convolve(k / k.sum(), constant NaN)."""
    da = synthetic_raster((40, 33), nan_fraction=0.01, seed=5)
    kernel = np.ones((9, 9)) / 81
    expected = ndi.convolve(da.values.astype(np.float64), kernel, mode="constant", cval=np.nan)
    result = focal.focal_mean(backend(da), size=9, min_count="all", edge="nodata")
    assert np.isnan(expected).any() and np.isfinite(expected).any()
    assert_close(result.values, expected)


# --------------------------------------------------------------------------------------
# Analytic cases
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("shape", SHAPES)
def test_constant_image(backend, shape, edge):
    values = np.full((15, 14), 273.15, dtype=np.float32)
    values[3, 4] = values[10, 2] = np.nan
    da = backend(xr.DataArray(values, dims=("y", "x")))
    kw = {"size": 5, "shape": shape, "edge": edge}
    for stat in ("mean", "min", "max", "median"):
        np.testing.assert_array_equal(run(stat, da, **kw), np.float32(273.15))
    np.testing.assert_array_equal(focal.focal_std(da, **kw), 0.0)


def test_sum_of_ones_counts_pixels_inside_the_image(backend):
    da = backend(xr.DataArray(np.ones((6, 7), np.float32), dims=("y", "x")))
    result = focal.focal_sum(da, size=3).values
    assert result[0, 0] == 4 and result[0, 3] == 6 and result[3, 3] == 9
    assert focal.focal_sum(da, size=3, shape="circle").values[0, 0] == 3
    np.testing.assert_array_equal(focal.focal_sum(da, size=3, edge="nearest"), 9)


def test_std_far_from_zero_keeps_precision(backend):
    """Values 1e6 +/- 1: naive float sums of squares would lose the variance."""
    rng = np.random.default_rng(0)
    values = (1e6 + rng.integers(-4, 5, size=(24, 30)) * 0.25).astype(np.float32)
    expected = ndi.generic_filter(values.astype(np.float64), np.std, size=9, mode="nearest")
    result = focal.focal_std(backend(xr.DataArray(values, dims=("y", "x"))), size=9, edge="nearest")
    np.testing.assert_allclose(result.values, expected, rtol=1e-5)


def window_reference(values, stat, size):
    """float64 nansum / nanmean / nanstd of every ``size`` x ``size`` window (edge nodata)."""
    r = size // 2
    padded = np.pad(values.astype(np.float64), r, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    count = (~np.isnan(windows)).sum(axis=(-2, -1))
    reduce = {"sum": np.nansum, "mean": np.nanmean, "std": np.nanstd}[stat]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
        out = reduce(windows, axis=(-2, -1))
    return np.where(count > 0, out, np.nan)


@pytest.mark.parametrize("stat", ["sum", "mean", "std"])
@pytest.mark.parametrize("long_axis", ["y", "x"])
def test_running_sums_stay_within_one_ulp_on_large_offsets(backend, stat, long_axis):
    """1e4 + variations of 0.05, 3000 pixels along the running sums: at most 1 float32 ulp.

    The kernels add and remove every pixel once along each running sum (down the columns,
    then along the rows), in float64: the accumulated rounding, about
    ``3000 * 81 * 2**-53 * 1e4``, stays far below half an ulp of float32 at 1e4 (0.0005),
    so the result is the float64 window statistic correctly rounded to float32, give or
    take that. The same sums in float32 (a summed-area table) miss by thousands of ulps.
    """
    rng = np.random.default_rng(7)
    shape = (3000, 24) if long_axis == "y" else (24, 3000)
    values = (1e4 + rng.uniform(-0.05, 0.05, shape)).astype(np.float32)
    values[rng.random(shape) < 0.2] = np.nan
    expected = window_reference(values, stat, 9)
    result = run(stat, backend(xr.DataArray(values, dims=("y", "x"))), size=9).values
    ulp = np.spacing(np.abs(expected).astype(np.float32)).astype(np.float64)
    assert np.array_equal(np.isnan(result), np.isnan(expected))
    assert np.nanmax(np.abs(result - expected) / ulp) <= 1.0
    if stat == "mean":  # what float32 accumulation would give: the bound has teeth
        table = np.pad(np.nan_to_num(values), ((5, 4), (5, 4))).cumsum(0).cumsum(1)
        counts = np.pad(~np.isnan(values), ((5, 4), (5, 4))).astype(np.float32)
        counts = counts.cumsum(0).cumsum(1)

        def box(t):
            return t[9:, 9:] - t[:-9, 9:] - t[9:, :-9] + t[:-9, :-9]

        float32_mean = box(table) / box(counts)
        assert table.dtype == np.float32
        assert np.nanmax(np.abs(float32_mean - expected) / ulp) > 100


def test_an_infinity_in_a_halo_only_switches_that_block(backend):
    """A block whose halo alone holds the infinity still follows numpy's rules there."""
    values = synthetic_raster((30, 26), seed=11, nan_fraction=0.2).values
    values[14, 12] = np.inf  # near a chunk edge of the uneven chunking
    values[29, 25] = -np.inf  # in the last row: it enters the running sums last
    da = backend(xr.DataArray(values, dims=("y", "x")))
    for stat in ("sum", "mean", "std"):
        expected = loop_reference(values, stat, size=5, shape="square", edge="nodata")
        with np.errstate(invalid="ignore"):
            assert_close(run(stat, da, size=5).values, expected)


def test_min_count_masks_sparse_windows(backend):
    values = np.full((7, 7), np.nan, dtype=np.float32)
    values[3, 3] = 5.0
    values[3, 4] = 7.0
    da = backend(xr.DataArray(values, dims=("y", "x")))
    mean1 = focal.focal_mean(da, size=3, min_count=1).values
    mean2 = focal.focal_mean(da, size=3, min_count=2).values
    assert mean1[2, 2] == 5.0 and mean1[3, 5] == 7.0 and mean1[3, 3] == 6.0
    assert np.isnan(mean2[2, 2]) and mean2[2, 3] == 6.0 and mean2[4, 4] == 6.0
    assert np.isnan(mean1[0, 0]) and np.isnan(focal.focal_sum(da, size=3).values[0, 0])
    assert focal.focal_median(da, size=3).values[3, 3] == 6.0


@pytest.mark.parametrize("shape", SHAPES)
def test_infinities_follow_numpy_and_do_not_spread(backend, shape):
    values = synthetic_raster((14, 16), seed=8, nan_fraction=0.2).values
    values[2, 3] = np.inf
    values[9, 10] = np.inf
    values[10, 11] = -np.inf
    da = backend(xr.DataArray(values, dims=("y", "x")))
    kw = {"size": 3, "shape": shape, "edge": "nodata"}
    for stat in STATS:
        expected = loop_reference(values, stat, **kw)
        with np.errstate(invalid="ignore"):
            assert_close(run(stat, da, **kw).values, expected)


def test_integer_input_gives_float32(backend):
    values = np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000
    da = backend(xr.DataArray(values, dims=("y", "x")))
    expected = ndi.uniform_filter(values.astype(np.float64), 3, mode="nearest")
    result = focal.focal_mean(da, size=3, edge="nearest")
    assert result.dtype == np.float32
    assert_close(result.values, expected)


# --------------------------------------------------------------------------------------
# Chunk edges: dask equals numpy for every chunking
# --------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=chunked_plane(),
    stat=st.sampled_from(STATS),
    size=st.sampled_from([1, 3, 5, 9, 15]),
    shape=st.sampled_from(SHAPES),
    edge=st.sampled_from(EDGES),
    min_count=st.integers(1, 5),
)
def test_dask_equals_numpy_for_any_chunking(case, stat, size, shape, edge, min_count):
    shape2, chunks, seed, nan_fraction = case
    da = synthetic_raster(shape2, seed=seed, nan_fraction=nan_fraction) * 100
    min_count = min(min_count, len(offsets(size, shape)))
    kw = {"size": size, "shape": shape, "edge": edge, "min_count": min_count}
    expected = run(stat, da, **kw)
    lazy = run(stat, da.chunk({"y": chunks[0], "x": chunks[1]}), **kw)
    assert lazy.dtype == np.float32
    computed = lazy.compute()
    assert computed.dtype == np.float32
    np.testing.assert_allclose(computed.values, expected.values, rtol=1e-6, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    ny=st.integers(1, 12),
    nx=st.integers(1, 12),
    seed=seeds,
    nan_fraction=st.sampled_from([0.0, 0.2, 0.6]),
    stat=st.sampled_from(STATS),
    size=st.sampled_from([1, 3, 5, 7]),
    shape=st.sampled_from(SHAPES),
    edge=st.sampled_from(EDGES),
    min_count=st.integers(1, 6),
)
def test_random_cases_match_loop_reference(
    ny, nx, seed, nan_fraction, stat, size, shape, edge, min_count
):
    da = synthetic_raster((ny, nx), seed=seed, nan_fraction=nan_fraction) * 50 - 10
    min_count = min(min_count, len(offsets(size, shape)))
    kw = {"size": size, "shape": shape, "edge": edge, "min_count": min_count}
    expected = loop_reference(da.values, stat, **kw)
    assert_close(run(stat, da, **kw).values, expected)


@pytest.mark.parametrize("stat", STATS)
def test_chunks_thinner_than_radius_and_tiny_images(stat):
    da = synthetic_raster((23, 31), nan_fraction=0.2, seed=2)
    kw = {"size": 11, "edge": "reflect"}
    expected = run(stat, da, **kw).values
    assert_close(run(stat, da.chunk({"y": 1, "x": 2}), **kw).values, expected)
    tiny = synthetic_raster((3, 40), seed=4)  # 3 rows, radius 5: reflected several times
    reference = loop_reference(tiny.values, stat, size=11, shape="square", edge="reflect")
    assert_close(run(stat, tiny, **kw).values, reference)
    assert_close(run(stat, tiny.chunk({"y": 1, "x": 7}), **kw).values, reference)


def test_leading_dims_and_transposed_input(backend):
    base = synthetic_raster((12, 10), nan_fraction=0.1)
    cube = xr.concat([base, base * 2, base + 1], dim="time").assign_coords(time=[1, 2, 3])
    result = focal.focal_mean(backend(cube), size=5, shape="circle")
    for t in range(3):
        expected = loop_reference(cube[t].values, "mean", size=5, shape="circle", edge="nodata")
        assert_close(result[t].values, expected)
    flipped = focal.focal_max(backend(base.transpose("x", "y")), size=3)
    assert flipped.dims == ("x", "y")
    xr.testing.assert_equal(flipped.transpose("y", "x"), focal.focal_max(base, size=3))


# --------------------------------------------------------------------------------------
# Laziness, metadata, accessor, Datasets
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stat", STATS)
def test_lazy_until_computed(stat):
    da = synthetic_raster((40, 50), nan_fraction=0.1, chunks={"y": 13, "x": 17}).astype("float64")
    with raise_if_dask_computes():
        lazy = run(stat, da, size=7, shape="circle", edge="reflect")
    assert isinstance(lazy.data, dsa.Array)
    assert lazy.dtype == np.float32
    assert lazy.data._meta.dtype == np.float32
    with raise_if_dask_computes(max_computes=1):
        computed = lazy.compute()
    assert computed.dtype == np.float32
    assert_close(computed.values, run(stat, da.compute(), size=7, shape="circle", edge="reflect"))


def test_dataset_stays_lazy():
    ds = xr.Dataset(
        {"red": synthetic_raster((20, 24), seed=1), "nir": synthetic_raster((20, 24), seed=2)}
    ).chunk({"y": 7, "x": 9})
    with raise_if_dask_computes():
        result = ds.geo.focal_std(size=5, edge="reflect")
    assert all(isinstance(v.data, dsa.Array) for v in result.data_vars.values())
    expected = focal.focal_std(ds.compute(), size=5, edge="reflect")
    xr.testing.assert_allclose(result.compute(), expected, rtol=1e-6)


def test_metadata_and_accessor(backend):
    da = synthetic_raster((16, 18), nan_fraction=0.1, name="red")
    da.attrs = {"units": "1", "long_name": "red reflectance"}
    data = backend(da)
    result = data.geo.focal_mean(size=5)
    xr.testing.assert_identical(result, focal.focal_mean(data, size=5))
    assert result.name == "red" and result.attrs == da.attrs
    assert "spatial_ref" in result.coords and result.rio.crs == da.rio.crs
    np.testing.assert_array_equal(result.x, da.x)


def test_dataset_applies_to_each_variable(backend):
    ds = xr.Dataset(
        {
            "red": synthetic_raster((12, 14), seed=1, nan_fraction=0.2),
            "nir": synthetic_raster((12, 14), seed=2),
            "scale": ((), 2.0),
        },
        attrs={"title": "patch"},
    )
    result = backend(ds).geo.focal_median(size=3, edge="nearest")
    assert result.attrs == {"title": "patch"} and float(result["scale"]) == 2.0
    for name in ("red", "nir"):
        assert result[name].dtype == np.float32
        expected = loop_reference(ds[name].values, "median", size=3, shape="square", edge="nearest")
        assert_close(result[name].values, expected)
    assert "spatial_ref" in result.coords


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": 4}, ValueError, "odd positive integer"),
        ({"size": 0}, ValueError, "odd positive integer"),
        ({"size": 2001}, ValueError, "at most 1447"),
        ({"size": 3.0}, TypeError, "odd integer"),
        ({"shape": "disk"}, ValueError, "shape must be one of"),
        ({"edge": "mirror"}, ValueError, "edge must be one of"),
        ({"min_count": 10}, ValueError, "between 1 and 9"),
        ({"min_count": 0}, ValueError, "between 1 and 9"),
        ({"min_count": "most"}, TypeError, "min_count"),
    ],
)
def test_bad_options_name_the_fix(kwargs, error, match):
    with pytest.raises(error, match=match):
        focal.focal_mean(synthetic_raster((5, 5)), **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="two spatial dims"):
        focal.focal_mean(xr.DataArray(np.ones(5), dims="x"))
    with pytest.raises(TypeError, match="astype"):
        focal.focal_mean(xr.DataArray(np.ones((3, 3), complex), dims=("y", "x")))
    with pytest.raises(TypeError, match=r"xr\.DataArray"):
        focal.focal_mean(np.ones((3, 3)))
    with pytest.raises(ValueError, match="ddof"):
        focal.focal_std(synthetic_raster((5, 5)), ddof=-1)
