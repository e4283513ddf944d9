"""Spectral indices: every catalogue formula against an independent evaluation.

The reference here is a small recursive evaluator over Python's own ``ast`` in numpy
float64, written for this file; it shares no code with ``lazyraster._expression``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.strategies import chunking, index_formulas, seeds

import lazyraster
from lazyraster import indices as ix
from lazyraster.errors import MissingBandError
from lazyraster.testing import raise_if_dask_computes, synthetic_raster

DATA = Path(__file__).parents[1] / "data"
CATALOGUE = Path(ix.__file__).parents[1] / "data" / "spectral-indices"
RAW = json.loads((CATALOGUE / "spectral-indices-dict.json").read_text())["SpectralIndices"]
DEFAULTS = {
    k: v["default"] for k, v in json.loads((CATALOGUE / "constants.json").read_text()).items()
}
# Constants without a catalogue default: values a user would pass (centre wavelengths of
# Sentinel-2 in nm; a photosynthetically active radiation).
REQUIRED = {
    "PAR": 1500.0,
    "lambdaG": 560.0,
    "lambdaR": 665.0,
    "lambdaN": 842.0,
    "lambdaN2": 865.0,
    "lambdaS1": 1610.0,
    "lambdaS2": 2190.0,
}
SIGMA = 0.5


# --------------------------------------------------------------------------- reference


def reference(formula: str, env: dict[str, np.ndarray | float]) -> np.ndarray:
    """Evaluate ``formula`` in float64 with the documented NaN rules; float32 out."""

    def ev(node: ast.AST) -> np.ndarray | float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.UnaryOp):
            assert isinstance(node.op, ast.USub)
            return -ev(node.operand)
        if isinstance(node, ast.BinOp):
            a = np.asarray(ev(node.left), dtype=np.float64)
            b = np.asarray(ev(node.right), dtype=np.float64)
            op = type(node.op)
            if op is ast.Add:
                return a + b
            if op is ast.Sub:
                return a - b
            if op is ast.Mult:
                return a * b
            if op is ast.Div:
                r = a / b
            else:
                assert op is ast.Pow
                r = a**b
            return np.where(np.isfinite(r) | np.isnan(r), r, np.nan)
        raise AssertionError(f"unexpected node {ast.dump(node)}")

    with np.errstate(all="ignore"):
        value = np.asarray(ev(ast.parse(formula, mode="eval")), dtype=np.float64)
        out = value.astype(np.float32)
    out[~np.isfinite(out)] = np.nan
    return out


def rbf(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    return np.exp(-((np.asarray(a, np.float64) - b) ** 2) / (2 * SIGMA**2))


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def patch() -> xr.Dataset:
    """The real Sentinel-2 patch as reflectance, plus bands derived from it.

    ``blue``, ``green``, ``red`` and ``nir`` are the real B02, B03, B04, B08. The
    catalogue also needs bands the patch lacks; they are made from the real ones by
    fixed, realistic-looking combinations so that every formula meets real texture.
    """
    z = np.load(DATA / "sentinel2_10m_300px.npz")
    refl = {
        name: z[key].astype(np.float32) / np.float32(10000)
        for name, key in [("blue", "B02"), ("green", "B03"), ("red", "B04"), ("nir", "B08")]
    }
    b, g, r, n = refl["blue"], refl["green"], refl["red"], refl["nir"]
    derived = {
        "coastal": 0.9 * b + 0.01,
        "green05": 0.95 * g + 0.05 * b,
        "yellow": 0.5 * g + 0.5 * r,
        "rededge071": 0.7 * r + 0.3 * n,
        "rededge075": 0.4 * r + 0.6 * n,
        "rededge078": 0.15 * r + 0.85 * n,
        "nir08": 1.02 * n,
        "nir09": 0.8 * n + 0.02,
        "swir16": 0.45 * n + 0.5 * r + 0.03,
        "swir22": 0.2 * n + 0.6 * r + 0.01,
        "lwir": 290.0 + 20.0 * r,
        "lwir11": 290.0 + 18.0 * r,
        "lwir12": 289.0 + 17.0 * r,
        "vv": 0.05 + 0.2 * n,
        "vh": 0.01 + 0.05 * n,
        "hh": 0.06 + 0.15 * g,
        "hv": 0.012 + 0.04 * g,
    }
    variables = {**refl, **{k: v.astype(np.float32) for k, v in derived.items()}}
    ds = xr.Dataset(
        {k: (("y", "x"), v) for k, v in variables.items()},
        coords={"y": np.arange(300.0), "x": np.arange(300.0)},
        attrs={"platform": "sentinel-2"},
    )
    return ds


# Symbol -> variable as the catalogue's bands.json states it (STAC common names), and
# radar polarisations by their lower-case names.
SYMBOL_VAR = {
    sym: entry["common_name"]
    for sym, entry in json.loads((CATALOGUE / "bands.json").read_text()).items()
} | {"VV": "vv", "VH": "vh", "HH": "hh", "HV": "hv"}


def reference_env(ds: xr.Dataset) -> dict[str, np.ndarray | float]:
    env: dict[str, np.ndarray | float] = {
        sym: ds[var].values.astype(np.float64) for sym, var in SYMBOL_VAR.items()
    }
    env.update({k: float(v) for k, v in DEFAULTS.items() if v is not None})
    env.update(REQUIRED)
    for entry in RAW.values():
        for sym in entry["bands"]:
            if sym.startswith("k") and sym not in env:  # kNN, kNR, kNL, ...
                env[sym] = rbf(env[sym[1]], env[sym[2:]])
    return env


def constants_for(name: str) -> dict[str, float]:
    return {k: v for k, v in REQUIRED.items() if k in RAW[name]["bands"]}


def sensitivity(formula: str, env: dict, expected: np.ndarray) -> np.ndarray:
    """First-order bound of how much the result moves when each input moves 4 ulps.

    The kernel computes in float32, so where a formula is ill-conditioned (a ratio of
    two normalized differences near a zero denominator, say) its rounding errors are
    amplified as much as an input perturbation of that size is. The bound sums the
    change from perturbing each array input on its own.
    """
    used = {n.id for n in ast.walk(ast.parse(formula, mode="eval")) if isinstance(n, ast.Name)}
    total = np.zeros(np.shape(expected))
    for key in used:
        if not isinstance(env[key], np.ndarray):
            continue
        moved = {**env, key: env[key] * (1 + 2.0**-21)}
        with np.errstate(all="ignore"):
            total += np.abs(reference(formula, moved).astype(np.float64) - expected)
    return total


def assert_matches(
    actual: np.ndarray, expected: np.ndarray, name: str, sens: np.ndarray | None = None
) -> None:
    assert actual.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=name)
    ok = ~np.isnan(expected)
    # float32 arithmetic against a float64 reference: relative 1e-5, plus an absolute
    # allowance for values that are small differences of much larger terms, plus
    # (where given) the formula's own sensitivity to float32 rounding.
    scale = np.nanmax(np.abs(expected)) if ok.any() else 1.0
    atol = 1e-6 * max(scale, 1.0)
    if sens is not None:
        atol = atol + 4 * np.nan_to_num(sens[ok], nan=np.inf)
    got, want = actual[ok].astype(np.float64), expected[ok]
    bad = np.abs(got - want) > atol + 1e-5 * np.abs(want)
    assert not bad.any(), (
        f"{name}: {bad.sum()} of {bad.size} values differ, e.g. {got[bad][:3]} vs {want[bad][:3]}"
    )


# --------------------------------------------------------------------------- catalogue


def test_catalogue_is_complete_and_packaged():
    names = ix.list_indices()
    assert len(names) == len(RAW) == 280
    assert set(names) == set(RAW)
    info = ix.index_info("EVI")
    assert info.formula == RAW["EVI"]["formula"]
    assert info.constants == {"g": 2.5, "C1": 6.0, "C2": 7.5, "L": 1.0}
    assert set(info.bands) == {"N", "R", "B"}
    assert (CATALOGUE / "LICENSE-spyndex-MIT.txt").is_file()


@pytest.mark.parametrize("name", sorted(RAW))
def test_every_formula_matches_independent_evaluation(patch, name):
    kernel = "RBF" if RAW[name]["application_domain"] == "kernel" else None
    got = ix.index(patch, name, kernel=kernel, **constants_for(name))
    env = reference_env(patch)
    expected = np.broadcast_to(reference(RAW[name]["formula"], env), got.shape)
    sens = np.broadcast_to(sensitivity(RAW[name]["formula"], env, expected), got.shape)
    assert got.name == name
    assert_matches(got.values, expected, name, sens)


def test_all_indices_in_one_call_equal_single_calls_numpy_and_dask(patch):
    names = sorted(RAW)
    consts = {**REQUIRED}
    single = {n: ix.index(patch, n, kernel="RBF", **constants_for(n)).values for n in names}
    lazy_in = patch.chunk({"y": (50, 130, 120), "x": (300,)})
    with raise_if_dask_computes():
        lazy = ix.compute_indices(lazy_in, names, kernel="RBF", **consts)
    for n in names:
        assert lazy[n].dtype == np.float32
    computed = lazy.compute()
    for n in names:
        np.testing.assert_array_equal(computed[n].values, single[n], err_msg=n)


def test_real_patch_ndvi_values_are_plausible_vegetation(patch):
    # Independent of any formula machinery: NDVI straight from the uint16 arrays.
    z = np.load(DATA / "sentinel2_10m_300px.npz")
    n = z["B08"].astype(np.float64)
    r = z["B04"].astype(np.float64)
    expected = ((n - r) / (n + r)).astype(np.float32)
    got = ix.index(patch, "NDVI").values
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.nanmin(got) >= -1 and np.nanmax(got) <= 1


# --------------------------------------------------------------------------- backends


def four_bands(seed: int = 0, nan_fraction: float = 0.0) -> xr.Dataset:
    bands = {}
    for i, name in enumerate(["blue", "green", "red", "nir"]):
        da = synthetic_raster((40, 50), seed=seed + i, nan_fraction=nan_fraction, name=name)
        bands[name] = da * np.float32(0.5) if name != "nir" else da
    ds = xr.Dataset(bands, attrs={"title": "synthetic"})
    return ds


def test_numpy_and_dask_agree_and_keep_crs_and_attrs(backend):
    ds = four_bands(nan_fraction=0.1)
    names = ["NDVI", "EVI", "SAVI", "GNDVI", "VARI"]
    expected = ix.compute_indices(ds, names, L=0.5)
    got = ix.compute_indices(backend(ds), names, L=0.5)
    assert got["EVI"].dtype == np.float32
    computed = got.compute()
    for n in names:
        np.testing.assert_array_equal(computed[n].values, expected[n].values, err_msg=n)
        assert computed[n].rio.crs == ds.rio.crs
        assert computed[n].attrs["title"] == "synthetic"
        assert computed[n].attrs["formula"] == RAW[n]["formula"]
        assert computed[n].dims == ("y", "x")
    assert computed.attrs == {"title": "synthetic"}


def test_lazy_until_computed_and_dtype_is_honest():
    ds = four_bands().chunk({"y": (7, 33), "x": (20, 20, 10)})
    with raise_if_dask_computes():
        out = ds.geo.compute_indices(["NDVI", "EVI"])
        single = ds.geo.index("NBR", bands={"S2": "blue"})
        nd = ds.geo.ndvi()
    for da in (out["NDVI"], out["EVI"], single, nd):
        assert da.dtype == np.float32
        assert da.compute().dtype == np.float32
        assert da.chunks == ((7, 33), (20, 20, 10))


def test_several_indices_share_one_kernel_call_per_block(monkeypatch):
    calls = []
    original = ix._expression.execute

    def counting(program, arrays, **kwargs):
        calls.append(program.n_outputs)
        return original(program, arrays, **kwargs)

    monkeypatch.setattr(ix._expression, "execute", counting)
    ds = four_bands().chunk({"y": (10, 30), "x": (25, 25)})
    out = ix.compute_indices(ds, ["NDVI", "EVI", "SAVI", "GNDVI", "VARI"])
    dask.compute(*out.data_vars.values())
    assert sorted(calls) == [5, 5, 5, 5]  # one call per block, five outputs each


# --------------------------------------------------------------------------- analytic


def test_ndvi_of_equal_bands_is_zero_and_zero_sum_is_nan(backend):
    values = np.array([[0.3, 0.0, np.nan], [1.0, 0.2, 0.0]], dtype=np.float32)
    ds = backend(xr.Dataset({"red": (("y", "x"), values), "nir": (("y", "x"), values)}))
    for got in (ix.index(ds, "NDVI"), ix.ndvi(ds)):
        expected = np.array([[0.0, np.nan, np.nan], [0.0, 0.0, np.nan]], dtype=np.float32)
        np.testing.assert_array_equal(got.values, expected)


def test_division_by_zero_and_nan_give_nan_without_warnings(recwarn):
    ds = xr.Dataset(
        {
            "red": ("x", np.array([0.0, 0.1, np.nan, 0.2], dtype=np.float32)),
            "nir": ("x", np.array([0.0, 0.3, 0.4, -0.2], dtype=np.float32)),
        }
    )
    out = ix.compute_indices(ds, ["SR", "NDVI"])  # SR = N / R
    np.testing.assert_array_equal(out["SR"].values, np.array([np.nan, 3.0, np.nan, -1.0], "f4"))
    np.testing.assert_allclose(out["NDVI"].values, [np.nan, 0.5, np.nan, np.nan], rtol=2e-7)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_constants_default_and_override():
    ds = xr.Dataset({"red": ("x", np.array([0.1])), "nir": ("x", np.array([0.5]))})
    # SAVI = (1 + L) (N - R) / (N + R + L)
    for L, expected in [(1.0, 2 * 0.4 / 1.6), (0.5, 1.5 * 0.4 / 1.1), (0.0, 0.4 / 0.6)]:
        kwargs = {} if L == 1.0 else {"L": L}
        assert float(ix.index(ds, "SAVI", **kwargs)[0]) == pytest.approx(expected, rel=1e-6)
    # a per-pixel constant
    L = xr.DataArray(np.array([0.5]), dims="x")
    assert float(ix.index(ds, "SAVI", L=L)[0]) == pytest.approx(1.5 * 0.4 / 1.1, rel=1e-6)


def test_scale_offset_nodata_for_digital_numbers(backend):
    rng = np.random.default_rng(3)
    red = rng.integers(1000, 4000, size=(20, 30), dtype=np.uint16)
    nir = rng.integers(1000, 6000, size=(20, 30), dtype=np.uint16)
    blue = rng.integers(1000, 3000, size=(20, 30), dtype=np.uint16)
    red[0, :5] = 0
    dn = xr.Dataset({k: (("y", "x"), v) for k, v in [("red", red), ("nir", nir), ("blue", blue)]})
    refl = {
        k: (v.astype(np.float64) - 1000) / 10000 for k, v in [("R", red), ("N", nir), ("B", blue)]
    }
    refl["R"][red == 0] = np.nan
    expected = reference(RAW["EVI"]["formula"], {**refl, "g": 2.5, "C1": 6.0, "C2": 7.5, "L": 1.0})
    got = ix.index(backend(dn), "EVI", scale=1e-4, offset=-0.1, nodata=0).values
    assert np.isnan(got[0, :5]).all()
    assert_matches(got, expected, "EVI from DN")


def test_kernel_ndvi_with_linear_kernel_is_ndvi():
    ds = four_bands()
    k = ix.index(ds, "kNDVI", kernel="linear")  # (NN - NR) / (NN + NR) = NDVI
    np.testing.assert_allclose(k.values, ix.index(ds, "NDVI").values, rtol=2e-6, atol=1e-7)
    # and kernel values may be given explicitly, as arrays
    n, r = ds["nir"], ds["red"]
    explicit = ix.index(ds, "kNDVI", kNN=n * n, kNR=n * r)
    np.testing.assert_allclose(explicit.values, k.values, rtol=2e-6, atol=1e-7)


def test_accessor_is_the_same_call():
    ds = four_bands()
    xr.testing.assert_identical(ds.geo.index("EVI"), ix.index(ds, "EVI"))
    xr.testing.assert_identical(
        ds.geo.compute_indices(["NDVI", "GNDVI", "SAVI"], L=0.5),
        lazyraster.indices.compute_indices(ds, ["NDVI", "GNDVI", "SAVI"], L=0.5),
    )


def test_band_mapping_aliases_and_override():
    base = four_bands()
    ds = base.rename({"nir": "B08", "red": "B04"})
    got = ix.index(ds, "NDVI", bands={"N": "B08", "R": "B04"})
    np.testing.assert_array_equal(got.values, ix.index(base, "NDVI").values)
    # Earth Search's red-edge name and a DataArray as mapping target
    re = base.assign(rededge1=base["red"] * 1.5)
    a = ix.index(re, "NDREI")  # (N - RE1) / (N + RE1)
    b = ix.index(base, "NDREI", bands={"RE1": base["red"] * 1.5})
    np.testing.assert_array_equal(a.values, b.values)


# --------------------------------------------------------------------------- errors


def test_missing_band_error_names_symbol_variable_and_contents():
    ds = four_bands()[["red", "nir"]]
    with pytest.raises(MissingBandError) as err:
        ix.index(ds, "EVI")
    msg = str(err.value)
    assert "'B'" in msg and "'blue'" in msg and "red, nir" in msg and "bands=" in msg
    with pytest.raises(lazyraster.LazyrasterError):
        ds.geo.compute_indices(["NDVI", "NBR"])


def test_unknown_index_suggests_close_matches():
    with pytest.raises(ValueError, match=r"Did you mean .*NDVI"):
        ix.index(four_bands(), "NDIV")
    assert ix.index_info("ndvi").short_name == "NDVI"


def test_missing_constant_and_unused_keyword():
    ds = four_bands()
    with pytest.raises(ValueError, match="PAR"):
        ix.index(ds, "NIRvP")
    with pytest.raises(TypeError, match=r"unexpected constant.*l\b"):
        ix.index(ds, "SAVI", l=0.5)
    with pytest.raises(ValueError, match="kernel"):
        ix.index(ds, "kNDVI")


def test_integer_bands_need_scale():
    dn = xr.Dataset({"red": ("x", np.array([100], np.uint16)), "nir": ("x", np.array([900], "u2"))})
    with pytest.raises(ValueError, match="scale=1e-4"):
        ix.index(dn, "SAVI")
    # NDVI too: with an offset (baseline 04.00) the ratio of raw DNs is wrong
    for compute in (ix.ndvi, lambda ds: ix.index(ds, "NDVI"), lambda ds: ds.geo.ndvi()):
        with pytest.raises(ValueError, match=r"'nir'.*integers.*scale=.*scale=True"):
            compute(dn)


def test_ndvi_of_dn_with_declared_scale_equals_numpy_reference(backend):
    """Baseline 04.00 DNs: reflectance = DN * 1e-4 - 0.1, 0 = nodata."""
    rng = np.random.default_rng(3)
    red = rng.integers(1000, 4000, (7, 9), dtype=np.uint16)
    nir = rng.integers(1000, 9000, (7, 9), dtype=np.uint16)
    red[0, :3] = 0
    ds = backend(xr.Dataset({"red": (("y", "x"), red), "nir": (("y", "x"), nir)}))
    r = red.astype(np.float64) * 1e-4 - 0.1
    n = nir.astype(np.float64) * 1e-4 - 0.1
    expected = (n - r) / (n + r)
    expected[red == 0] = np.nan
    for got in (
        ix.ndvi(ds, scale=1e-4, offset=-0.1, nodata=0),
        ds.geo.ndvi(scale=1e-4, offset=-0.1, nodata=0),
        ix.index(ds, "NDVI", scale=1e-4, offset=-0.1, nodata=0),
    ):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got.values, expected, rtol=1e-5)
        assert np.isnan(got.values[0, :3]).all()
    # the raw-DN ratio, what ndvi() used to return, is off by far more than rounding
    raw = (nir.astype(float) - red) / (nir.astype(float) + red)
    assert np.nanmax(np.abs(raw[red > 0] - expected[red > 0])) > 0.05


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "N.__class__",
        "[N for N in R]",
        "N if R else G",
        "lambda: 1",
        "N < R",
        "open('x')",
        "sqrt(N, R)",
        "'abc'",
        "N; R",
    ],
)
def test_parser_rejects_anything_but_arithmetic(text):
    with pytest.raises(ValueError):
        ix._expression.parse(text)


# --------------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    nan_fraction=st.floats(0.0, 0.5),
    seed=seeds,
)
def test_chunking_and_nan_placement_do_not_change_results(data, nan_fraction, seed):
    ds = four_bands(seed=seed, nan_fraction=nan_fraction)
    lazy = ds.chunk({"y": data.draw(chunking(40, 4)), "x": data.draw(chunking(50, 4))})
    names = ["NDVI", "EVI", "ARVI", "GLI"]
    expected = ix.compute_indices(ds, names)
    got = ix.compute_indices(lazy, names).compute()
    for n in names:
        np.testing.assert_array_equal(got[n].values, expected[n].values)
        nan_in = np.zeros((40, 50), dtype=bool)
        for sym in ix.index_info(n).bands:
            nan_in |= np.isnan(ds[SYMBOL_VAR[sym]].values)
        assert np.isnan(got[n].values[nan_in]).all()  # a NaN input gives a NaN index


def test_time_stack_with_a_per_time_constant(backend):
    red = np.array([[[0.1, 0.2]], [[0.3, 0.1]], [[0.2, 0.2]]], dtype=np.float32)  # (t, y, x)
    nir = np.array([[[0.5, 0.4]], [[0.6, 0.5]], [[0.2, 0.7]]], dtype=np.float32)
    ds = backend(xr.Dataset({"red": (("time", "y", "x"), red), "nir": (("time", "y", "x"), nir)}))
    L = xr.DataArray(np.array([0.0, 0.5, 1.0]), dims="time")
    got = ix.index(ds, "SAVI", L=L).compute()
    n, r, lv = nir.astype(float), red.astype(float), L.values[:, None, None]
    expected = (1 + lv) * (n - r) / (n + r + lv)
    np.testing.assert_allclose(got.values, expected, rtol=1e-6)
    assert got.dims == ("time", "y", "x")


def test_unusual_dtypes_are_read_correctly():
    values = {"red": [0.1, 0.25], "nir": [0.5, 0.25]}
    expected = ix.index(xr.Dataset({k: ("x", np.array(v)) for k, v in values.items()}), "NDVI")
    for dtype in ("<f2", ">f4", ">f8"):
        ds = xr.Dataset({k: ("x", np.array(v, dtype=dtype)) for k, v in values.items()})
        np.testing.assert_allclose(ix.index(ds, "NDVI").values, expected.values, rtol=1e-3)
    big = xr.Dataset({k: ("x", (np.array(v) * 1e4).astype(">u2")) for k, v in values.items()})
    np.testing.assert_allclose(ix.index(big, "NDVI", scale=1e-4).values, expected.values, rtol=1e-6)


def test_ndvi_missing_band_names_its_keyword():
    ds = four_bands().rename({"nir": "B08"})
    with pytest.raises(MissingBandError, match="nir=<variable name>"):
        ix.ndvi(ds)
    np.testing.assert_array_equal(ix.ndvi(ds, nir="B08").values, ix.index(four_bands(), "NDVI"))


def test_list_indices_filters_by_what_the_dataset_can_compute():
    rn = four_bands()[["red", "nir"]]
    names = ix.list_indices(rn)
    assert "NDVI" in names and "SAVI" in names
    assert "EVI" not in names and "GNDVI" not in names  # need blue, green
    for name in names:  # every listed index really computes
        info = ix.index_info(name)
        consts = {k: 1.0 for k, v in info.constants.items() if v is None}
        ix.index(rn, name, **consts)
    water = ix.list_indices(domain="water")
    assert "NDWI" in water and "NDVI" not in water
    with pytest.raises(ValueError, match="vegetation"):
        ix.list_indices(domain="forest")


# Random programs: with small integer inputs and + - * min max abs, float32 arithmetic is
# exact, so the compiled program (CSE, folding, register reuse, several outputs) must
# equal a direct evaluation bit for bit.
def _direct(text: str, env: dict[str, np.ndarray]) -> np.ndarray:
    tree = ast.parse(text, mode="eval")

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return np.float64(node.value)
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.UnaryOp):
            return -ev(node.operand)
        if isinstance(node, ast.Call):
            args = [ev(a) for a in node.args]
            fn = {"min": np.minimum, "max": np.maximum, "abs": np.abs}[node.func.id]
            return fn(*args)
        ops = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply}
        return ops[type(node.op)](ev(node.left), ev(node.right))

    return np.broadcast_to(ev(tree), (3, 5)).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(formulas=st.lists(index_formulas, min_size=1, max_size=4), seed=st.integers(0, 100))
def test_compiled_programs_equal_direct_evaluation(formulas, seed):
    rng = np.random.default_rng(seed)
    env = {s: rng.integers(-2, 3, size=(3, 5)).astype(np.float64) for s in ("N", "R", "G")}
    env["G"][0, 0] = np.nan  # NaN propagates through every operation
    program = ix._expression.compile_program(
        [ix._expression.parse(f) for f in formulas], ["N", "R", "G"]
    )
    got = ix._expression.execute(program, [env["N"], env["R"], env["G"]], strip=4)
    for j, text in enumerate(formulas):
        np.testing.assert_array_equal(got[j], _direct(text, env), err_msg=text)
