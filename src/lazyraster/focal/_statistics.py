"""The six focal statistics and the xarray layer they share (see :mod:`lazyraster.focal`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import dask.array as dsa
import numpy as np
import xarray as xr

from lazyraster.focal._windows import _check_options, _filter_block, _filter_dask, _float_dtype

T = TypeVar("T", xr.DataArray, xr.Dataset)
F = TypeVar("F", bound=Callable[..., Any])
Shape = Literal["square", "circle"]
Edge = Literal["nodata", "reflect", "nearest"]
MinCount = int | Literal["all"]


def _focal_dataarray(da: xr.DataArray, **options: Any) -> xr.DataArray:
    stat = options["stat"]
    if da.ndim < 2:
        raise ValueError(
            f"focal_{stat} needs a raster with two spatial dims (y, x); "
            f"{da.name or 'the DataArray'} has dims {da.dims}"
        )
    if da.dtype.kind not in "biuf":
        raise TypeError(
            f"focal_{stat} works on real numbers; {da.name or 'the DataArray'} has dtype "
            f"{da.dtype}. Convert it first, e.g. da.astype('float32')."
        )
    dims = da.dims
    if "y" in dims and "x" in dims and dims[-2:] != ("y", "x"):
        order = [d for d in dims if d not in ("y", "x")] + ["y", "x"]
        return _focal_dataarray(da.transpose(*order), **options).transpose(*dims)
    data = da.data
    ftype = _float_dtype(da.dtype)
    if isinstance(data, dsa.Array):
        if data.dtype != ftype:
            data = data.astype(ftype)
        result = _filter_dask(data, **options)
    else:
        values = np.asarray(data, dtype=ftype)
        result = _filter_block(values, **options, pad_axes=(True, True))
    return da.copy(deep=False, data=result)


_WINDOW_PARAMETERS = """\
obj : xarray.DataArray or xarray.Dataset
        Raster(s) with two spatial dims (``y``, ``x``, or the last two) and any leading
        dims, numpy- or dask-backed. NaN marks missing pixels.
    size : int, keyword-only
        Odd window side in pixels; the radius is ``size // 2``.
    shape : {"square", "circle"}, keyword-only
        Window shape; a circle holds the pixels with ``dy**2 + dx**2 <= (size // 2)**2``.
    min_count : int or "all", keyword-only
        Fewest valid pixels in the window for a result, NaN otherwise; ``"all"`` asks for
        every pixel of the window.
    edge : {"nodata", "reflect", "nearest"}, keyword-only
        Beyond the border: missing (``"nodata"``), mirrored with the edge pixel repeated
        (``"reflect"``, scipy's ``mode="reflect"``) or the edge pixel (``"nearest"``).
        See :mod:`lazyraster.focal`."""

_RETURNS = """\
Returns
    -------
    xarray.DataArray or xarray.Dataset
        Same type, dims, coords (CRS included), name and attributes as ``obj``; float32,
        lazy when ``obj`` is dask-backed."""


def _shared_doc(func: F) -> F:
    """Fill the parameters and returns that every focal statistic shares into its docstring."""
    func.__doc__ = (
        (func.__doc__ or "")
        .replace("%(window_parameters)s", _WINDOW_PARAMETERS)
        .replace("%(returns)s", _RETURNS)
    )
    return func


def _focal(
    obj: T,
    stat: str,
    *,
    size: int,
    shape: Shape,
    min_count: MinCount,
    edge: Edge,
    ddof: int = 0,
) -> T:
    count = _check_options(size, shape, min_count, edge, ddof)
    options = {
        "stat": stat,
        "size": int(size),
        "shape": shape,
        "min_count": count,
        "ddof": int(ddof),
        "edge": edge,
    }
    if isinstance(obj, xr.Dataset):
        return obj.map(
            lambda v: _focal_dataarray(v, **options) if v.ndim >= 2 else v,
            keep_attrs=True,
        )
    if isinstance(obj, xr.DataArray):
        return _focal_dataarray(obj, **options)
    raise TypeError(
        f"focal_{stat} takes an xarray DataArray or Dataset; got {type(obj).__name__}. "
        "Wrap a numpy array with xr.DataArray(values, dims=('y', 'x'))."
    )


@_shared_doc
def focal_mean(
    obj: T,
    *,
    size: int = 3,
    shape: Shape = "square",
    min_count: MinCount = 1,
    edge: Edge = "nodata",
) -> T:
    """Mean of the valid pixels in a moving window.

    Running sums: on squares the cost per pixel does not grow with ``size``.

    Parameters
    ----------
    %(window_parameters)s

    %(returns)s

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(9.0).reshape(3, 3), dims=("y", "x"))
    >>> focal_mean(da).values  # border windows have fewer valid pixels
    array([[2. , 2.5, 3. ],
           [3.5, 4. , 4.5],
           [5. , 5.5, 6. ]], dtype=float32)
    >>> focal_mean(da, min_count="all").values  # as convolve(mode="constant", cval=nan)
    array([[nan, nan, nan],
           [nan,  4., nan],
           [nan, nan, nan]], dtype=float32)
    """
    return _focal(obj, "mean", size=size, shape=shape, min_count=min_count, edge=edge)


@_shared_doc
def focal_sum(
    obj: T,
    *,
    size: int = 3,
    shape: Shape = "square",
    min_count: MinCount = 1,
    edge: Edge = "nodata",
) -> T:
    """Sum of the valid pixels in a moving window (NaN where fewer than ``min_count``).

    Parameters
    ----------
    %(window_parameters)s

    %(returns)s

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(9.0).reshape(3, 3), dims=("y", "x"))
    >>> focal_sum(da, edge="nearest").values
    array([[12., 18., 24.],
           [30., 36., 42.],
           [48., 54., 60.]], dtype=float32)
    """
    return _focal(obj, "sum", size=size, shape=shape, min_count=min_count, edge=edge)


@_shared_doc
def focal_std(
    obj: T,
    *,
    size: int = 3,
    shape: Shape = "square",
    min_count: MinCount = 1,
    edge: Edge = "nodata",
    ddof: int = 0,
) -> T:
    """Standard deviation of the valid pixels in a moving window.

    Sums of squares are accumulated in float64 around the mean of each block (each dask
    chunk, or the whole image), which keeps the variance accurate for values far from zero
    (temperatures in kelvin, reflectance x 10000). Blocks that mix very different
    magnitudes, such as unmasked fill values of -9999 next to small data, lose some of that
    accuracy: mask fill values as NaN first.

    Parameters
    ----------
    %(window_parameters)s
    ddof : int, keyword-only
        Delta degrees of freedom: the divisor is ``n - ddof`` for ``n`` valid pixels
        (0, the default, gives the population standard deviation, as ``np.nanstd``).

    %(returns)s

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(9.0).reshape(3, 3), dims=("y", "x"))
    >>> round(float(focal_std(da)[1, 1]), 6)  # population std of 0..8
    2.581989
    """
    return _focal(obj, "std", size=size, shape=shape, min_count=min_count, edge=edge, ddof=ddof)


@_shared_doc
def focal_min(
    obj: T,
    *,
    size: int = 3,
    shape: Shape = "square",
    min_count: MinCount = 1,
    edge: Edge = "nodata",
) -> T:
    """Minimum of the valid pixels in a moving window.

    Parameters
    ----------
    %(window_parameters)s

    %(returns)s

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(9.0).reshape(3, 3), dims=("y", "x"))
    >>> focal_min(da, shape="circle").values  # size 3 circle: the pixel and 4 neighbours
    array([[0., 0., 1.],
           [0., 1., 2.],
           [3., 4., 5.]], dtype=float32)
    """
    return _focal(obj, "min", size=size, shape=shape, min_count=min_count, edge=edge)


@_shared_doc
def focal_max(
    obj: T,
    *,
    size: int = 3,
    shape: Shape = "square",
    min_count: MinCount = 1,
    edge: Edge = "nodata",
) -> T:
    """Maximum of the valid pixels in a moving window.

    Parameters
    ----------
    %(window_parameters)s

    %(returns)s

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(9.0).reshape(3, 3), dims=("y", "x"))
    >>> focal_max(da, edge="reflect").values
    array([[4., 5., 5.],
           [7., 8., 8.],
           [7., 8., 8.]], dtype=float32)
    """
    return _focal(obj, "max", size=size, shape=shape, min_count=min_count, edge=edge)


@_shared_doc
def focal_median(
    obj: T,
    *,
    size: int = 3,
    shape: Shape = "square",
    min_count: MinCount = 1,
    edge: Edge = "nodata",
) -> T:
    """Median of the valid pixels in a moving window.

    For an even count of valid pixels, the mean of the two middle values (as
    ``np.nanmedian``).

    Parameters
    ----------
    %(window_parameters)s

    %(returns)s

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(9.0).reshape(3, 3), dims=("y", "x"))
    >>> focal_median(da).values
    array([[2. , 2.5, 3. ],
           [3.5, 4. , 4.5],
           [5. , 5.5, 6. ]], dtype=float32)
    """
    return _focal(obj, "median", size=size, shape=shape, min_count=min_count, edge=edge)
