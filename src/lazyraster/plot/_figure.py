"""``plot``: a DataArray or a Dataset's variables as maps, one panel per time step."""

from __future__ import annotations

import math
import sys
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import xarray as xr

from lazyraster.errors import MissingBandError
from lazyraster.plot import _panels, _style

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Width of one panel, in inches (its height follows the raster's shape).
PANEL_INCHES = 4.0


def _new_figure(size: tuple[float, float], dpi: float) -> Figure:
    """A matplotlib Figure of its own, known to no pyplot state and needing no display.

    It draws with Agg when saved. Under IPython (Jupyter) it is made by pyplot, whose
    backend (``inline`` in a notebook) teaches IPython to show figures, and closed
    there at once: shown once when returned by a cell, never collected by pyplot.
    """
    ipython = sys.modules.get("IPython")
    if ipython is not None and ipython.get_ipython() is not None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=size, dpi=dpi, layout="constrained")
        plt.close(fig)
        return fig
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=dpi, layout="constrained")


def _variables(obj: xr.Dataset | xr.DataArray, variable: str | Sequence[str] | None) -> list:
    """The DataArrays to draw: ``obj`` itself, or the Dataset's ``variable`` (one or more)."""
    if isinstance(obj, xr.DataArray):
        if variable is not None:
            raise TypeError("variable= selects from a Dataset; a DataArray is drawn as it is")
        return [obj]
    if not isinstance(obj, xr.Dataset):
        raise TypeError(f"plot draws an xarray DataArray or Dataset, not {type(obj).__name__}")
    rasters = [str(n) for n, v in obj.data_vars.items() if v.ndim >= 2]
    names = [variable] if isinstance(variable, str) else list(variable or [])
    if not names:
        if len(rasters) != 1:
            have = ", ".join(rasters) or "no raster variables"
            raise MissingBandError(
                f"the Dataset has {have}: pass variable=<name> (or a list of names; "
                "CLI: --variable NAME)"
            )
        names = rasters
    missing = [n for n in names if n not in obj.data_vars]
    if missing:
        raise MissingBandError(
            f"no variable {missing[0]!r} in the Dataset (it has: "
            f"{', '.join(map(str, obj.data_vars)) or 'none'}); pass one of those as variable= "
            "(CLI: --variable)"
        )
    return [obj[n] for n in names]


def _check_values(da: xr.DataArray) -> None:
    """Refuse values that have no colour: dates and durations, booleans are numbers."""
    name = da.name or "the array"
    if da.dtype.kind == "M":
        raise TypeError(
            f"{name} holds dates ({da.dtype}), which have no colour: plot the day of year, "
            "e.g. da.dt.dayofyear.geo.plot()"
        )
    if da.dtype.kind == "m":
        raise TypeError(
            f"{name} holds durations ({da.dtype}): plot them as numbers, e.g. "
            "(da / np.timedelta64(1, 'D')).geo.plot() for days"
        )
    if da.dtype.kind not in "biufc":
        raise TypeError(f"{name} holds {da.dtype} values: plot numbers (or dates as day of year)")


def _layout(n: int, aspect: float) -> tuple[int, int, tuple[float, float]]:
    """Rows, columns and figure size (inches) for ``n`` panels of height/width ``aspect``."""
    cols = n if n <= 3 else math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    # tick labels take about 0.8 inch of a panel's width; title and ticks 0.9 of its height
    height = (PANEL_INCHES - 0.8) * min(max(aspect, 0.3), 2.5) + 0.9
    return rows, cols, (cols * PANEL_INCHES + 1.5, rows * height + 0.6)


def _draw(ax: Axes, panel: _panels.Panel, style: _style.Style) -> Any:
    """Draw one panel into ``ax``; the image artist."""
    grid = panel.grid
    if grid.regular:
        image = ax.imshow(
            panel.values,
            extent=grid.extent,
            origin="upper",
            cmap=style.cmap,
            norm=style.norm(),
            interpolation="nearest",
        )
    else:
        image = ax.pcolormesh(grid.x, grid.y, panel.values, cmap=style.cmap, norm=style.norm())
    left, right, bottom, top = panel.limits
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect(grid.aspect)
    ax.set_xlabel(grid.xlabel)
    ax.set_ylabel(grid.ylabel)
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(axis="x", labelrotation=30)
    if panel.title:
        ax.set_title(panel.title)
    return image


