"""The spring index of a Dataset with Daymet's variable names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import xarray as xr

from lazyraster.errors import MissingBandError
from lazyraster.phenology._kernels import _EVENTS, PLANTS
from lazyraster.phenology._spring_index import spring_index


def spring_index_dataset(
    ds: xr.Dataset,
    *,
    tmin: str = "tmin",
    tmax: str = "tmax",
    dayl: str | None = "dayl",
    lat: str | float | xr.DataArray | None = "lat",
    plants: Sequence[str] = PLANTS,
    events: Sequence[str] = _EVENTS,
    max_doy: int = 240,
    convention: Literal["six", "ml_si"] = "six",
) -> xr.Dataset:
    """Compute :func:`spring_index` on a Dataset with Daymet variable names.

    Day length comes from the ``dayl`` variable when the Dataset has it (and the
    convention is ``"six"``); otherwise from latitude: the ``lat`` variable or
    coordinate (Daymet's 2-D ``lat``), or the value passed as ``lat``.

    Parameters
    ----------
    ds : xarray.Dataset
        Daily ``tmin``, ``tmax`` (degrees C unless their ``units`` say ``degF``) and,
        optionally, ``dayl`` (seconds), with a ``time`` dimension.
    tmin, tmax, dayl : str, keyword-only
        Variable names; ``dayl=None`` ignores a day-length variable.
    lat : str, float or xarray.DataArray, keyword-only
        Name of the latitude variable or coordinate, or the latitude itself.
    plants, events, max_doy, convention : keyword-only
        As in :func:`spring_index`.

    Returns
    -------
    xarray.Dataset
        As :func:`spring_index`, with the Dataset's attributes kept.

    Raises
    ------
    MissingBandError
        If ``tmin`` or ``tmax`` is missing, or neither day length nor latitude is there.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> time = pd.date_range("2021-01-01", "2021-08-31", freq="D")
    >>> warm = 20 * np.sin(np.pi * (np.arange(time.size) - 15) / 365)
    >>> ds = xr.Dataset(
    ...     {"tmin": ("time", warm - 5), "tmax": ("time", warm + 5)},
    ...     coords={"time": time, "lat": 40.0},
    ... )
    >>> ds.geo.spring_index_dataset().first_leaf.sel(plant="average").item()
    70.0
    """
    for role, name in (("tmin", tmin), ("tmax", tmax)):
        if name not in ds.variables:
            have = ", ".join(map(str, ds.data_vars)) or "no variables"
            raise MissingBandError(
                f"{role} variable {name!r} is not in the Dataset (it has: {have}). "
                f"Pass {role}=<variable name>."
            )
    kwargs: dict[str, Any] = {
        "plants": plants,
        "events": events,
        "max_doy": max_doy,
        "convention": convention,
    }
    if dayl is not None and dayl in ds.variables and convention == "six":
        out = spring_index(ds[tmin], ds[tmax], dayl=ds[dayl], **kwargs)
    else:
        if isinstance(lat, str):
            if lat not in ds.variables:
                raise MissingBandError(
                    f"Neither a day-length variable {dayl!r} nor a latitude {lat!r} is in "
                    "the Dataset. Pass dayl=<variable> (seconds) or lat=<name or degrees north>."
                )
            lat = ds[lat]
        out = spring_index(ds[tmin], ds[tmax], lat=lat, **kwargs)
    out.attrs = {**ds.attrs, **out.attrs}
    return out
