"""netCDF files (Daymet-like): one asset per file, items per file or per group.

The grid comes from the 1-D ``x``/``y`` (or ``lon``/``lat``) coordinates and its CRS
from the CF grid mapping variable named by the data variables' ``grid_mapping``
attribute, else from the CRS the caller gives (``catalog build --crs``), else WGS84
when the grid is plain latitude/longitude. Each file is opened and the first and last
value of every gridded variable decoded, so a truncated file is found when cataloguing.
``start_datetime`` and ``end_datetime`` come from the time axis, or from its CF
``bounds`` when present.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import rasterio.crs
import rasterio.errors
import xarray as xr
from affine import Affine

from lazyraster.catalog import _stac
from lazyraster.catalog._stac import ReadProblem

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")
#: The netCDF-C and HDF5 libraries are not thread-safe: one header read at a time.
_NETCDF_LOCK = threading.Lock()
_X_NAMES = ("x", "lon", "longitude", "rlon")
_Y_NAMES = ("y", "lat", "latitude", "rlat")


def _to_datetime(value: Any) -> _dt.datetime:
    """Numpy datetime64 or cftime object -> naive datetime (UTC)."""
    if isinstance(value, np.datetime64):
        text = np.datetime_as_string(value.astype("datetime64[us]"), unit="us")
        return _dt.datetime.fromisoformat(text)
    if hasattr(value, "isoformat"):  # cftime (any calendar)
        return _dt.datetime.fromisoformat(value.isoformat().replace(" ", "T")[:26])
    raise ReadProblem(f"cannot read a date from {value!r}")


def _axis(ds: xr.Dataset, names: tuple[str, ...]) -> xr.DataArray | None:
    for name in names:
        if name in ds.coords and ds[name].ndim == 1 and name in ds.dims:
            return ds[name]
    return None


def _spacing(coord: xr.DataArray) -> tuple[float, float]:
    values = np.asarray(coord.values, dtype="float64")
    if values.size < 2:
        raise ReadProblem(f"axis {coord.name!r} has fewer than 2 points; its spacing is unknown")
    steps = np.diff(values)
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        raise ReadProblem(f"axis {coord.name!r} is not regularly spaced")
    scale = 1000.0 if coord.attrs.get("units") == "km" else 1.0
    return float(values[0]) * scale, float(steps[0]) * scale


def _jsonable(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


@functools.lru_cache(maxsize=32)
def _cf_crs(attrs_json: str) -> rasterio.crs.CRS:
    """CRS of CF grid-mapping attributes (cached: pyproj's datum search takes ~0.5 s)."""
    crs = pyproj.CRS.from_cf(json.loads(attrs_json))
    return rasterio.crs.CRS.from_wkt(crs.to_wkt())


class _MissingCRS(ReadProblem):
    """A netCDF file has no CF grid mapping and no CRS was given."""


def parse_crs(value: str | rasterio.crs.CRS | None) -> rasterio.crs.CRS | None:
    """A CRS from ``EPSG:XXXX``, WKT or PROJ text; None stays None.

    What :func:`build_catalog`'s ``crs=`` (and ``lazyraster catalog build --crs``)
    takes for netCDF files without a CF grid mapping; checked before any file is read.

    Parameters
    ----------
    value : str, rasterio CRS or None
        ``EPSG:XXXX``, WKT or PROJ text; a CRS and None are returned as they are.

    Returns
    -------
    rasterio.crs.CRS or None

    Raises
    ------
    ValueError
        If GDAL/PROJ does not understand ``value`` (GDAL's own message is not printed).

    Examples
    --------
    >>> from lazyraster.catalog import parse_crs
    >>> parse_crs("EPSG:3035").to_epsg()
    3035
    >>> parse_crs("EPSG:99999")
    Traceback (most recent call last):
    ...
    ValueError: CRS 'EPSG:99999' is not understood: give it as EPSG:XXXX, WKT or PROJ text
    """
    if value is None or isinstance(value, rasterio.crs.CRS):
        return value
    try:
        with rasterio.Env():  # GDAL's errors go to rasterio, not printed on stderr
            return rasterio.crs.CRS.from_user_input(value)
    except (rasterio.errors.CRSError, ValueError):
        raise ValueError(
            f"CRS {value!r} is not understood: give it as EPSG:XXXX, WKT or PROJ text"
        ) from None


def _crs(
    ds: xr.Dataset, data_vars: list[str], x: xr.DataArray, given: rasterio.crs.CRS | None
) -> rasterio.crs.CRS:
    mapping_names = {ds[v].attrs.get("grid_mapping") for v in data_vars} - {None}
    mapping_names |= {ds[v].encoding.get("grid_mapping") for v in data_vars} - {None}
    if len(mapping_names) > 1:
        raise ReadProblem(f"variables use different grid mappings {sorted(mapping_names)}")
    if mapping_names:
        name = mapping_names.pop()
        if name not in ds.variables:
            raise ReadProblem(f"grid mapping variable {name!r} is missing")
        key = json.dumps(dict(ds[name].attrs), sort_keys=True, default=_jsonable)
        try:
            stated = _cf_crs(key)
        except pyproj.exceptions.CRSError as exc:
            raise ReadProblem(
                f"grid mapping {name!r} is not a valid CF grid mapping ({exc})"
            ) from None
        if given is not None and given != stated:
            raise ReadProblem(
                f"its grid mapping {name!r} says {stated.to_string()} but --crs says "
                f"{given.to_string()}; leave --crs out for files that state their CRS"
            )
        return stated
    if given is not None:
        return given
    if x.name in ("lon", "longitude"):
        return rasterio.crs.CRS.from_epsg(4326)
    raise _MissingCRS("has no CF grid mapping")


def read_netcdf(
    path: Path, *, checksum: bool = False, crs: rasterio.crs.CRS | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read one netCDF file's header: its asset and what the item needs from it.

    ``crs`` is the CRS of a file without a CF grid mapping. The first and last value
    of every gridded variable are decoded, so that a truncated file is reported here.

    Returns
    -------
    asset, info
        ``info`` holds ``crs``, ``transform``, ``shape``, ``variables`` (the gridded
        data variables) and ``start``/``end`` datetimes (None without a time axis).
    """
    with _NETCDF_LOCK:
        asset, info = _read_netcdf(path, crs)
    asset.update(_stac.file_fields(path, checksum=checksum))
    return asset, info


def _decode_ends(ds: xr.Dataset, data_vars: list[str]) -> None:
    """Decode the first and last value of each variable (its first and last chunk)."""
    for name in data_vars:
        var = ds[name].variable
        try:
            for index in (0, -1):
                np.asarray(var[(index,) * var.ndim].values)
        except Exception as exc:  # netCDF-C and HDF5 raise many kinds of errors
            raise ReadProblem(
                f"variable {name!r} cannot be decoded ({type(exc).__name__}: {exc}); "
                "the file is truncated or damaged: copy it again"
            ) from None


def _read_netcdf(
    path: Path, given: rasterio.crs.CRS | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        ds = xr.open_dataset(path, decode_times=True, cache=False, decode_timedelta=False)
    except Exception as exc:  # netCDF libraries raise many kinds of errors
        raise ReadProblem(f"not a readable netCDF file ({type(exc).__name__}: {exc})") from None
    with ds:
        x, y = _axis(ds, _X_NAMES), _axis(ds, _Y_NAMES)
        if x is None or y is None:
            raise ReadProblem("has no 1-D x/y (or lon/lat) axes; only gridded files are supported")
        data_vars = sorted(v for v in ds.data_vars if x.name in ds[v].dims and y.name in ds[v].dims)
        if not data_vars:
            raise ReadProblem(f"has no variable on the ({y.name}, {x.name}) grid")
        crs = _crs(ds, data_vars, x, given)
        _decode_ends(ds, data_vars)
        x0, dx = _spacing(x)
        y0, dy = _spacing(y)
        transform = Affine(dx, 0.0, x0 - dx / 2, 0.0, dy, y0 - dy / 2)
        shape = (y.size, x.size)
        start = end = None
        if "time" in ds.coords and ds["time"].size:
            bounds = ds["time"].attrs.get("bounds") or ds["time"].encoding.get("bounds")
            times = ds[bounds] if bounds and bounds in ds.variables else ds["time"]
            values = times.values.ravel()
            if not np.issubdtype(values.dtype, np.number):
                start, end = _to_datetime(values.min()), _to_datetime(values.max())
        titles = {v: ds[v].attrs.get("long_name") for v in data_vars}
        units = {v: ds[v].attrs.get("units") for v in data_vars}
    asset: dict[str, Any] = {"href": str(path), "type": _stac.NETCDF_MEDIA_TYPE}
    if len(data_vars) == 1 and titles[data_vars[0]]:
        asset["title"] = titles[data_vars[0]]
    asset["roles"] = ["data"]
    asset.update(_stac.proj_fields(crs, transform, shape))
    if len(data_vars) == 1 and units[data_vars[0]]:
        asset["unit"] = units[data_vars[0]]
    info = {
        "crs": crs,
        "transform": transform,
        "shape": shape,
        "variables": data_vars,
        "start": start,
        "end": end,
    }
    return asset, info


def netcdf_item(
    item_id: str,
    files: Mapping[str, Path],
    *,
    fields: Mapping[str, str],
    when: _dt.datetime | tuple[_dt.datetime, _dt.datetime] | None = None,
    checksum: bool = False,
    crs: str | rasterio.crs.CRS | None = None,
) -> dict[str, Any]:
    """Make the item of one netCDF file or of a group (one asset per variable file).

    The asset key is the group's ``{variable}`` (or ``{band}``) field when files are
    grouped, else the file's data variable when it has one, else ``data``. The time
    span comes from the files' time axes, else from ``when``. ``crs`` is the CRS of
    files without a CF grid mapping (``catalog build --crs``); when it is needed and
    not given, the message names every file of the group that lacks one.
    """
    given = parse_crs(crs)
    assets: dict[str, dict[str, Any]] = {}
    boxes, starts, ends, codes = [], [], [], set()
    lacking = []
    for key, path in files.items():
        try:
            asset, info = read_netcdf(path, checksum=checksum, crs=given)
        except _MissingCRS:
            lacking.append(path.name)
            continue
        if key == "data" and len(info["variables"]) == 1:
            key = info["variables"][0]
        assets[key] = asset
        boxes.append(_stac.footprint(info["crs"], info["transform"], info["shape"])[0])
        codes.add(asset["proj:code"])
        if info["start"] is not None:
            starts.append(info["start"])
            ends.append(info["end"])
    if lacking:
        names = ", ".join(path.name for path in files.values())
        which = "any of its files" if len(lacking) == len(files) else ", ".join(lacking)
        raise ReadProblem(
            f"has no CF grid mapping in {which} (files: {names}): give their CRS with "
            "`catalog build --crs EPSG:XXXX` (build_catalog(crs=...)), or add a grid_mapping "
            "attribute to their variables (CF conventions), or use lat/lon axes"
        )
    properties: dict[str, Any] = {"datetime": None}
    if starts:
        start, end = min(starts), max(ends)
    elif isinstance(when, tuple):
        start, end = when
    elif when is not None:
        start = end = when
    else:
        raise ReadProblem("has no time axis: give a --pattern with {date} or {year}, or --datetime")
    if start == end:
        properties["datetime"] = _stac.format_datetime(start)
    else:
        properties["start_datetime"] = _stac.format_datetime(start)
        properties["end_datetime"] = _stac.format_datetime(end)
    properties.update(fields)
    if len(codes) == 1:
        properties["proj:code"] = codes.pop()
    bbox, geometry = _stac.bbox_geometry(_stac.union_bbox(boxes))
    return _stac.new_item(
        item_id,
        bbox=bbox,
        geometry=geometry,
        properties=properties,
        assets=assets,
        extensions={_stac.PROJ_EXT, _stac.FILE_EXT},
    )
