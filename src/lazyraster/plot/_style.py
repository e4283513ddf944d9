"""Colour maps chosen from the data: normalised indices, days of year, anything else.

- A normalised index (``ndvi``, ``ndwi``, ... by name, or a ``formula`` attribute of the
  form ``(A - B)/(A + B)``, or a ``long_name`` saying "normalized difference", as
  :mod:`lazyraster.indices` sets them) is drawn red-yellow-green on a fixed -1..1.
- Days of year (``units: "day of year"``, as :mod:`lazyraster.phenology` sets them on
  ``first_leaf``/``first_bloom``) get a sequential map from the first to the last day
  shown, and a "day of year" colour bar.
- Anything else gets a sequential map between the 2nd and 98th percentiles.

Nodata is drawn in one colour the colour map does not use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

#: Names of normalised (-1..1) indices that may come without attributes.
NORMALISED = frozenset(
    {"ndvi", "ndwi", "mndwi", "ndmi", "nbr", "nbr2", "ndsi", "ndbi", "ndre", "gndvi", "ndii"}
)

#: ``(A - B)/(A + B)``, the formula of a normalised difference, spaces optional.
_ND = re.compile(r"^\(\s*(\w+)\s*-\s*(\w+)\s*\)\s*/\s*\(\s*\1\s*\+\s*\2\s*\)$")

#: The colour maps by kind of data.
CMAPS = {"index": "RdYlGn", "doy": "viridis", "other": "viridis"}

#: Nodata colours, the first one far enough from every colour of the colour map.
NODATA_COLOURS = ("#b3b3b3", "#ff00ff", "#00ffff")


@dataclass(frozen=True)
class Style:
    """How values become colours, and the colour bar's label."""

    cmap: Any
    vmin: float
    vmax: float
    label: str
    nodata_colour: str

    def norm(self) -> Any:
        """The matplotlib :class:`~matplotlib.colors.Normalize` of these limits."""
        from matplotlib.colors import Normalize

        return Normalize(vmin=self.vmin, vmax=self.vmax)


def kind(da: xr.DataArray) -> str:
    """``"index"``, ``"doy"`` or ``"other"``: which colour map ``da`` gets.

    Examples
    --------
    >>> kind(xr.DataArray([0.5], name="ndvi_focal_mean"))
    'index'
    >>> kind(xr.DataArray([120.0], name="first_leaf", attrs={"units": "day of year"}))
    'doy'
    """
    attrs = da.attrs
    formula = str(attrs.get("formula", "")).strip()
    long_name = str(attrs.get("long_name", "")).lower()
    name = str(da.name or "").lower()
    if (
        _ND.match(formula)
        or re.search(r"normali[sz]ed difference", long_name)
        or name in NORMALISED
        or name.split("_")[0] in NORMALISED
    ):
        return "index"
    if str(attrs.get("units", "")).lower() in ("day of year", "doy") or "day of year" in long_name:
        return "doy"
    if name.startswith(("first_leaf", "first_bloom")):
        return "doy"
    return "other"


def _label(da: xr.DataArray, what: str) -> str:
    if what == "doy":
        return "day of year"
    short = str(da.name or "")
    if what == "index":
        return short.split("_")[0].upper() or str(da.attrs.get("long_name", ""))
    name = str(da.attrs.get("long_name") or short)
    units = str(da.attrs.get("units", ""))
    return f"{name} [{units}]" if units and units != "1" else name


def _limits(values: Sequence[np.ma.MaskedArray], what: str, robust: bool | None) -> tuple:
    if what == "index" and robust is None:
        return -1.0, 1.0
    shown = np.concatenate([v.compressed().astype(float).ravel() for v in values] or [[]])
    shown = shown[np.isfinite(shown)]
    if shown.size == 0:
        return 0.0, 1.0
    if robust or (robust is None and what == "other"):
        low, high = np.percentile(shown, [2, 98])
    else:
        low, high = shown.min(), shown.max()
    if low == high:
        low, high = low - 0.5, high + 0.5
    return float(low), float(high)


def _nodata_colour(cmap: Any) -> str:
    from matplotlib.colors import to_rgb

    colours = cmap(np.linspace(0, 1, 256))[:, :3]
    for candidate in NODATA_COLOURS:
        if np.abs(colours - np.array(to_rgb(candidate))).sum(axis=1).min() > 0.3:
            return candidate
    return NODATA_COLOURS[-1]


def style(
    da: xr.DataArray,
    values: Sequence[np.ma.MaskedArray],
    *,
    cmap: Any = None,
    vmin: float | None = None,
    vmax: float | None = None,
    robust: bool | None = None,
    nodata_colour: str | None = None,
) -> Style:
    """The colour map, limits and label for ``da``, whose shown panels hold ``values``.

    ``cmap``, ``vmin`` and ``vmax`` override the choice; ``robust=True`` takes the 2nd
    and 98th percentiles of the shown values, ``False`` their minimum and maximum (both
    also for indices), ``None`` the choice by kind.
    """
    import matplotlib as mpl

    what = kind(da)
    low, high = _limits(values, what, robust)
    colours = mpl.colormaps[cmap or CMAPS[what]] if not hasattr(cmap, "N") else cmap
    colour = nodata_colour or _nodata_colour(colours)
    low = low if vmin is None else float(vmin)
    high = high if vmax is None else float(vmax)
    if not low < high:
        raise ValueError(f"colour limits {low} .. {high}: give vmin= below vmax=")
    return Style(
        cmap=colours.with_extremes(bad=colour),
        vmin=low,
        vmax=high,
        label=_label(da, what),
        nodata_colour=colour,
    )
