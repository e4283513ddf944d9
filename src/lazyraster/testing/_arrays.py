"""Rasters, items and dask guards for tests of code that uses lazyraster."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pystac
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

__all__ = [
    "CountingScheduler",
    "raise_if_dask_computes",
    "raster_item",
    "synthetic_raster",
    "uneven_chunks",
    "write_cog",
]


class CountingScheduler:
    """A dask scheduler that counts ``compute`` calls and fails past a maximum.

    Examples
    --------
    >>> import dask
    >>> with dask.config.set(scheduler=CountingScheduler(1)):
    ...     pass
    """

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """Count one computation, then run it with the synchronous scheduler."""
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many dask computations were scheduled: {self.total_computes} "
                f"> {self.max_computes}"
            )
        return dask.get(dsk, keys, **kwargs)


def raise_if_dask_computes(max_computes: int = 0) -> Any:
    """Return a context manager in which more than ``max_computes`` computes raise.

    Examples
    --------
    >>> import dask.array as da
    >>> with raise_if_dask_computes():
    ...     lazy = da.ones(4) + 1  # building a graph is fine
    """
    return dask.config.set(scheduler=CountingScheduler(max_computes))


def uneven_chunks(n: int, parts: int = 3) -> tuple[int, ...]:
    """Split ``n`` into ``parts`` chunks of deliberately different sizes.

    Examples
    --------
    >>> uneven_chunks(10)
    (1, 3, 6)
    """
    parts = max(1, min(parts, n))
    weights = np.arange(1, parts + 1, dtype=float)
    sizes = np.floor(weights / weights.sum() * n).astype(int)
    sizes[sizes == 0] = 1
    sizes[-1] = n - sizes[:-1].sum()
    return tuple(int(s) for s in sizes)


def synthetic_raster(
    shape: Sequence[int] = (64, 96),
    *,
    crs: str = "EPSG:32631",
    resolution: float = 10.0,
    origin: tuple[float, float] = (600000.0, 5700000.0),
    seed: int = 0,
    dtype: Any = np.float32,
    nan_fraction: float = 0.0,
    chunks: Any = None,
    name: str = "band",
) -> xr.DataArray:
    """Make a random (y, x) raster with a real CRS and pixel-centre coordinates.

    Parameters
    ----------
    shape : (ny, nx)
        Raster size.
    crs : str
        Any CRS that rioxarray understands.
    resolution : float
        Pixel size in CRS units (square pixels, north up).
    origin : (x, y)
        Upper-left corner of the upper-left pixel.
    seed : int
        Seed of the random values (uniform in [0, 1)).
    dtype : numpy dtype
        Data type of the values.
    nan_fraction : float
        Share of pixels set to NaN (float dtypes only).
    chunks : optional
        Dask chunks; ``None`` keeps numpy.
    name : str
        Name of the DataArray.

    Returns
    -------
    xarray.DataArray
        With ``x``/``y`` coordinates and a ``spatial_ref`` coordinate.

    Examples
    --------
    >>> da = synthetic_raster((3, 4), resolution=30)
    >>> da.rio.resolution()
    (30.0, -30.0)
    """
    ny, nx = shape
    rng = np.random.default_rng(seed)
    values = rng.random((ny, nx)).astype(dtype)
    if nan_fraction:
        values[rng.random((ny, nx)) < nan_fraction] = np.nan
    x0, y0 = origin
    x = x0 + resolution * (np.arange(nx) + 0.5)
    y = y0 - resolution * (np.arange(ny) + 0.5)
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}, name=name)
    da = da.rio.write_crs(crs)
    if chunks is not None:
        da = da.chunk(chunks)
    return da


def write_cog(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    crs: str = "EPSG:32631",
    transform: Any = None,
    nodata: float | None = 0,
    blocksize: int = 128,
) -> Path:
    """Write a single-band Cloud-Optimized GeoTIFF (deflate, overviews) and return its path.

    Examples
    --------
    >>> import tempfile, rasterio
    >>> from rasterio.transform import from_origin
    >>> path = write_cog(tempfile.mkdtemp() + "/b.tif", np.ones((8, 8), "uint16"),
    ...                  transform=from_origin(600000, 5700000, 10, 10))
    >>> rasterio.open(path).profile["driver"]
    'GTiff'
    """
    from rasterio.transform import from_origin

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    transform = transform if transform is not None else from_origin(600000, 5700000, 10, 10)
    profile = {
        "driver": "COG",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "deflate",
        "blocksize": blocksize,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def raster_item(
    item_id: str,
    when: dt.datetime,
    assets: dict[str, dict[str, Any]],
    *,
    collection: str | None = None,
    properties: dict[str, Any] | None = None,
) -> pystac.Item:
    """A STAC item over single-band raster files, with proj, eo and raster fields.

    Parameters
    ----------
    item_id : str
        Item id.
    when : datetime
        Item datetime (UTC if naive).
    assets : dict
        Asset key -> ``{"href": path, "common_name": ..., "scale": ..., "offset": ...,
        "nodata": ...}``; href is required, the rest optional. Grid fields (``proj:*``)
        and the footprint are read from the files with rasterio.
    collection : str, optional
        Collection id.
    properties : dict, optional
        Extra item properties (e.g. ``eo:cloud_cover``).

    Examples
    --------
    >>> import tempfile
    >>> path = write_cog(tempfile.mkdtemp() + "/red.tif", np.ones((8, 8), "uint16"))
    >>> item = raster_item("a", dt.datetime(2021, 5, 1), {"B04": {"href": str(path),
    ...                    "common_name": "red", "scale": 0.0001}})
    >>> fields = item.assets["B04"].extra_fields
    >>> fields["proj:code"], fields["eo:bands"][0]["common_name"]
    ('EPSG:32631', 'red')
    """
    from rasterio.warp import transform_geom

    when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    footprint = None
    stac_assets = {}
    for key, spec in assets.items():
        with rasterio.open(spec["href"]) as src:
            epsg = src.crs.to_epsg()
            grid = {
                "proj:code": f"EPSG:{epsg}",
                "proj:epsg": epsg,
                "proj:shape": [src.height, src.width],
                "proj:transform": list(src.transform)[:6],
            }
            left, bottom, right, top = src.bounds
            ring = [[left, bottom], [right, bottom], [right, top], [left, top], [left, bottom]]
            geom = transform_geom(src.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
            footprint = footprint or geom
            nodata = spec.get("nodata", src.nodata)
            data_type = src.dtypes[0]
        band = {
            "data_type": data_type,
            "scale": spec.get("scale", 1),
            "offset": spec.get("offset", 0),
        }
        if nodata is not None:
            band["nodata"] = nodata
        eo = {"name": key}
        if spec.get("common_name"):
            eo["common_name"] = spec["common_name"]
        stac_assets[key] = pystac.Asset(
            href=str(spec["href"]),
            media_type=pystac.MediaType.COG,
            roles=["data"],
            extra_fields={**grid, "eo:bands": [eo], "raster:bands": [band]},
        )
    coords = np.array(footprint["coordinates"][0])
    bbox = [*coords.min(axis=0).tolist(), *coords.max(axis=0).tolist()]
    item = pystac.Item(
        id=item_id,
        geometry=footprint,
        bbox=bbox,
        datetime=when,
        properties={**(properties or {})},
        collection=collection,
        stac_extensions=[
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
    )
    for key, asset in stac_assets.items():
        item.add_asset(key, asset)
    return item


DAYMET_LCC = {
    "grid_mapping_name": "lambert_conformal_conic",
    "longitude_of_central_meridian": -100.0,
    "latitude_of_projection_origin": 42.5,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "standard_parallel": [25.0, 60.0],
    "semi_major_axis": 6378137.0,
    "inverse_flattening": 298.257223563,
}
"""Daymet's Lambert conformal conic grid mapping (CF attributes)."""


