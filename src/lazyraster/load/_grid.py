"""The output grid: chunks, CRS, aligned bounds, the bbox check and the size limit."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import pystac
import rasterio
import rasterio.errors
from dask.utils import parse_bytes
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds

from lazyraster.errors import MissingCRSError
from lazyraster.load._crs import CRSKey, as_crs, crs_key
from lazyraster.load._items import _Band, _crs_of, _item_bands, _transform_of
from lazyraster.load._reader import Reader

DEFAULT_CHUNKS = {"time": 1, "y": 1024, "x": 1024}
#: Largest side of a default chunk, in pixels (rounded to whole source blocks).
DEFAULT_SIDE = 1024


def default_chunks(
    shape: Sequence[int], itemsize: int, block: Sequence[int] | None = None
) -> dict[str, int]:
    """The chunks of a load that gives none, for a ``(time, y, x)`` grid of ``shape``.

    Each of y and x is one chunk when it is at most :data:`DEFAULT_SIDE` pixels,
    else the whole number of the source's blocks (``block``, (rows, columns)) nearest
    to it; then as many time steps as fit in dask's ``array.chunk-size`` bytes. So
    a small job (three 240 x 240 scenes) is one chunk per band, not hundreds, while
    a big scene keeps chunks of about 1024 x 1024 pixels that start on its blocks.

    Examples
    --------
    >>> default_chunks((3, 240, 240), 4, (512, 512))
    {'time': 3, 'y': 240, 'x': 240}
    >>> default_chunks((40, 10980, 10980), 4, (384, 384))
    {'time': 25, 'y': 1152, 'x': 1152}
    """
    sides = []
    for size, step in zip(shape[1:], block or (None, None), strict=True):
        if size <= DEFAULT_SIDE:
            sides.append(size)
        elif step is None:
            sides.append(DEFAULT_SIDE)
        else:
            sides.append(min(size, max(step, round(DEFAULT_SIDE / step) * step)))
    target = parse_bytes(dask.config.get("array.chunk-size"))
    steps = max(1, min(shape[0], target // (sides[0] * sides[1] * itemsize)))
    return {"time": steps, "y": sides[0], "x": sides[1]}


def load_chunks(
    items: Sequence[dict[str, Any]],
    keys: Sequence[str],
    shape: Sequence[int],
    itemsize: int,
    gdal: Mapping[str, Any],
) -> dict[str, int]:
    """:func:`default_chunks` of a ``(time, y, x)`` grid of ``shape`` loaded from ``items``.

    The source's blocks are those of the first asset, read (one open) only when the
    grid is wider than one default chunk: a smaller grid is one chunk whatever they are.
    """
    block = None
    if max(shape[1:]) > DEFAULT_SIDE:
        href = next(i["assets"][k]["href"] for i in items for k in keys if k in i["assets"])
        block = _source_block(Reader.unpack(href)[0], gdal)
    return default_chunks(shape, itemsize, block)


def _source_block(href: str, gdal: Mapping[str, Any]) -> tuple[int, int] | None:
    """The (rows, columns) of the first band's blocks in the file at ``href``, if it opens."""
    try:
        with rasterio.Env(**gdal), rasterio.open(href) as src:
            rows, cols = src.block_shapes[0]
    except (rasterio.errors.RasterioError, OSError):
        return None
    return rows, cols


def _normalize_chunks(
    chunks: int | Mapping[str, int] | None, bands: Sequence[_Band] = ()
) -> tuple[int, int | tuple[int, ...], int, int]:
    """Stackstac's (time, band, y, x) chunks.

    Along ``band``, the bands of one multi-band asset share a chunk: one task reads
    them one after the other from one open file, so GDAL decodes a pixel-interleaved
    block once for all of them (see :mod:`lazyraster.load._reader`).
    """
    merged = dict(DEFAULT_CHUNKS)
    if isinstance(chunks, int):
        merged.update(y=chunks, x=chunks)
    elif chunks is not None:
        unknown = set(chunks) - set(merged)
        if unknown:
            raise ValueError(f"chunks may name time, y and x, not {sorted(unknown)}")
        merged.update(chunks)
    for axis, size in merged.items():
        if isinstance(size, bool) or not isinstance(size, int) or not (size >= 1 or size == -1):
            raise ValueError(
                f"chunks: {axis}={size!r} must be a whole number of pixels (at least 1), "
                "or -1 for the whole axis, e.g. chunks=1024"
            )
    groups = tuple(len(list(g)) for _, g in itertools.groupby(bands, key=lambda b: b.asset))
    band = groups if any(n > 1 for n in groups) else 1
    return (merged["time"], band, merged["y"], merged["x"])


