"""Computing indices: one compiled program per call, run by the expression kernel."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from lazyraster.indices import _expression
from lazyraster.indices._registry import (
    _KERNELS,
    BAND_VARIABLES,
    SpectralIndex,
    _band_for,
    _constant_defaults,
    _constant_descriptions,
    _is_kernel,
    _kernel_pair,
    _lookup,
    _parsed,
)


def index(
    ds: xr.Dataset,
    name: str,
    /,
    *,
    bands: Mapping[str, str | xr.DataArray] | None = None,
    scale: float | None = None,
    offset: float = 0.0,
    nodata: float | None = None,
    kernel: str | None = None,
    **constants: float | xr.DataArray,
) -> xr.DataArray:
    """Compute one spectral index of the Awesome Spectral Indices catalogue.

    Parameters
    ----------
    ds : xarray.Dataset
        Reflectance bands named by STAC common name (``red``, ``nir``, ``swir16``,
        ...), numpy- or dask-backed.
    name : str
        Catalogue short name, e.g. ``"EVI"`` (case-insensitive when unambiguous).
    bands : mapping, keyword-only
        Override the symbol -> variable mapping, e.g. ``{"N": "B08", "R": "B04"}``; a
        value may also be a DataArray.
    scale, offset, nodata : float, keyword-only
        For digital numbers: every band is read as ``DN * scale + offset``, NaN where
        ``DN == nodata`` (Sentinel-2 L2A from baseline 04.00: ``scale=1e-4,
        offset=-0.1, nodata=0``). Required (at least ``scale``) for integer bands.
    kernel : {"linear", "poly", "RBF"}, keyword-only
        For kernel indices (kNDVI, kEVI, ...): compute ``kXY`` from the bands with
        this kernel (``sigma`` for RBF and ``c``, ``p`` for poly are constants). Or
        pass each ``kXY`` as a constant.
    **constants : float or xarray.DataArray
        Values of the formula's constants (``L=0.5``, ``g=2.5``, ...), overriding the
        catalogue's defaults; a DataArray gives a per-pixel value.

    Returns
    -------
    xarray.DataArray
        float32, named by the index's short name, with the bands' dims and coords
        (``spatial_ref`` included), the Dataset's attributes plus ``long_name``,
        ``formula`` and ``reference``. NaN where an input is NaN, a denominator is
        zero or the result is not finite. Lazy when the bands are dask arrays.

    Raises
    ------
    MissingBandError
        If a band of the formula is not in the Dataset.
    ValueError
        For an unknown index (with close matches), a constant without a default that
        was not given, or integer bands without ``scale=``.
    TypeError
        For a keyword that no requested index uses.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"red": ("x", np.array([0.1, 0.2])), "nir": ("x", np.array([0.5, 0.2]))})
    >>> index(ds, "SAVI", L=0.5).round(4).values
    array([0.5455, 0.    ], dtype=float32)
    """
    out = compute_indices(
        ds,
        [name],
        bands=bands,
        scale=scale,
        offset=offset,
        nodata=nodata,
        kernel=kernel,
        **constants,
    )
    return out[next(iter(out.data_vars))]


def compute_indices(
    ds: xr.Dataset,
    names: Iterable[str],
    /,
    *,
    bands: Mapping[str, str | xr.DataArray] | None = None,
    scale: float | None = None,
    offset: float = 0.0,
    nodata: float | None = None,
    kernel: str | None = None,
    **constants: float | xr.DataArray,
) -> xr.Dataset:
    """Compute several spectral indices in one pass over the bands.

    Named as spyndex's ``computeIndex``, which takes a list of names too.

    All indices are compiled into one program (shared sub-expressions computed once)
    and evaluated by one kernel call per block: each band is read once, whatever
    the number of indices.

    Parameters
    ----------
    ds : xarray.Dataset
        Reflectance bands named by STAC common name, numpy- or dask-backed.
    names : iterable of str
        Catalogue short names, e.g. ``["NDVI", "NBR", "SAVI"]``.
    bands, scale, offset, nodata, kernel, **constants
        As for :func:`index`; a constant applies to every requested index that uses
        it, and a keyword that none uses is a ``TypeError``.

    Returns
    -------
    xarray.Dataset
        One float32 variable per index, named by its short name, with the Dataset's
        attributes.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"red": ("x", np.array([0.1])), "nir": ("x", np.array([0.5])),
    ...                  "swir22": ("x", np.array([0.2]))})
    >>> out = compute_indices(ds, ["NDVI", "NBR", "SAVI"], L=0.5)
    >>> {k: round(float(v[0]), 4) for k, v in out.data_vars.items()}
    {'NDVI': 0.6667, 'NBR': 0.4286, 'SAVI': 0.5455}
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(
            f"expected an xarray.Dataset of bands, got {type(ds).__name__}; use "
            "xr.Dataset({'red': red, 'nir': nir}) or a DataArray's .to_dataset('band')"
        )
    if isinstance(names, str):
        names = [names]
    entries = [_lookup(n) for n in names]
    if not entries:
        raise ValueError("no index names given")
    if len({e.short_name for e in entries}) != len(entries):
        raise ValueError("an index is requested more than once")
    if kernel is not None and kernel.lower() not in _KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of linear, poly, RBF")

    used_constants: set[str] = set()
    trees = []
    arrays: dict[str, xr.DataArray] = {}  # symbol -> input DataArray
    for entry in entries:
        tree = _parsed(entry.short_name)
        tree = _expand_kernels(tree, entry, kernel, constants, used_constants)
        replacements: dict[str, tuple] = {}
        for sym in sorted(_expression.symbols(tree)):
            if sym in constants:
                used_constants.add(sym)
                value = constants[sym]
                if isinstance(value, xr.DataArray):
                    arrays[sym] = value
                else:
                    replacements[sym] = ("num", _as_number(sym, value))
            elif sym in _constant_defaults() and sym not in BAND_VARIABLES:
                default = _constant_defaults()[sym]
                if default is None:
                    raise ValueError(
                        f"{entry.short_name} needs constant {sym!r} "
                        f"({_constant_descriptions()[sym]}), which has no default: pass "
                        f"{sym}=<value>"
                    )
                replacements[sym] = ("num", default)
            elif _is_kernel(sym):
                raise ValueError(
                    f"{entry.short_name} needs the kernel value {sym!r}: pass "
                    f'kernel="RBF" (or "linear", "poly") to compute it from the bands, '
                    f"or {sym}=<value or DataArray>"
                )
            else:
                arrays[sym] = _band_for(ds, sym, bands, entry.short_name)
        trees.append(_expression.substitute(tree, replacements))
    unused = set(constants) - used_constants
    if unused:
        raise TypeError(
            f"unexpected constant(s) {', '.join(sorted(unused))} for "
            f"{', '.join(e.short_name for e in entries)}; they use: "
            f"{', '.join(sorted({c for e in entries for c in e.constants})) or 'none'}"
        )

    results = _evaluate(
        trees,
        arrays,
        band_symbols=[s for s in arrays if s not in constants],
        scale=scale,
        offset=offset,
        nodata=nodata,
    )
    variables = {}
    for j, entry in enumerate(entries):
        var = results[j]
        var.attrs = {
            **ds.attrs,
            "long_name": entry.long_name,
            "formula": entry.formula,
            "reference": entry.reference,
        }
        variables[entry.short_name] = var.rename(entry.short_name)
    return xr.Dataset(variables, attrs=dict(ds.attrs))


