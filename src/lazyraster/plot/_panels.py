"""From a DataArray to the arrays drawn: spatial dims, panels, decimation, north up, nodata.

Nothing here imports matplotlib: the panels are numpy arrays (masked where nodata)
with the extent of their pixel edges, ready for ``imshow``.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

#: Spatial dim names, (y, x), in the order they are looked for.
SPATIAL = (("y", "x"), ("latitude", "longitude"), ("lat", "lon"))

#: How a CRS's linear unit is written on an axis.
UNITS = {"metre": "m", "meter": "m", "foot": "ft", "US survey foot": "ftUS", "kilometre": "km"}


@dataclass
class Grid:
    """Where the pixels of a raster lie: its extent (pixel edges) and its axis labels."""

    x: np.ndarray
    y: np.ndarray
    extent: tuple[float, float, float, float]
    regular: bool
    xlabel: str
    ylabel: str
    aspect: float


@dataclass
class Panel:
    """One picture: its values north up (masked where nodata), where they lie, a title."""

    values: np.ma.MaskedArray
    grid: Grid
    limits: tuple[float, float, float, float]
    title: str
    variable: str


def spatial_dims(da: xr.DataArray) -> tuple[Hashable, Hashable]:
    """The (y, x) dims of ``da``: ``y``/``x``, ``latitude``/``longitude``, ``lat``/``lon``.

    Otherwise its last two dims.

    Examples
    --------
    >>> spatial_dims(xr.DataArray(np.zeros((2, 3, 4)), dims=("time", "lat", "lon")))
    ('lat', 'lon')
    """
    for ydim, xdim in SPATIAL:
        if ydim in da.dims and xdim in da.dims:
            return ydim, xdim
    if da.ndim < 2:
        raise ValueError(
            f"{da.name or 'the array'} has dims {da.dims}; a map needs two spatial dims "
            "(y, x): plot a raster, not a time series or a table"
        )
    return da.dims[-2], da.dims[-1]


def panel_dim(da: xr.DataArray, ydim: Hashable, xdim: Hashable) -> Hashable | None:
    """The dim besides (y, x) that panels go along (``time``, ``year``, ``band``), if any.

    The one of more than one step; else one step of a labelled dim (``time`` first), so
    that a single scene's panel still has its date.
    """
    others = [d for d in da.dims if d not in (ydim, xdim)]
    several = [d for d in others if da.sizes[d] > 1]
    if len(several) > 1:
        first = several[0]
        example = da[first].values[0] if first in da.coords else 0
        how = f"sel({first}={example!r})" if first in da.coords else f"isel({first}=0)"
        raise ValueError(
            f"{da.name or 'the array'} has dims {tuple(map(str, several))} besides "
            f"({ydim}, {xdim}); panels go along one of them: select the others first, "
            f"e.g. .{how}"
        )
    if several:
        return several[0]
    labelled = sorted((d for d in others if d in da.indexes), key=lambda d: d != "time")
    return labelled[0] if labelled else None


def _label(value: Any, dim: Hashable) -> str:
    """A panel's title from its coordinate: a date for ``time``, ``dim = value`` else."""
    value = np.asarray(value)
    if np.issubdtype(value.dtype, np.datetime64):
        text = np.datetime_as_string(value, unit="s")
        return text[:10] if text.endswith("T00:00:00") else text.replace("T", " ")
    if value.dtype == object and hasattr(value.item(), "strftime"):  # cftime
        return value.item().strftime("%Y-%m-%d")
    return f"{dim} {value.item()}" if dim == "year" else f"{dim} = {value.item()}"


def _positions(da: xr.DataArray, dim: Hashable, time: Any) -> list[int]:
    """Positions along ``dim`` of the labels in ``time`` (a label, a partial date, a list)."""
    n = da.sizes[dim]
    if time is None:
        return list(range(n))
    if dim not in da.indexes:
        raise ValueError(f"{dim} has no coordinate to select time={time!r} on; use .isel()")
    index = da.indexes[dim]
    wanted = list(time) if isinstance(time, list | tuple) else [time]
    found: list[int] = []
    for label in wanted:
        if isinstance(label, str) and index.dtype.kind not in "MOSU":
            with contextlib.suppress(ValueError):  # "2021" on an integer ``year`` dim
                label = np.asarray(label).astype(index.dtype).item()
        try:
            loc = index.get_loc(label)
        except (KeyError, TypeError, ValueError):
            have = ", ".join(_label(v, dim).removeprefix(f"{dim} ") for v in index[:8])
            more = f", ... ({n} in all)" if n > 8 else ""
            raise ValueError(
                f"no step {label!r} in {dim} (it has {have}{more}): pass one of those as time="
            ) from None
        found.extend(np.arange(n)[loc].ravel().tolist() if not isinstance(loc, int) else [loc])
    return found


