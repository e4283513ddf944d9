"""Spectral indices: pure functions on xarray objects, lazy on dask, eager on numpy.

The whole Awesome Spectral Indices catalogue (280 indices, MIT; see
``lazyraster/data/spectral-indices/PROVENANCE.md``) is available by name:

>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset({b: ("x", np.array([v])) for b, v in
...                  [("blue", 0.05), ("green", 0.08), ("red", 0.06), ("nir", 0.40)]})
>>> float(index(ds, "NDVI")[0])
0.739130437374115
>>> list(compute_indices(ds, ["NDVI", "SAVI", "EVI"], L=0.5).data_vars)
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

from lazyraster.indices._compute import compute_indices, index, indices, ndvi, normalized_difference
from lazyraster.indices._registry import BAND_VARIABLES, SpectralIndex, index_info, list_indices

__all__ = [
    "BAND_VARIABLES",
    "KERNELS",
    "SpectralIndex",
    "compute_indices",
    "index",
    "index_info",
    "indices",
    "list_indices",
    "ndvi",
    "normalized_difference",
]

#: Modules of this package that define numba kernels (read by :func:`lazyraster.warmup`).
KERNELS = ("lazyraster.indices._expression",)