def _output_crs(crs: Any) -> int | None:
    """The output CRS as stackstac's integer key (see :func:`lazyraster.load._crs.crs_key`)."""
    if crs is None:
        return None
    try:
        with rasterio.Env():  # GDAL's error is the CRSError, not also a line on stderr
            return crs_key(CRS.from_user_input(crs))
    except CRSError as err:
        raise MissingCRSError(
            f"crs={crs!r} is not a CRS PROJ knows ({err}); pass an EPSG code such as 32631, "
            "an 'AUTHORITY:CODE' string, a WKT or a pyproj.CRS"
        ) from None


def _item_crs_key(item: pystac.Item, key: str) -> int | None:
    """CRS key of an asset (its own ``proj:*`` fields, else the item's), or None."""
    crs = _crs_of(item.assets[key].extra_fields) or _crs_of(item.properties)
    return crs_key(crs) if crs is not None else None


def _native_grids(items: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[tuple]:
    """(epsg, transform, shape) of every asset, from the items' ``proj`` fields."""
    grids = []
    for item in items:
        props = item["properties"]
        for key in keys:
            asset = item["assets"].get(key)
            if asset is None:
                continue
            epsg = asset.get("proj:epsg", props.get("proj:epsg"))
            transform = asset.get("proj:transform", props.get("proj:transform"))
            shape = asset.get("proj:shape", props.get("proj:shape"))
            if epsg is not None and transform is not None and shape is not None:
                grids.append((epsg, tuple(transform[:6]), tuple(shape)))
    return grids


def _aligned_bounds(
    grids: list[tuple], epsg: int | None, resolution: float | None, bbox: Sequence[float] | None
) -> tuple[tuple[float, float, float, float] | None, int | None, tuple[float, float] | None]:
    """Output bounds aligned to the assets' own pixel grid, where there is one.

    stackstac snaps bounds to multiples of the resolution, which shifts a grid whose
    origin is not such a multiple by part of a pixel (and resamples every pixel). When
    the output CRS and resolution are those of the assets, align the bounds to the
    assets' origin instead, so that pixels are read as they are. Pixels need not be
    square (Copernicus DEM's are 10 times wider than high near the poles).
    """
    res = (resolution, resolution) if resolution is not None else None
    if not grids:
        return None, epsg, res
    epsgs = {g[0] for g in grids}
    out_epsg = epsg if epsg is not None else (epsgs.pop() if len(epsgs) == 1 else None)
    if out_epsg is None:
        return None, epsg, res
    native = [g for g in grids if g[0] == out_epsg and g[1][1] == 0 and g[1][3] == 0]
    if res is None and native:
        finest = min(native, key=lambda g: abs(g[1][0]))
        res = (abs(finest[1][0]), abs(finest[1][4]))
    if res is None:
        return None, out_epsg, res
    rx, ry = res
    same = [g for g in native if (abs(g[1][0]), abs(g[1][4])) == (rx, ry)]
    anchors = {(g[1][2] % rx, g[1][5] % ry) for g in same}
    if len(anchors) != 1:
        return None, out_epsg, res
    ax, ay = anchors.pop()
    if bbox is not None:
        left, bottom, right, top = transform_bounds("EPSG:4326", as_crs(out_epsg), *bbox)
    else:
        left = min(g[1][2] for g in native)
        top = max(g[1][5] for g in native)
        right = max(g[1][2] + g[1][0] * g[2][1] for g in native)
        bottom = min(g[1][5] + g[1][4] * g[2][0] for g in native)
    left = ax + math.floor(round((left - ax) / rx, 6)) * rx
    bottom = ay + math.floor(round((bottom - ay) / ry, 6)) * ry
    right = ax + math.ceil(round((right - ax) / rx, 6)) * rx
    top = ay + math.ceil(round((top - ay) / ry, 6)) * ry
    return (left, bottom, right, top), out_epsg, res


def check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """Check a (west, south, east, north) box in longitude/latitude degrees.

    Examples
    --------
    >>> check_bbox([5, 52, 5.2, 52.1])
    (5.0, 52.0, 5.2, 52.1)
    >>> check_bbox((5, 52.1, 5.2, 52))
    Traceback (most recent call last):
    ...
    ValueError: bbox (5.0, 52.1, 5.2, 52.0): south 52.1 is not below north 52.0; \
give bbox as (west, south, east, north)
    """
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise TypeError(
            f"bbox must be 4 numbers (west, south, east, north), not {bbox!r}"
        ) from None
    if len(values) != 4 or not all(map(math.isfinite, values)):
        raise ValueError(f"bbox must be 4 finite numbers (west, south, east, north), not {bbox!r}")
    west, south, east, north = values
    for name, value, limit in (("west", west, 180), ("east", east, 180)):
        if not -limit <= value <= limit:
            raise ValueError(
                f"bbox {values}: {name} {value} is not a longitude in -180..180; bbox is in "
                "degrees (west, south, east, north), not in the CRS's units"
            )
    for name, value in (("south", south), ("north", north)):
        if not -90 <= value <= 90:
            raise ValueError(
                f"bbox {values}: {name} {value} is not a latitude in -90..90; bbox is "
                "(west, south, east, north) in degrees"
            )
    if south >= north:
        raise ValueError(
            f"bbox {values}: south {south} is not below north {north}; give bbox as "
            "(west, south, east, north)"
        )
    if west > east:
        raise ValueError(
            f"bbox {values} crosses the antimeridian (west {west} > east {east}); load "
            f"the two sides separately, bbox=({west}, {south}, 180, {north}) and "
            f"bbox=(-180, {south}, {east}, {north})"
        )
    if west == east:
        raise ValueError(f"bbox {values}: west equals east; the box has no width")
    return values


def _common_crs(items: Sequence[pystac.Item], chosen: Mapping[str, _Band], out: int | None) -> None:
    """Check that the assets' CRSs allow an output grid, before stackstac guesses."""
    keys = {}
    for item in items:
        for band in _item_bands(item, chosen).values():
            key = _item_crs_key(item, band.asset)
            if key is None and out is None:
                raise MissingCRSError(
                    f"item {item.id!r}: asset {band.asset!r} has no proj:code, proj:epsg, "
                    "proj:wkt2 or proj:projjson; pass crs= (e.g. crs='EPSG:32631') to load"
                )
            keys.setdefault(key, item.id)
    keys.pop(None, None)
    if out is None and len(keys) > 1:
        found = ", ".join(f"{as_crs(k).to_string()} ({i})" for k, i in keys.items())
        raise MissingCRSError(
            f"the items are in several CRSs ({found}); pass crs= to load them onto one grid"
        )
    for item in items:
        for band in _item_bands(item, chosen).values():
            transform = _transform_of(item, item.assets[band.asset])
            if transform is not None and (
                transform[1] != 0 or transform[3] != 0 or transform[0] <= 0 or transform[4] >= 0
            ):
                raise ValueError(
                    f"item {item.id!r}: asset {band.asset!r} has proj:transform "
                    f"{list(transform[:6])}, which is not north-up (rotated, south-up or "
                    "mirrored, or written in GDAL's order c, a, b, f, d, e instead of STAC's "
                    "a, b, c, d, e, f); warp the file north-up (gdalwarp), fix "
                    "the catalog, or drop proj:transform to read the grid from the file"
                )
    target = out if out is not None else next(iter(keys), None)
    odd = [k for k in keys if k != target and (isinstance(k, CRSKey) or isinstance(target, CRSKey))]
    if odd:
        raise MissingCRSError(
            f"cannot reproject between {as_crs(odd[0]).to_string()[:80]} and "
            f"{as_crs(target).to_string()[:80]}, which have no EPSG code; load on the "
            "assets' own CRS (leave crs= unset) and reproject with ds.rio.reproject"
        )


def _items_extent(items: Sequence[pystac.Item], epsg: Any) -> tuple[float, ...] | None:
    """The union of the items' ``bbox`` in the output CRS (None where it does not map)."""
    west = min(item.bbox[0] for item in items)
    south = min(item.bbox[1] for item in items)
    east = max(item.bbox[2] for item in items)
    north = max(item.bbox[3] for item in items)
    try:
        extent = transform_bounds("EPSG:4326", as_crs(epsg), west, south, east, north)
    except Exception:  # PROJ cannot map the extent into this CRS: no estimate
        return None
    return extent if all(math.isfinite(v) for v in extent) else None


def _check_grid_size(shape: Sequence[int]) -> None:
    limit = int(dask.config.get("lazyraster.load.max-pixels"))
    height, width = shape[-2:]
    if height * width > limit:
        raise ValueError(
            f"the requested grid is {height} x {width} = {height * width:,} pixels per band "
            f"and time step, more than lazyraster.load.max-pixels ({limit:,}); narrow bbox=, "
            "coarsen resolution=, or raise the limit with "
            "dask.config.set({'lazyraster.load.max-pixels': N})"
        )
