"""Focal mean: lazyraster against scipy.ndimage.convolve and xarray-spatial.

Input: one float32 band with 20 % NaN (uniform values, fixed seed); dask cases use
2048 x 2048 chunks and the threaded scheduler. Every case produces the focal mean as a
computed array.

- ``scipy.ndimage.convolve 9x9`` (baseline): the course script, a normalized 9 x 9 kernel
  on the whole numpy image, ``mode="constant", cval=nan`` (NaN spreads over each window).
- ``xarray-spatial focal.apply 9x9 (dask)``: its NaN-aware focal mean (``np.nanmean`` per
  window) on the same dask array.
- ``xarray-spatial convolution_2d 9x9 (dask)``: its convolution path with the normalized
  kernel (NaN spreads, like scipy).
- ``lazyraster focal_mean NxN (dask)``: NaN-aware focal mean, 3 x 3, 9 x 9 and 31 x 31
  square windows, and a 9 x 9 circle; ``9x9 (numpy)``: the same kernel on the numpy
  image in one thread.

Needs the ``bench`` extra (``pip install -e .[bench]``) for xarray-spatial.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
import xarray as xr
from xrspatial.convolution import convolution_2d, custom_kernel
from xrspatial.focal import apply as xrs_apply

import lazyraster  # noqa: F401  (registers .geo)
from harness import Case

DEFAULT_SIZE = 10980
CHUNKS = 2048


def make_band(size: int, seed: int = 0) -> np.ndarray:
    """Return a ``size`` x ``size`` float32 band with 20 % NaN."""
    rng = np.random.default_rng(seed)
    band = rng.random((size, size), dtype=np.float32)
    band[rng.random((size, size), dtype=np.float32) < 0.2] = np.nan
    return band


def setup(size: int) -> list[Case]:
    band = make_band(size)
    eager = xr.DataArray(band, dims=("y", "x"))
    lazy = eager.chunk({"y": CHUNKS, "x": CHUNKS})
    kernel9 = np.ones((9, 9), dtype=np.float32) / 81

    def scipy_convolve() -> None:
        ndi.convolve(band, kernel9, mode="constant", cval=np.nan)

    def xrs_focal() -> None:
        xrs_apply(lazy, custom_kernel(np.ones((9, 9)))).compute()

    def xrs_convolution() -> None:
        convolution_2d(lazy, kernel9).compute()

    def ours(n: int, shape: str = "square", data: xr.DataArray = lazy):
        return lambda: data.geo.focal_mean(size=n, shape=shape).compute()

    return [
        Case("scipy.ndimage.convolve 9x9", scipy_convolve, baseline=True),
        Case("xarray-spatial focal.apply 9x9 (dask)", xrs_focal),
        Case("xarray-spatial convolution_2d 9x9 (dask)", xrs_convolution),
        Case("lazyraster focal_mean 3x3 (dask)", ours(3)),
        Case("lazyraster focal_mean 9x9 (dask)", ours(9)),
        Case("lazyraster focal_mean 31x31 (dask)", ours(31)),
        Case("lazyraster focal_mean 9x9 circle (dask)", ours(9, "circle")),
        Case("lazyraster focal_mean 9x9 (numpy)", ours(9, data=eager)),
    ]