def _note(left: int, total: int, dim: Hashable | None) -> str:
    steps = f"{dim} steps" if dim is not None else "panels"
    return (
        f"{total - left} of {total} {steps} shown, {left} left out: raise max_panels= or pick time="
    )


def plot(
    obj: xr.DataArray | xr.Dataset,
    *,
    variable: str | Sequence[str] | None = None,
    time: Any = None,
    max_panels: int = 6,
    cmap: Any = None,
    vmin: float | None = None,
    vmax: float | None = None,
    robust: bool | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    dpi: float = 100,
    nodata_color: str | None = None,
) -> Figure:
    """Draw a raster as maps in its CRS: one panel per time step, nodata in its own colour.

    Axes are in map units with the CRS in their labels (``x [m], EPSG:32633``, degrees
    for a geographic CRS), the image spans the pixel edges, north is up whatever the
    order of ``y``, and the aspect is equal (for a geographic CRS, one degree of
    latitude is as long as ``1/cos(latitude)`` degrees of longitude, as on the ground).
    The colour map follows the data: normalised indices (NDVI, NDWI, ... by name or
    attributes) red-yellow-green on -1..1, days of year (the spring index) sequential
    with a "day of year" colour bar, anything else sequential between the 2nd and 98th
    percentiles. NaN and the nodata value (``_FillValue``/``nodata``, as rioxarray's
    ``rio.nodata``) are drawn in one colour of their own, named in a "nodata" legend.

    A dask array is decimated (every n-th pixel) to about the size of the panels before
    anything is computed, and only the panels shown are computed, in one pass.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        A raster on (y, x), or (time, y, x), or with one other dim (``year``, ``band``).
    variable : str or list of str, optional
        For a Dataset: the variable (or variables, one panel each) to draw; may be left
        out when the Dataset has one raster variable.
    time : label or list of labels, optional
        Steps to draw along the panel dim: dates (``"2023-05-01"``, or ``"2023-05"``
        for all of May), years on a ``year`` dim. Default: every step, up to
        ``max_panels``.
    max_panels : int
        At most this many panels; the figure says how many were left out.
    cmap : str or matplotlib Colormap, optional
        Colour map instead of the one chosen from the data.
    vmin, vmax : float, optional
        Colour limits instead of the chosen ones.
    robust : bool, optional
        True: limits at the 2nd and 98th percentiles of the shown values; False: their
        minimum and maximum; default: by kind of data (indices -1..1).
    title : str, optional
        Figure title (default: the variable's long name or name).
    ax : matplotlib Axes, optional
        Draw the one panel into these axes (of a figure of yours).
    dpi : float
        Resolution of the figure made (without ``ax``): decimation keeps about as many
        pixels as the panels have.
    nodata_color : str, optional
        Colour of nodata (default: grey, or a colour the colour map does not use).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (not shown: ``fig.savefig(...)``, or displayed by Jupyter).

    Raises
    ------
    MissingBandError
        If ``variable`` is not in the Dataset, or is needed and not given.
    ValueError
        For a ``time`` not on the panel dim, or more than one dim besides (y, x).
    TypeError
        For values without a colour: dates (plot ``da.dt.dayofyear``), durations, text.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ndvi = xr.DataArray(
    ...     np.array([[-1.0, 0.0], [1.0, np.nan]]), dims=("y", "x"),
    ...     coords={"y": [15.0, 5.0], "x": [5.0, 15.0]}, name="ndvi",
    ... )
    >>> fig = plot(ndvi)
    >>> ax = fig.axes[0]
    >>> [float(v) for v in (*ax.get_xlim(), *ax.get_ylim())]
    [0.0, 20.0, 0.0, 20.0]
    >>> fig.axes[1].get_ylabel()
    'NDVI'
    """
    if max_panels < 1:
        raise ValueError(f"max_panels={max_panels}: give 1 or more")
    arrays = _variables(obj, variable)
    for da in arrays:
        _check_values(da)
    chosen, left, dim = _panels.select(arrays, time=time, max_panels=max_panels)
    if ax is not None and len(chosen) + left > 1:
        raise ValueError(
            f"ax= takes one panel and there are {len(chosen) + left}: pick one with time= "
            "(or variable=), or leave out ax="
        )
    first = chosen[0][0]
    ydim, xdim = _panels.spatial_dims(first)
    full = _panels.grid(first, ydim, xdim)
    left_x, right_x, bottom, top = full.extent
    aspect = (top - bottom) / max(right_x - left_x, 1e-300) * full.aspect
    rows, cols, size = _layout(len(chosen), aspect)
    if ax is None:
        fig = _new_figure(size, dpi)
        axes = list(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel())
        pixels = (int(PANEL_INCHES * aspect * dpi), int(PANEL_INCHES * dpi))
    else:
        fig, axes = ax.figure, [ax]
        box = ax.get_window_extent()
        pixels = (int(box.height), int(box.width))
    for spare in axes[len(chosen) :]:
        spare.set_visible(False)
    panels = _panels.prepare(chosen, pixels)
    options = {"cmap": cmap, "vmin": vmin, "vmax": vmax, "robust": robust}
    styles = _styles(arrays, panels, nodata_colour=nodata_color, **options)
    _draw_all(fig, axes if ax is None else None, axes, panels, styles, titled=len(arrays) > 1)
    heading = title if title is not None else _heading(arrays)
    if left:
        heading = f"{heading}\n{_note(left, len(chosen) + left, dim)}".strip()
    if heading and ax is None:
        fig.suptitle(heading)
    elif heading:
        ax.set_title(f"{heading} {ax.get_title()}".strip())
    return fig