def indices(ds: xr.Dataset, names: Iterable[str], /, **options: Any) -> xr.Dataset:
    """Deprecated alias of :func:`compute_indices` (the function shadowed its module).

    Emits a ``FutureWarning``; removed in the next release.

    Examples
    --------
    >>> import warnings, numpy as np, xarray as xr
    >>> ds = xr.Dataset({"red": ("x", np.array([0.1])), "nir": ("x", np.array([0.5]))})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     out = indices(ds, ["NDVI"])
    >>> caught[0].category.__name__, list(out.data_vars)
    ('FutureWarning', ['NDVI'])
    """
    warnings.warn(
        "lazyraster.indices.indices is renamed lazyraster.indices.compute_indices; "
        "the old name goes in the next release",
        FutureWarning,
        stacklevel=2,
    )
    return compute_indices(ds, names, **options)


def _as_number(sym: str, value: Any) -> float:
    if isinstance(value, bool) or not np.isscalar(value) or not np.isreal(value):
        raise TypeError(f"constant {sym}={value!r} must be a real number or an xarray.DataArray")
    return float(value)


def _expand_kernels(
    tree: tuple,
    entry: SpectralIndex,
    kernel: str | None,
    constants: Mapping[str, Any],
    used: set[str],
) -> tuple:
    """Replace ``kXY`` symbols by the kernel expression, unless given as constants."""
    if kernel is None:
        return tree
    template = _expression.parse(_KERNELS[kernel.lower()])
    replacements = {}
    for sym in _expression.symbols(tree):
        pair = _kernel_pair(sym)
        if pair is None or sym in constants:
            continue
        replacements[sym] = _expression.substitute(
            template, {"a": ("sym", pair[0]), "b": ("sym", pair[1])}
        )
    return _expression.substitute(tree, replacements)


def _evaluate(
    trees: list[tuple],
    arrays: Mapping[str, xr.DataArray],
    *,
    band_symbols: list[str],
    scale: float | None,
    offset: float,
    nodata: float | None,
) -> list[xr.DataArray]:
    """Run the compiled ``trees`` over ``arrays``; return one float32 DataArray per tree."""
    symbols = list(arrays)
    if scale is None:
        ints = [s for s in band_symbols if arrays[s].dtype.kind in "iub"]
        if ints:
            raise ValueError(
                f"band(s) {', '.join(repr(str(arrays[s].name)) for s in ints)} hold integers: "
                "spectral indices need reflectance. Pass scale= (and offset=, nodata=), "
                "e.g. scale=1e-4, offset=-0.1, nodata=0 for Sentinel-2 L2A from "
                "processing baseline 04.00, or load the bands with "
                "lazyraster.load(..., scale=True), which applies the catalog's scale and offset."
            )
    program = _expression.compile_program(trees, symbols)
    is_band = [s in band_symbols for s in symbols]
    block_scale = [(scale if scale is not None else 1.0) if b else 1.0 for b in is_band]
    block_offset = [offset if b else 0.0 for b in is_band]
    block_nodata = [nodata if b else None for b in is_band]
    return _apply(program, [arrays[s] for s in symbols], block_scale, block_offset, block_nodata)