def daymet_like(
    year: int,
    *,
    shape: tuple[int, int] = (6, 8),
    origin: tuple[float, float] = (1_000_000.0, 200_000.0),
    resolution: float = 1000.0,
    seed: int = 0,
) -> xr.Dataset:
    """A Daymet-like daily Dataset for one year: ``tmin``, ``tmax`` (deg C), ``dayl`` (s).

    Temperatures follow a seasonal cycle plus noise, with a CF ``lambert_conformal_conic``
    grid mapping, 2-D ``lat``/``lon`` coordinates, and 365 days (Daymet drops 31
    December in leap years).

    Examples
    --------
    >>> ds = daymet_like(2021)
    >>> ds.tmin.dims, ds.sizes["time"], ds.tmin.attrs["grid_mapping"]
    (('time', 'y', 'x'), 365, 'lambert_conformal_conic')
    """
    from pyproj import CRS, Transformer

    ny, nx = shape
    rng = np.random.default_rng(seed + year)
    time = np.arange(f"{year}-01-01", f"{year + 1}-01-01", dtype="datetime64[D]")[:365]
    doy = np.arange(1, 366)
    x = origin[0] + resolution * (np.arange(nx) + 0.5)
    y = origin[1] - resolution * (np.arange(ny) + 0.5)
    season = -np.cos(2 * np.pi * (doy - 15) / 365)[:, None, None]
    gradient = np.linspace(2, -2, ny)[None, :, None]
    noise = rng.normal(0, 2, size=(365, ny, nx))
    tmax = (12 + 14 * season + gradient + noise).astype(np.float32)
    tmin = (tmax - 8 - rng.uniform(0, 4, size=tmax.shape)).astype(np.float32)
    dayl = (43200 + 15000 * np.sin(2 * np.pi * (doy - 80) / 365)).astype(np.float32)
    dayl = np.broadcast_to(dayl[:, None, None], tmax.shape).copy()
    crs = CRS.from_cf(DAYMET_LCC)
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(*np.meshgrid(x, y))
    dims = ("time", "y", "x")
    ds = xr.Dataset(
        {
            "tmin": (dims, tmin, {"units": "degrees C", "grid_mapping": "lambert_conformal_conic"}),
            "tmax": (dims, tmax, {"units": "degrees C", "grid_mapping": "lambert_conformal_conic"}),
            "dayl": (dims, dayl, {"units": "s", "grid_mapping": "lambert_conformal_conic"}),
            "lambert_conformal_conic": ((), np.int16(0), DAYMET_LCC),
        },
        coords={
            "time": time.astype("datetime64[ns]"),
            "y": ("y", y, {"units": "m", "standard_name": "projection_y_coordinate"}),
            "x": ("x", x, {"units": "m", "standard_name": "projection_x_coordinate"}),
            "lat": (("y", "x"), lat, {"units": "degrees_north"}),
            "lon": (("y", "x"), lon, {"units": "degrees_east"}),
        },
    )
    return ds
