"""The catalogue: Awesome Spectral Indices (spyndex's tables), band symbols, look-ups."""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files

import xarray as xr

from lazyraster.errors import MissingBandError
from lazyraster.indices import _expression

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

    Examples
    --------
    >>> from lazyraster.indices import index_info
    >>> evi = index_info("EVI")
    >>> evi.long_name, evi.application_domain
    ('Enhanced Vegetation Index', 'vegetation')
    >>> evi.bands
    ('N', 'R', 'B')
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
