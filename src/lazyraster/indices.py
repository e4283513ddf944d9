"""Spectral indices: pure functions on xarray objects, lazy on dask, eager on numpy.

Each function takes a Dataset whose variables are named by STAC ``eo:common_name``
(``red``, ``nir``, ...), or the DataArrays themselves, and returns a float32 DataArray
with the inputs' dims, coords (CRS included) and attributes.
"""

from __future__ import annotations

import numba
import numpy as np
import xarray as xr

from lazyraster.errors import MissingBandError

__all__ = ["ndvi", "normalized_difference"]

_ND_SIGNATURES = [
    "float32(float32, float32)",
    "float32(float64, float64)",
    "float32(uint16, uint16)",
    "float32(int16, int16)",
    "float32(uint8, uint8)",
]


@numba.vectorize(_ND_SIGNATURES, nopython=True, cache=True)
def _normalized_difference_kernel(a, b):  # pragma: no cover - compiled
    a32 = np.float32(a)
    b32 = np.float32(b)
    total = a32 + b32
    if total == 0:
        return np.float32(np.nan)
    return (a32 - b32) / total


def _normalized_difference_block(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Apply the kernel to one block; NaN inputs are expected, not warned about."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return _normalized_difference_kernel(a, b)


def _band(ds: xr.Dataset, name: str, role: str) -> xr.DataArray:
    """Return variable ``name`` of ``ds`` or raise an error naming what exists."""
    if name not in ds.data_vars:
        have = ", ".join(map(str, ds.data_vars)) or "no variables"
        raise MissingBandError(
            f"{role} band {name!r} is not in the Dataset (it has: {have}). "
            f"Pass {role}=<variable name>, or load the catalog with bands named by "
            "their STAC common name."
        )
    return ds[name]


def normalized_difference(a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    """Compute ``(a - b) / (a + b)`` in float32.

    The result is NaN where either input is NaN or where ``a + b == 0``. Works
    lazily on dask-backed inputs (no computation happens here) and eagerly on
    numpy-backed ones.

    Parameters
    ----------
    a, b : xarray.DataArray
        Bands on the same grid. Integer inputs (uint8, int16, uint16) are converted
        to float32 inside the kernel, without a full-size temporary.

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
    if a.dtype != b.dtype:
        common = np.promote_types(np.promote_types(a.dtype, b.dtype), np.float32)
        a, b = a.astype(common), b.astype(common)
    out = xr.apply_ufunc(
        _normalized_difference_block,
        a,
        b,
        dask="parallelized",
        output_dtypes=[np.float32],
        keep_attrs=True,
    )
    return out


def ndvi(ds: xr.Dataset, *, red: str = "red", nir: str = "nir") -> xr.DataArray:
    """Compute the Normalized Difference Vegetation Index, ``(nir - red) / (nir + red)``.

    Parameters
    ----------
    ds : xarray.Dataset
        Reflectance bands named by STAC common name; nodata already NaN (as
        :func:`lazyraster.load` returns them).
    red, nir : str, keyword-only
        Names of the red and near-infrared variables.

    Returns
    -------
    xarray.DataArray
        ``ndvi``, float32 in [-1, 1], NaN where an input is NaN or ``red + nir == 0``;
        the CRS (``spatial_ref``) and the Dataset's attributes are kept.

    Raises
    ------
    MissingBandError
        If ``ds`` has no ``red`` or ``nir`` variable.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"red": ("x", np.array([0.1, 0.2])), "nir": ("x", np.array([0.5, 0.2]))})
    >>> ndvi(ds).round(3).values
    array([0.667, 0.   ], dtype=float32)
    """
    out = normalized_difference(_band(ds, nir, "nir"), _band(ds, red, "red"))
    out.attrs = {
        **ds.attrs,
        "long_name": "Normalized Difference Vegetation Index",
        "units": "1",
    }
    return out.rename("ndvi")