def _step(coord: np.ndarray) -> tuple[float, bool]:
    """Pixel spacing of a coordinate of centres, and whether it is regular."""
    if coord.size < 2:
        return 1.0, True
    step = (coord[-1] - coord[0]) / (coord.size - 1)
    regular = bool(np.allclose(np.diff(coord), step, rtol=1e-6, atol=abs(step) * 1e-6))
    return float(step), regular


def _edges(coord: np.ndarray, step: float) -> np.ndarray:
    """Pixel edges of centres ``coord`` (spacing ``step`` where only one pixel)."""
    if coord.size < 2:
        return np.array([coord[0] - step / 2, coord[0] + step / 2])
    middle = (coord[1:] + coord[:-1]) / 2
    return np.concatenate([[2 * coord[0] - middle[0]], middle, [2 * coord[-1] - middle[-1]]])


def axis_labels(da: xr.DataArray, ydim: Hashable, xdim: Hashable) -> tuple[str, str, bool]:
    """Axis labels with units and CRS (``x [m], EPSG:32633``), and whether it is geographic."""
    crs = da.rio.crs
    if crs is None:
        return str(ydim), str(xdim), False
    epsg = crs.to_epsg()
    name = f"EPSG:{epsg}" if epsg else _crs_name(crs)
    if crs.is_geographic:
        return f"latitude [°], {name}", f"longitude [°], {name}", True
    unit = UNITS.get(crs.linear_units, crs.linear_units)
    return f"y [{unit}], {name}", f"x [{unit}], {name}", False


def _crs_name(crs: Any) -> str:
    """The CRS's name, or its projection method when it has none (``unknown``, ``undefined``)."""
    import pyproj

    full = pyproj.CRS.from_wkt(crs.to_wkt())
    if full.name and full.name.lower() not in ("unknown", "undefined"):
        return str(full.name)
    operation = full.coordinate_operation
    if operation is not None and operation.method_name:
        return str(operation.method_name)
    return str(full.to_dict().get("proj") or full.name or "CRS without a name")


def _stride(da: xr.DataArray, ydim: Hashable, xdim: Hashable, pixels: tuple[int, int]) -> int:
    """Take every n-th pixel so that the panel still has about ``pixels`` (rows, columns)."""
    rows, cols = pixels
    return max(1, int(min(da.sizes[ydim] / max(rows, 1), da.sizes[xdim] / max(cols, 1))))


def _rotation(da: xr.DataArray, ydim: Hashable, xdim: Hashable) -> Any:
    """The affine transform of a rotated (or sheared) raster, as rioxarray reads it; else None.

    Such a raster has no 1-D ``x``/``y`` coordinates (rioxarray gives it 2-D ``xc``/``yc``).
    """
    if xdim in da.coords or ydim in da.coords or da.rio.crs is None:
        return None
    transform = da.rio.transform()
    return transform if transform.b or transform.d else None


