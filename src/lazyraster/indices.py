"""Spectral indices: pure functions on xarray objects, lazy on dask, eager on numpy.

The whole Awesome Spectral Indices catalogue (280 indices, MIT; see
``lazyraster/data/spectral-indices/PROVENANCE.md``) is available by name:

>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset({b: ("x", np.array([v])) for b, v in
...                  [("blue", 0.05), ("green", 0.08), ("red", 0.06), ("nir", 0.40)]})
>>> float(index(ds, "NDVI")[0])
0.739130437374115
>>> list(indices(ds, ["NDVI", "SAVI", "EVI"], L=0.5).data_vars)
['NDVI', 'SAVI', 'EVI']

Band symbols of the formulas map to the Dataset's variables by STAC ``eo:common_name``
(``N`` -> ``nir``, ``R`` -> ``red``, ``S1`` -> ``swir16``, ``RE1`` -> ``rededge071``,
``rededge1`` or ``rededge``, ...; see :data:`BAND_VARIABLES`), and ``bands=`` overrides
the mapping. Constants take the catalogue's defaults, overridable by keyword.

Formulas are parsed into a whitelisted expression tree (never ``eval``), and all the
indices of one call are compiled into one program that a numba kernel runs per block
in cache-sized strips: each input is read once and each output written once, with no
full-size temporaries, however many indices are asked for.

Inputs are expected as reflectance (what :func:`lazyraster.load` returns: scaled
floats with nodata as NaN). Integer digital numbers must be scaled: pass ``scale=``
(and ``offset=``, ``nodata=``) and the kernel applies ``DN * scale + offset`` while
reading, without a temporary; integer inputs without ``scale=`` are refused, because
indices with additive constants (EVI, SAVI, ...) are wrong on unscaled values.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np
import xarray as xr

from lazyraster import _expression
from lazyraster.errors import MissingBandError

__all__ = [
    "BAND_VARIABLES",
    "SpectralIndex",
    "index",
    "index_info",
    "indices",
    "list_indices",
    "ndvi",
    "normalized_difference",
]

_DATA = files("lazyraster") / "data" / "spectral-indices"

#: Variables looked for, in order, for each band symbol of the catalogue: the STAC
#: ``eo:common_name`` from the catalogue's ``bands.json`` first, then common aliases
#: (Earth Search names Sentinel-2's red-edge bands ``rededge1..3``; older STAC
#: versions call them all ``rededge``). Radar symbols map to lower-case polarisations.
BAND_VARIABLES: dict[str, tuple[str, ...]] = {
    "A": ("coastal",),
    "B": ("blue",),
    "G": ("green",),
    "G1": ("green05",),
    "Y": ("yellow",),
    "R": ("red",),
    "RE1": ("rededge071", "rededge1", "rededge"),
    "RE2": ("rededge075", "rededge2"),
    "RE3": ("rededge078", "rededge3"),
    "N": ("nir",),
    "N2": ("nir08",),
    "WV": ("nir09",),
    "S1": ("swir16",),
    "S2": ("swir22",),
    "T": ("lwir",),
    "T1": ("lwir11",),
    "T2": ("lwir12",),
    "VV": ("vv",),
    "VH": ("vh",),
    "HH": ("hh",),
    "HV": ("hv",),
}

#: Kernels of the kernel indices (kNDVI, kEVI, ...), as in spyndex's ``computeKernel``:
#: ``kXY`` is the kernel of bands (or constants) ``X`` and ``Y``.
_KERNELS = {
    "linear": "a * b",
    "poly": "((a * b) + c) ** p",
    "rbf": "exp((-1.0 * (a - b) ** 2.0) / (2.0 * sigma ** 2.0))",
}
_KERNEL_CONSTANTS = {"linear": (), "poly": ("c", "p"), "rbf": ("sigma",)}


@dataclass(frozen=True)
class SpectralIndex:
    """One index of the catalogue.

    Attributes
    ----------
    short_name, long_name : str
        E.g. ``"EVI"``, ``"Enhanced Vegetation Index"``.
    formula : str
        The catalogue's expression over band and constant symbols.
    bands : tuple of str
        Band symbols the formula reads (``"N"``, ``"R"``, ...), kernel symbols
        (``"kNR"``) included.
    constants : dict
        Constant symbols with their defaults (``None`` where the caller must give one).
    application_domain : str
        ``"vegetation"``, ``"water"``, ``"burn"``, ...
    reference : str
        Where the index was published.
    platforms : tuple of str
        Sensors the index applies to.
    """

    short_name: str
    long_name: str
    formula: str
    bands: tuple[str, ...]
    constants: dict[str, float | None]
    application_domain: str
    reference: str
    platforms: tuple[str, ...]


@functools.cache
def _catalogue() -> dict[str, SpectralIndex]:
    raw = json.loads((_DATA / "spectral-indices-dict.json").read_text())["SpectralIndices"]
    defaults = _constant_defaults()
    out = {}
    for name, entry in raw.items():
        syms = entry["bands"]
        out[name] = SpectralIndex(
            short_name=entry["short_name"],
            long_name=entry["long_name"],
            formula=entry["formula"],
            bands=tuple(s for s in syms if s not in defaults),
            constants={s: defaults[s] for s in syms if s in defaults},
            application_domain=entry["application_domain"],
            reference=entry["reference"],
            platforms=tuple(entry["platforms"]),
        )
    return out


@functools.cache
def _constant_defaults() -> dict[str, float | None]:
    raw = json.loads((_DATA / "constants.json").read_text())
    return {k: (None if v["default"] is None else float(v["default"])) for k, v in raw.items()}


@functools.cache
def _constant_descriptions() -> dict[str, str]:
    raw = json.loads((_DATA / "constants.json").read_text())
    return {k: v["description"] for k, v in raw.items()}


@functools.cache
def _parsed(name: str) -> tuple:
    return _expression.parse(_catalogue()[name].formula)


def _lookup(name: str) -> SpectralIndex:
    """Return the catalogue entry ``name`` (case-insensitive if unambiguous)."""
    if not isinstance(name, str):
        raise TypeError(f"an index name must be a str, not {type(name).__name__}")
    cat = _catalogue()
    if name in cat:
        return cat[name]
    folded = [k for k in cat if k.lower() == name.lower()]
    if len(folded) == 1:
        return cat[folded[0]]
    close = difflib.get_close_matches(name, list(cat), n=5, cutoff=0.6)
    close += [k for k in difflib.get_close_matches(name.lower(), [k.lower() for k in cat])]
    close = [k for k in dict.fromkeys(close) if k in cat] or folded
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown spectral index {name!r}.{hint} See lazyraster.indices.list_indices() "
        "for the 280 available names."
    )


def index_info(name: str) -> SpectralIndex:
    """Describe one catalogue index: formula, bands, constants and their defaults.

    Examples
    --------
    >>> info = index_info("SAVI")
    >>> info.formula, info.bands, info.constants
    ('(1.0 + L) * (N - R) / (N + R + L)', ('N', 'R'), {'L': 1.0})
    """
    return _lookup(name)


def list_indices(
    ds: xr.Dataset | None = None,
    *,
    domain: str | None = None,
    bands: Mapping[str, str | xr.DataArray] | None = None,
) -> list[str]:
    """List the catalogue's index names, optionally only those a Dataset can compute.

    Parameters
    ----------
    ds : xarray.Dataset, optional
        Keep only indices whose band symbols all map to variables of ``ds``.
    domain : str, optional
        Keep only one application domain: ``"vegetation"``, ``"water"``, ``"burn"``,
        ``"urban"``, ``"soil"``, ``"snow"``, ``"radar"``, ``"clouds"`` or ``"kernel"``.
    bands : mapping, optional
        Explicit symbol -> variable mapping, as for :func:`index`.

    Returns
    -------
    list of str
        Sorted short names.

    Examples
    --------
    >>> len(list_indices())
    280
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"red": ("x", np.ones(2)), "nir": ("x", np.ones(2))})
    >>> list_indices(ds, domain="vegetation")[:5]
    ['ATSAVI', 'AVI', 'DVI', 'EVI2', 'GDVI']
    """
    cat = _catalogue()
    domains = {entry.application_domain for entry in cat.values()}
    if domain is not None and domain not in domains:
        raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(sorted(domains))}")
    names = []
    for name, entry in cat.items():
        if domain is not None and entry.application_domain != domain:
            continue
        if ds is not None and any(
            _find_band(ds, sym, bands) is None for sym in entry.bands if not _is_kernel(sym)
        ):
            continue
        if ds is not None and any(_is_kernel(sym) for sym in entry.bands):
            continue
        names.append(name)
    return sorted(names)


def _is_kernel(symbol: str) -> bool:
    return _kernel_pair(symbol) is not None


def _kernel_pair(symbol: str) -> tuple[str, str] | None:
    """Split ``kNR`` into ``("N", "R")``; None if ``symbol`` is not a kernel symbol."""
    if not symbol.startswith("k") or len(symbol) < 3:
        return None
    rest = symbol[1:]
    known = set(BAND_VARIABLES) | set(_constant_defaults())
    for cut in range(1, len(rest)):
        if rest[:cut] in known and rest[cut:] in known:
            return rest[:cut], rest[cut:]
    return None


def _find_band(
    ds: xr.Dataset, symbol: str, bands: Mapping[str, str | xr.DataArray] | None
) -> xr.DataArray | None:
    if bands and symbol in bands:
        target = bands[symbol]
        if isinstance(target, xr.DataArray):
            return target
        return ds[target] if target in ds.data_vars else None
    candidates = BAND_VARIABLES.get(symbol, (symbol.lower(),))
    for cand in candidates:
        if cand in ds.data_vars:
            return ds[cand]
    lower = {str(v).lower(): v for v in ds.data_vars}
    for cand in candidates:
        if cand.lower() in lower:
            return ds[lower[cand.lower()]]
    return None


def _band_for(
    ds: xr.Dataset,
    symbol: str,
    bands: Mapping[str, str | xr.DataArray] | None,
    user: str,
    fix: str | None = None,
) -> xr.DataArray:
    found = _find_band(ds, symbol, bands)
    if found is not None:
        return found
    have = ", ".join(map(str, ds.data_vars)) or "no variables"
    if bands and symbol in bands:
        looked = repr(bands[symbol])
    else:
        looked = " or ".join(repr(c) for c in BAND_VARIABLES.get(symbol, (symbol.lower(),)))
    fix = fix or f"bands={{{symbol!r}: '<variable name>'}}"
    raise MissingBandError(
        f"{user} needs band {symbol!r}: looked for variable {looked}, but the Dataset has: "
        f"{have}. Pass {fix} or load that band."
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
    out = indices(
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


def indices(
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
    >>> out = indices(ds, ["NDVI", "NBR", "SAVI"], L=0.5)
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
