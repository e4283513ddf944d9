"""Rasters (GeoTIFF, COG, JPEG2000) on one grid: stackstac's grid and coordinates, our graph.

stackstac computes the output grid, the coordinates and the table of assets; the
arrays are built by :mod:`lazyraster.load._graph` (one fusable read task per chunk).

The traps between pystac and stackstac are handled here: relative hrefs, ``proj:code``
without ``proj:epsg`` (pystac drops ``proj:epsg`` when it reads projection v2.0 items,
stackstac reads only ``proj:epsg``), CRSs without an EPSG code, per-item scale and
offset, stackstac's refusal to rescale into float32, multi-band assets (split into one
stackstac asset per band), and nodata that only the catalog states (ESA's JP2s carry no
nodata tag). What the reader needs per band (band index, nodata) travels in the URL it
is given; see :mod:`lazyraster.load._reader`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pystac
import rioxarray  # noqa: F401  (registers .rio)
import stackstac
import xarray as xr
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from stackstac.prepare import prepare_items

from lazyraster.config import gdal_options
from lazyraster.load._crs import CRSKey, as_crs, crs_key
from lazyraster.load._graph import read_arrays
from lazyraster.load._grid import (
    _aligned_bounds,
    _check_grid_size,
    _common_crs,
    _item_crs_key,
    _items_extent,
    _native_grids,
    _normalize_chunks,
    _output_crs,
    load_chunks,
)
from lazyraster.load._items import (
    _Band,
    _band_fields,
    _crs_of,
    _item_bands,
    _item_time,
    _nodata_overrides,
    _number,
)
from lazyraster.load._reader import source_url


def _stackstac_dict(
    item: pystac.Item,
    dtype: np.dtype,
    chosen: Mapping[str, _Band],
    nodata: Mapping[str, float | None],
) -> dict[str, Any]:
    """The item as a dict stackstac can read, with one single-band asset per band.

    Each asset is keyed by its variable's key in ``chosen`` and read from the item's own
    band of that variable (see :func:`_item_bands`).

    Hrefs are made absolute and carry the band to read and its nodata (see
    :func:`lazyraster.load._reader.source_url`); ``proj:epsg`` is the CRS key of whatever
    ``proj:*`` field the item has; ``raster:bands`` holds the band's scale and offset as
    scalars of the output dtype (stackstac refuses to rescale into float32 when they are
    Python floats).
    """
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    local = _item_bands(item, chosen)
    values = {  # nodata of each band: load(nodata=...), else the catalog's
        name: nodata[name]
        if name in nodata
        else _number(
            _band_fields(d["assets"][band.asset])[band.index - 1]["nodata"],
            f"item {item.id!r} asset {band.asset!r}: nodata ",
            "; fix the catalog, or override it with load(nodata=...)",
        )
        for name, band in local.items()
    }
    assets = {}
    for name, band in local.items():
        fields = dict(d["assets"][band.asset])
        per_band = _band_fields(fields)[band.index - 1]
        value = values[name]
        group = [
            b.index
            for n, b in local.items()
            if b.asset == band.asset and json.dumps(values[n]) == json.dumps(value)
        ]
        fields["href"] = source_url(
            item.assets[band.asset].get_absolute_href(),
            band=band.index,
            nodata=value,
            group=group,
            listed=any(fields.get(k) for k in ("raster:bands", "eo:bands", "bands")),
        )
        fields["raster:bands"] = [
            {
                "scale": dtype.type(1 if per_band["scale"] is None else per_band["scale"]),
                "offset": dtype.type(0 if per_band["offset"] is None else per_band["offset"]),
            }
        ]
        key = _item_crs_key(item, band.asset)
        if key is not None:
            fields["proj:epsg"] = key
        assets[chosen[name].key] = fields
    d["assets"] = assets
    crs = _crs_of(d["properties"])
    if crs is not None:  # a new dict: the item's own properties must not change
        d["properties"] = {**d["properties"], "proj:epsg": crs_key(crs)}
    return d


def _solar_days(items: Sequence[pystac.Item]) -> np.ndarray:
    """Local solar date of each item: UTC time shifted by the footprint's longitude."""
    days = []
    for item in items:
        lon = (item.bbox[0] + item.bbox[2]) / 2 if item.bbox else 0.0
        local = _item_time(item) + dt.timedelta(hours=lon / 15)
        days.append(np.datetime64(local.date().isoformat(), "ns"))
    return np.array(days)