def _apply(
    program: _expression.Program,
    inputs: list[xr.DataArray],
    scale: list[float],
    offset: list[float],
    nodata: list[float | None],
) -> list[xr.DataArray]:
    def block(*blocks: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        outs = _expression.execute(program, blocks, scale=scale, offset=offset, nodata=nodata)
        return tuple(outs) if len(outs) > 1 else outs[0]

    n = program.n_outputs
    out = xr.apply_ufunc(
        block,
        *inputs,
        dask="parallelized",
        output_core_dims=[[]] * n,
        output_dtypes=[np.float32] * n,
        join="exact",
        keep_attrs=True,  # also keeps the attributes of coordinates (the CRS)
    )
    return list(out) if n > 1 else [out]


_ND_TREE = _expression.parse("(a - b) / (a + b)")


def normalized_difference(a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    """Compute ``(a - b) / (a + b)`` in float32.

    The result is NaN where either input is NaN or where ``a + b == 0``. Works
    lazily on dask-backed inputs (no computation happens here) and eagerly on
    numpy-backed ones. The ratio does not depend on a common scale factor, so
    integer digital numbers may be passed as they are.

    Parameters
    ----------
    a, b : xarray.DataArray
        Bands on the same grid. Integer inputs (uint8, int16, uint16, ...) are
        converted to float32 inside the kernel, without a full-size temporary.

    Returns
    -------
    xarray.DataArray
        float32, with the dims, coords and attributes of ``a``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> a = xr.DataArray(np.array([3.0, 1.0, 0.0]), dims="x")
    >>> b = xr.DataArray(np.array([1.0, 1.0, 0.0]), dims="x")
    >>> normalized_difference(a, b).values
    array([0.5, 0. , nan], dtype=float32)
    """
    program = _expression.compile_program([_ND_TREE], ["a", "b"])
    (out,) = _apply(program, [a, b], [1.0, 1.0], [0.0, 0.0], [None, None])
    out.attrs = dict(a.attrs)
    return out.rename(a.name)


def ndvi(
    ds: xr.Dataset,
    *,
    red: str = "red",
    nir: str = "nir",
    scale: float | None = None,
    offset: float = 0.0,
    nodata: float | None = None,
) -> xr.DataArray:
    """Compute the Normalized Difference Vegetation Index, ``(nir - red) / (nir + red)``.

    Parameters
    ----------
    ds : xarray.Dataset
        Reflectance bands named by STAC common name; nodata already NaN (as
        :func:`lazyraster.load` returns them).
    red, nir : str, keyword-only
        Names of the red and near-infrared variables.
    scale, offset, nodata : float, keyword-only
        For digital numbers: each band is read as ``DN * scale + offset``, NaN where
        ``DN == nodata``. Required (at least ``scale``) for integer bands: with an
        offset (Sentinel-2 L2A from baseline 04.00: ``scale=1e-4, offset=-0.1,
        nodata=0``) the ratio of raw DNs is wrong.

    Returns
    -------
    xarray.DataArray
        ``ndvi``, float32 in [-1, 1], NaN where an input is NaN or ``red + nir == 0``;
        the CRS (``spatial_ref``) and the Dataset's attributes are kept.

    Raises
    ------
    MissingBandError
        If ``ds`` has no ``red`` or ``nir`` variable.
    ValueError
        For integer bands without ``scale=``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"red": ("x", np.array([0.1, 0.2])), "nir": ("x", np.array([0.5, 0.2]))})
    >>> ndvi(ds).round(3).values
    array([0.667, 0.   ], dtype=float32)
    >>> dn = xr.Dataset({"red": ("x", [2000]), "nir": ("x", [6000])}).astype("uint16")
    >>> ndvi(dn, scale=1e-4, offset=-0.1, nodata=0).round(3).values
    array([0.667], dtype=float32)
    """
    bands = {
        "a": _band_for(ds, "N", {"N": nir}, "ndvi", "nir=<variable name>"),
        "b": _band_for(ds, "R", {"R": red}, "ndvi", "red=<variable name>"),
    }
    (out,) = _evaluate(
        [_ND_TREE], bands, band_symbols=["a", "b"], scale=scale, offset=offset, nodata=nodata
    )
    out.attrs = {
        **ds.attrs,
        "long_name": "Normalized Difference Vegetation Index",
        "units": "1",
    }
    return out.rename("ndvi")