def _rotated_grid(
    da: xr.DataArray, ydim: Hashable, xdim: Hashable, stride: int, transform: Any
) -> Grid:
    """The map coordinates of the corners of every ``stride``-th pixel of a rotated ``da``."""

    def edges(n: int) -> np.ndarray:  # of the pixels s // 2, s // 2 + s, ... kept
        kept = len(range(stride // 2, n, stride))
        return np.clip(stride // 2 + 0.5 - stride / 2 + stride * np.arange(kept + 1), 0, n)

    col, row = np.meshgrid(edges(da.sizes[xdim]), edges(da.sizes[ydim]))
    x, y = transform * (col, row)
    ylabel, xlabel, _ = axis_labels(da, ydim, xdim)
    extent = (float(x.min()), float(x.max()), float(y.min()), float(y.max()))
    return Grid(x=x, y=y, extent=extent, regular=False, xlabel=xlabel, ylabel=ylabel, aspect=1)


def grid(da: xr.DataArray, ydim: Hashable, xdim: Hashable, stride: int = 1) -> Grid:
    """The extent of ``da``'s pixel edges, (left, right, bottom, top), and its labels.

    For a rotated raster, the corners of its every ``stride``-th pixel in map coordinates
    (``da`` is then the array before decimation, whose transform they come from).
    """
    transform = _rotation(da, ydim, xdim)
    if transform is not None:
        return _rotated_grid(da, ydim, xdim, stride, transform)
    x = np.asarray(da[xdim].values if xdim in da.coords else np.arange(da.sizes[xdim]), float)
    y = np.asarray(da[ydim].values if ydim in da.coords else np.arange(da.sizes[ydim]), float)
    (dx, xreg), (dy, yreg) = _step(x), _step(y)
    if x.size < 2 or y.size < 2:
        from rioxarray.exceptions import RioXarrayError

        try:
            rx, ry = da.rio.resolution()
        except RioXarrayError:  # no transform: square pixels, as wide as the other side's
            size = abs(dy if x.size < 2 else dx) if max(x.size, y.size) > 1 else 1.0
            rx, ry = size, -size
        dx, dy = (rx if x.size < 2 else dx), (ry if y.size < 2 else dy)
    xe, ye = _edges(x, dx), _edges(y, dy)
    ylabel, xlabel, geographic = axis_labels(da, ydim, xdim)
    aspect = 1 / math.cos(math.radians(float(np.clip(np.mean(y), -89, 89)))) if geographic else 1
    return Grid(
        x=xe,
        y=ye,
        extent=(float(xe.min()), float(xe.max()), float(ye.min()), float(ye.max())),
        regular=xreg and yreg,
        xlabel=xlabel,
        ylabel=ylabel,
        aspect=aspect,
    )


def nodata_mask(values: np.ndarray, nodata: float | None) -> np.ma.MaskedArray:
    """``values`` masked where NaN or equal to the nodata value."""
    mask = np.isnan(values) if values.dtype.kind in "fc" else np.zeros(values.shape, bool)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        mask |= values == nodata
    return np.ma.MaskedArray(values, mask=mask)


def _nodata(da: xr.DataArray) -> float | None:
    """The nodata value of ``da`` as rioxarray's ``rio.nodata`` reads it.

    ``_FillValue``, ``missing_value``, ``fill_value`` or ``nodata`` in its attributes;
    NaN where xarray decoded a ``_FillValue`` of the encoding (already NaN). A NaN
    nodata value of an integer raster, which no pixel can equal, is no nodata.
    """
    if da.dtype.kind in "iub":
        for where in (da.attrs, da.encoding):
            for key in ("_FillValue", "missing_value", "fill_value", "nodata"):
                value = where.get(key)
                if isinstance(value, float | np.floating) and math.isnan(value):
                    return None
    return da.rio.nodata


def select(
    arrays: Sequence[xr.DataArray], *, time: Any, max_panels: int
) -> tuple[list[tuple[xr.DataArray, str, str]], int, Hashable | None]:
    """The 2-D arrays to draw (lazy), each with its title and variable, and how many are left.

    Panels go variable by variable, step by step along the panel dim; only the first
    ``max_panels`` are kept.
    """
    chosen: list[tuple[xr.DataArray, str, str]] = []
    total = 0
    dims: set[Hashable] = set()
    for da in arrays:
        ydim, xdim = spatial_dims(da)
        dim = panel_dim(da, ydim, xdim)
        squeeze = [d for d in da.dims if d not in (ydim, xdim, dim)]
        da = da.isel(dict.fromkeys(squeeze, 0))
        name = str(da.name) if da.name is not None else ""
        if dim is None:
            if time is not None:
                raise ValueError(f"{name or 'the array'} has no time steps: leave out time=")
            scalar = [c for c in ("time", "year") if c in da.coords and da[c].ndim == 0]
            label = _label(da[scalar[0]].values, scalar[0]) if scalar else ""
            steps: list[tuple[xr.DataArray, str]] = [(da, label)]
        else:
            dims.add(dim)
            positions = _positions(da, dim, time)
            steps = [
                (da.isel({dim: i}), _label(da[dim].values[i], dim) if dim in da.coords else "")
                for i in positions
            ]
        total += len(steps)
        room = max_panels - len(chosen)
        chosen.extend((step, title, name) for step, title in steps[: max(room, 0)])
    return chosen, total - len(chosen), (dims.pop() if len(dims) == 1 else None)


def prepare(chosen: list[tuple[xr.DataArray, str, str]], pixels: tuple[int, int]) -> list[Panel]:
    """Decimate each chosen array to about ``pixels``, compute them together, turn north up.

    Only these (strided) arrays are computed, in one pass: a dask array's chunks of
    other time steps are never read, and no panel is larger than the screen needs.
    """
    small = []
    for da, _, _ in chosen:
        ydim, xdim = spatial_dims(da)
        s = _stride(da, ydim, xdim, pixels)
        small.append(da.isel({ydim: slice(s // 2, None, s), xdim: slice(s // 2, None, s)}))
    datas = [d.transpose(*spatial_dims(d)).data for d in small]
    if any(hasattr(d, "dask") for d in datas):
        import dask
        import dask.threaded

        # without distributed imported there is no client: threads, as dask would pick,
        # handed over as a function (a name or None has dask import distributed to look
        # for a client, seconds at startup)
        scheduler = None if "distributed" in sys.modules else dask.threaded.get
        datas = list(dask.compute(*datas, scheduler=scheduler))
    panels = []
    for (da, title, name), part, data in zip(chosen, small, datas, strict=True):
        ydim, xdim = spatial_dims(part)
        where = grid(part, ydim, xdim)
        if _rotation(da, ydim, xdim) is not None:
            where = grid(da, ydim, xdim, stride=_stride(da, ydim, xdim, pixels))
        values = nodata_mask(np.asarray(data), _nodata(da))
        if where.regular:
            if where.y.size > 1 and where.y[-1] > where.y[0]:
                values = values[::-1]
            if where.x.size > 1 and where.x[-1] < where.x[0]:
                values = values[:, ::-1]
        limits = grid(da, *spatial_dims(da)).extent
        panels.append(Panel(values, where, limits, title=title, variable=name))
    return panels
