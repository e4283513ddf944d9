"""Masks from quality bands, as pure lazy functions.

Sentinel-2 L2A's scene classification layer (SCL) gives every 20 m pixel a class:

== =========================  == ==========================
0  no data                    6  water
1  saturated or defective     7  unclassified
2  dark area pixels           8  cloud, medium probability
3  cloud shadows              9  cloud, high probability
4  vegetation                 10 thin cirrus
5  not vegetated              11 snow or ice
== =========================  == ==========================
"""

from __future__ import annotations

from collections.abc import Iterable

import xarray as xr

from lazyraster.errors import MissingBandError

__all__ = ["SCL_CLASSES", "SCL_INVALID", "mask_clouds"]

SCL_CLASSES = {
    0: "no data",
    1: "saturated or defective",
    2: "dark area pixels",
    3: "cloud shadows",
    4: "vegetation",
    5: "not vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud medium probability",
    9: "cloud high probability",
    10: "thin cirrus",
    11: "snow or ice",
}
SCL_INVALID = (0, 1, 3, 8, 9, 10, 11)
"""Classes masked by default: no data, defective, shadows, clouds, cirrus, snow."""


def mask_clouds(
    ds: xr.Dataset, *, scl: str = "SCL", classes: Iterable[int] = SCL_INVALID
) -> xr.Dataset:
    """Set pixels of the given SCL classes (and where SCL is missing) to NaN.

    Parameters
    ----------
    ds : xarray.Dataset
        Bands and a scene classification variable on the same grid (load it with
        the bands, e.g. ``bands=["red", "nir", "SCL"]``).
    scl : str, keyword-only
        Name of the scene classification variable.
    classes : iterable of int, keyword-only
        SCL classes to mask; default :data:`SCL_INVALID`. Pass e.g.
        ``(0, 1, 3, 8, 9, 10)`` to keep snow.

    Returns
    -------
    xarray.Dataset
        Every variable but ``scl`` masked, lazily on dask; ``scl`` unchanged.

    Raises
    ------
    MissingBandError
        If ``ds`` has no ``scl`` variable.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"red": ("x", np.float32([0.1, 0.2, 0.3])),
    ...                  "SCL": ("x", np.float32([4, 9, 3]))})
    >>> mask_clouds(ds).red.values
    array([0.1, nan, nan], dtype=float32)
    """
    if scl not in ds.data_vars:
        raise MissingBandError(
            f"no scene classification variable {scl!r} (the Dataset has: "
            f"{', '.join(map(str, ds.data_vars))}); load the SCL asset with the bands, "
            "or pass scl=<variable name>"
        )
    classes = sorted({int(c) for c in classes})
    layer = ds[scl]
    valid = layer.notnull() & ~layer.isin(classes)
    masked = ds.drop_vars(scl).where(valid)
    masked[scl] = layer
    return masked[list(ds.data_vars)]