def _styles(
    arrays: list[xr.DataArray], panels: list[_panels.Panel], **options: Any
) -> dict[str, _style.Style]:
    """The style of each variable drawn, from the values of its panels.

    Variables of one kind (days of year, indices) share one style, from all their
    panels' values; every other variable has its own.
    """
    named = {("" if a.name is None else str(a.name)): a for a in arrays}
    drawn = {p.variable: named[p.variable] for p in panels}
    kinds = {name: _style.kind(da) for name, da in drawn.items()}
    group = {name: k if k != "other" else f"variable {name}" for name, k in kinds.items()}
    by_group = {}
    for g in dict.fromkeys(group.values()):
        names = [n for n in drawn if group[n] == g]
        values = [p.values for p in panels if p.variable in names]
        by_group[g] = _style.style(drawn[names[0]], values, **options)
    return {name: by_group[group[name]] for name in drawn}


def _draw_all(
    fig: Figure,
    own: list[Axes] | None,
    axes: list[Axes],
    panels: list[_panels.Panel],
    styles: dict[str, _style.Style],
    *,
    titled: bool,
) -> None:
    """Draw the panels, their colour bar(s) and the nodata legend.

    ``own`` are the axes of a figure made here (outer tick labels only), None for the
    user's; ``titled`` puts the variable's name in each panel's title.
    """
    shared = len({(s.cmap.name, s.vmin, s.vmax) for s in styles.values()}) == 1
    images = []
    for axis, panel in zip(axes, panels, strict=False):
        if titled:
            panel.title = f"{panel.variable} {panel.title}".strip()
        images.append(_draw(axis, panel, styles[panel.variable]))
        if not shared:
            label = styles[panel.variable].label
            fig.colorbar(images[-1], ax=axis, label=label, shrink=0.9)
    if shared:
        labels = ", ".join(dict.fromkeys(s.label for s in styles.values()))
        fig.colorbar(images[0], ax=axes[: len(panels)], label=labels, shrink=0.9)
    for axis in (own or [])[: len(panels)]:
        axis.label_outer()
    if any(p.values.mask.any() for p in panels):
        _legend(fig, None if own else axes[0], next(iter(styles.values())).nodata_colour)


def _heading(arrays: list[xr.DataArray]) -> str:
    if len(arrays) > 1:
        return ""
    da = arrays[0]
    return str(da.attrs.get("long_name") or da.name or "")


def _legend(fig: Figure, ax: Axes | None, colour: str) -> None:
    from matplotlib.patches import Patch

    handle = Patch(facecolor=colour, edgecolor="0.3", label="nodata")
    if ax is None:
        fig.legend(handles=[handle], loc="outside lower right", frameon=False)
    else:
        ax.legend(handles=[handle], loc="lower right")
