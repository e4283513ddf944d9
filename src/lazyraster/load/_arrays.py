"""Array assets (netCDF, Zarr) read through xarray and fsspec.

Each asset's variable is opened lazily with its packing left alone and decoded here,
so that ``load``'s options mean what they mean for rasters: pixels equal to the nodata
(``nodata=``, else the file's ``_FillValue`` / ``missing_value``) become ``fill``,
``scale=True`` applies the CF ``scale_factor`` and ``add_offset`` (in float64, as
xarray does) before the cast to ``dtype``, and ``scale=False`` gives the stored values
as ``dtype``. The options that change the grid or the GDAL reads are refused
(:data:`REFUSED`): the files load on their own grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pystac
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from rasterio.crs import CRS

from lazyraster.errors import MissingBandError, MissingCRSError
from lazyraster.load._crs import crs_key
from lazyraster.load._grid import _normalize_chunks, _output_crs
from lazyraster.load._items import _Band, _crs_of, _nodata_overrides

#: ``load`` options that netCDF/Zarr assets refuse (when given), with the fix. Every
#: other option is honoured as for rasters (docs/loading.md has the table).
REFUSED = {
    "groupby": (
        "groupby= mosaics raster tiles of one overpass; netCDF/Zarr items are concatenated "
        "along time as they are: drop groupby= (load one region at a time with bbox= or a "
        "filter)"
    ),
    "resampling": (
        "resampling= applies where load changes the grid; netCDF/Zarr assets load on "
        "their own grid: drop resampling= and resample afterwards with "
        "ds.rio.reproject(..., resampling=...)"
    ),
    "resolution": (
        "netCDF/Zarr assets load on their own grid: drop resolution= and resample "
        "afterwards with ds.rio.reproject(..., resolution=...)"
    ),
    "gdal": (
        "gdal= applies to raster assets, which GDAL reads; netCDF/Zarr assets are read "
        "with xarray (h5netcdf, zarr, fsspec): drop gdal="
    ),
}
#: CF attributes that this module decodes (and so drops from the variable's attrs).
_PACKING = ("_FillValue", "missing_value", "scale_factor", "add_offset")


def refuse_options(options: Mapping[str, Any]) -> None:
    """Raise a ValueError naming each given option of :data:`REFUSED` and its fix."""
    given = [name for name in REFUSED if options.get(name) is not None]
    if given:
        raise ValueError("; ".join(f"{name}={options[name]!r}: {REFUSED[name]}" for name in given))


def _decode(
    raw: xr.DataArray, *, dtype: np.dtype, scale: bool, fill: float, nodata: float | None
) -> xr.DataArray:
    """A stored (packed) variable as ``dtype``: nodata -> ``fill``, scale and offset applied.

    The nodata is ``nodata`` if given, else the file's ``_FillValue`` and
    ``missing_value`` (as xarray's CF decoding masks them); NaN nodata matches NaN.
    ``_Unsigned`` integers are read as unsigned, as xarray does.
    """
    attrs = dict(raw.attrs)
    packing = {key: attrs.pop(key) for key in _PACKING if key in attrs}
    missing = [v for key in _PACKING[:2] if key in packing for v in np.ravel(packing[key])]
    if str(attrs.pop("_Unsigned", "")).lower() == "true" and raw.dtype.kind == "i":
        # unsigned integers stored as signed ones (netCDF-3's way), as xarray decodes them
        unsigned = np.dtype(f"u{raw.dtype.itemsize}")
        missing = [np.array(v).astype(raw.dtype).astype(unsigned) for v in missing]
        raw = raw.astype(unsigned)
    if nodata is not None:
        missing = [nodata]
    mask = xr.zeros_like(raw, dtype=bool)
    for value in missing:
        mask = mask | (raw.isnull() if np.isnan(value) else raw == value)
    data = raw
    if scale and ("scale_factor" in packing or "add_offset" in packing):
        # in float64, as xarray's CF decoding does: in float32, 10 - 10.14 is 1e-6 off
        factor, offset = packing.get("scale_factor", 1), packing.get("add_offset", 0)
        data = raw.astype(np.float64) * factor + offset
    data = data.astype(dtype)
    out = data.where(~mask, dtype.type(fill))
    out.attrs = attrs
    return out


def _open_array_asset(asset: pystac.Asset, key: str, chunks: Mapping[str, int]) -> xr.Dataset:
    """One netCDF or Zarr asset as a lazy Dataset of its variable(s), values as stored.

    Data variables keep their packing (no CF masking or scaling: see :func:`_decode`);
    coordinates are decoded as xarray does.
    """
    href = asset.get_absolute_href()
    media_type = (asset.media_type or "").lower()
    options = {"chunks": {}, "decode_coords": "all", "mask_and_scale": False}
    if "zarr" in media_type or (not media_type and href.rstrip("/").lower().endswith(".zarr")):
        ds = xr.open_zarr(href, **options)
    elif "://" in href and not href.startswith("file://"):
        ds = xr.open_dataset(fsspec.open(href).open(), engine="h5netcdf", **options)
    else:
        ds = xr.open_dataset(href, engine="h5netcdf", **options)
    crs = ds.rio.crs  # from the CF grid mapping, if the file has one
    grid_mappings = {v.encoding.get("grid_mapping") for v in ds.data_vars.values()}
    grid_mappings |= {c for c in ds.variables if "grid_mapping_name" in ds[c].attrs}
    names = [key] if key in ds.data_vars else [v for v in ds.data_vars if v not in grid_mappings]
    ds = ds[names].drop_vars([g for g in grid_mappings if g in ds.variables])
    for var in ds.data_vars.values():  # rioxarray would write the CRS back under the old name
        var.encoding.pop("grid_mapping", None)
        var.attrs.pop("grid_mapping", None)
    coords = xr.decode_cf(ds.drop_vars(names), decode_times=False, decode_timedelta=False)
    ds = coords.assign({name: ds[name] for name in names})
    ds = ds.chunk({dim: size for dim, size in chunks.items() if dim in ds.dims})
    return ds.rio.write_crs(crs) if crs is not None else ds


def _array_chunks(chunks: int | Mapping[str, int] | None) -> dict[str, int]:
    """Chunk sizes of array assets: as for rasters, but whole files along time by default.

    One chunk per file along time gives a chunk per year for a file per year, which is
    what the spring index wants.
    """
    _normalize_chunks(chunks)  # the rasters' checks: names and sizes
    if isinstance(chunks, int):
        return {"y": chunks, "x": chunks}
    return {"y": 1024, "x": 1024, **(chunks or {})}


def load_arrays(
    items: Sequence[pystac.Item],
    chosen: Mapping[str, _Band],
    *,
    chunks: int | Mapping[str, int] | None,
    bbox: Sequence[float] | None,
    crs: Any,
    dtype: np.dtype,
    scale: bool,
    fill: float,
    nodata: float | Mapping[str, float] | None,
) -> xr.Dataset:
    """netCDF/Zarr assets through xarray + fsspec, concatenated along time across items.

    The CRS is the files' CF grid mapping, else the item's ``proj:*`` fields, else
    ``crs``; a ``crs`` that contradicts the files is refused. A variable an item lacks
    (``load(missing="nan")``) is ``fill`` there.
    """
    given = _output_crs(crs)
    sizes = _array_chunks(chunks)
    assets = {b.asset: name for name, b in chosen.items()}
    overrides = _nodata_overrides(nodata, chosen)
    parts = []
    for item in items:
        opened = [
            _open_array_asset(item.assets[key], key, sizes) for key in assets if key in item.assets
        ]
        if not opened:
            raise MissingBandError(
                f"item {item.id!r} has none of the netCDF/Zarr assets {', '.join(assets)}; "
                "leave the item out, or choose other bands="
            )
        part = xr.merge(opened, compat="override", join="exact", combine_attrs="drop_conflicts")
        part = part.assign(
            {
                name: _decode(
                    part[name],
                    dtype=dtype,
                    scale=scale,
                    fill=fill,
                    nodata=overrides.get(assets.get(name, name)),
                )
                for name in part.data_vars
            }
        )
        template = part[next(iter(part.data_vars))]
        absent = [key for key in assets if key not in item.assets]
        part = part.assign({key: xr.full_like(template, fill, dtype=dtype) for key in absent})
        stated = part.rio.crs or _crs_of(item.properties)
        if (
            stated is not None
            and given is not None
            and crs_key(CRS.from_user_input(stated)) != given
        ):
            raise MissingCRSError(
                f"item {item.id!r}: its files (CF grid mapping) or proj fields give a CRS "
                f"other than crs={crs!r}; netCDF/Zarr assets are loaded on their own grid: "
                "leave crs= unset and reproject afterwards with ds.rio.reproject"
            )
        crs_of_item = stated if stated is not None else crs
        if crs_of_item is None:
            hrefs = ", ".join(
                item.assets[k].get_absolute_href() for k in assets if k in item.assets
            )
            raise MissingCRSError(
                f"item {item.id!r}: no CF grid mapping in its files ({hrefs}) and no "
                "proj:code, proj:wkt2 or proj:projjson; pass crs= to load (e.g. "
                "crs='EPSG:4326') or add one to the catalog"
            )
        parts.append(part.rio.write_crs(crs_of_item))
    try:
        ds = xr.concat(parts, dim="time", join="exact", combine_attrs="drop_conflicts")
    except ValueError as err:
        raise ValueError(
            "the items' netCDF/Zarr grids differ (several regions?); load one region at a "
            f"time with collections=, bbox= or a property filter: {err}"
        ) from err
    ds = ds.sortby("time")
    if bbox is not None:
        ds = ds.rio.clip_box(*bbox, crs="EPSG:4326", allow_one_dimensional_raster=True)
    return ds.rename_vars({k: v for k, v in assets.items() if k in ds and k != v})