def _mosaic_solar_days(ds: xr.Dataset, items: Sequence[pystac.Item]) -> xr.Dataset:
    """Merge the items of each solar day into one time step, first valid pixel wins."""
    days = xr.DataArray(_solar_days(items), dims="time", name="time")
    ids = ds["id"].values
    grouped = ds.drop_vars("id").groupby(days).first(skipna=True)
    joined = ["+".join(ids[(days == day).values]) for day in grouped.time.values]
    return grouped.assign_coords(id=("time", joined))


def load_rasters(
    items: Sequence[pystac.Item],
    chosen: Mapping[str, _Band],
    *,
    bbox: Sequence[float] | None,
    crs: Any,
    resolution: float | None,
    chunks: int | Mapping[str, int] | None,
    groupby: str | None,
    resampling: str | None,
    dtype: np.dtype,
    scale: bool,
    fill: float,
    nodata: float | Mapping[str, float] | None,
    gdal: Mapping[str, Any] | None,
) -> xr.Dataset:
    """Raster assets of ``items`` through stackstac onto one grid (see :func:`load`)."""
    out_crs = _output_crs(crs)
    _common_crs(items, chosen, out_crs)
    overrides = _nodata_overrides(nodata, chosen)
    stac_dicts = [_stackstac_dict(item, dtype, chosen, overrides) for item in items]
    keys = [band.key for band in chosen.values()]
    bounds, epsg, res = _aligned_bounds(_native_grids(stac_dicts, keys), out_crs, resolution, bbox)
    snap = bounds is None
    if snap and bbox is not None and isinstance(epsg, CRSKey):  # stackstac cannot transform
        bounds = transform_bounds("EPSG:4326", as_crs(epsg), *bbox)
    extent = bounds
    if extent is None and bbox is not None and epsg is not None:
        extent = transform_bounds("EPSG:4326", as_crs(epsg), *bbox)
    if extent is None and epsg is not None and all(item.bbox for item in items):
        extent = _items_extent(items, epsg)
    grid = None
    if extent is not None and res is not None:  # refuse a huge grid before building it
        left, bottom, right, top = extent
        grid = (math.ceil((top - bottom) / res[1]), math.ceil((right - left) / res[0]))
        _check_grid_size(grid)
    if chunks is None and grid is not None:  # coarse for small grids, on blocks for big ones
        shape = (len(stac_dicts), *grid)
        chunks = load_chunks(stac_dicts, keys, shape, dtype.itemsize, gdal_options(gdal))
    grid_options = {  # stackstac's grid (and its table of assets) from these
        "epsg": epsg,
        "resolution": res,
        "bounds": bounds,
        "bounds_latlon": bbox if bounds is None else None,
        "snap_bounds": snap,
        "rescale": scale,
        "dtype": dtype,
    }
    reads = {
        "resampling": Resampling[resampling or "nearest"],
        "fill_value": dtype.type(fill),
        "gdal_env": stackstac.LayeredEnv(always=gdal_options(gdal)),
    }
    stack = functools.partial(
        stackstac.stack,
        stac_dicts,
        **grid_options,
        **reads,
        sortby_date=False,
        xy_coords="center",
        properties=False,
        band_coords=False,
    )
    try:
        data = stack(assets=keys, chunksize=_normalize_chunks(chunks, list(chosen.values())))
    except ValueError as err:
        if "Chunks do not add up" not in str(err):
            raise
        # stackstac left out assets outside the bounds, so the band groups no longer fit
        data = stack(assets=keys, chunksize=_normalize_chunks(chunks))
        keys = list(data.band.values)
        chosen = {n: b for n, b in chosen.items() if b.key in keys}
    _check_grid_size(data.shape)
    spec = data.attrs["spec"]
    out = as_crs(spec.epsg)
    table, _, ids, _ = prepare_items(stac_dicts, assets=keys, **grid_options)
    arrays = read_arrays(
        table,
        ids,
        (data.chunks[0], data.chunks[2], data.chunks[3]),
        spec=spec,
        dtype=dtype,
        rescale=scale,
        **reads,
    )
    ds = data.to_dataset(dim="band")
    ds = ds.assign({key: ds[key].copy(data=arrays[key]) for key in keys})
    ds = ds.rename_vars({b.key: n for n, b in chosen.items()})
    ds = ds.drop_vars([c for c in ds.coords if c not in {"time", "y", "x", "id"}])
    ds.attrs = {}
    for name, band in chosen.items():
        ds[name].attrs = {"long_name": name, "stac_asset": band.asset}
        if band.count > 1:
            ds[name].attrs["stac_band"] = band.index
    if groupby == "solar_day":
        ds = _mosaic_solar_days(ds, items)
    # the transform as rioxarray records it, so a grid one pixel wide keeps its resolution
    return ds.rio.write_crs(out).rio.write_transform(data.attrs["transform"])
