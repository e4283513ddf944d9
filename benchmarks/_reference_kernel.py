"""The reference kernel of ``bench_startup``: a plain cached numba kernel, no lazyraster.

Applied through xarray + dask the way a user's own code would be, it shows what any
numba + dask program pays on its first call in a fresh process with a warm cache.
"""

from __future__ import annotations

import numba
import numpy as np
import xarray as xr


@numba.njit(cache=True)
def scaled_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover
    """``(a - b) / (a + b)`` element by element, in float32."""
    out = np.empty(a.shape, np.float32)
    for i in range(a.size):
        total = a.flat[i] + b.flat[i]
        out.flat[i] = (a.flat[i] - b.flat[i]) / total if total != 0 else np.nan
    return out


def apply(a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    """:func:`scaled_difference` of two dask-backed arrays, block by block."""
    return xr.apply_ufunc(scaled_difference, a, b, dask="parallelized", output_dtypes=[np.float32])
