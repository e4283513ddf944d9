"""Which scene files can be read: the check behind ``on_error`` and one-line read errors.

A pipeline or the demo reads many files; when one is damaged (truncated, not a raster,
gone from the server), the user needs its name, not a 60-line traceback from deep in
GDAL or HDF5. Two tools:

- :func:`readable` opens every file a run will read, in parallel, and reads the block
  most likely to be lost when a file is cut short (the last one of the full-resolution
  image: the last bytes of a COG), and reports the files that fail;
- :func:`unreadable` turns an error raised while loading or computing into a
  :class:`~lazyraster.errors.ReadError` naming the file and its item: the file is found
  in the error's message, else by checking the items' files as above.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import fsspec
import pystac
import rasterio
import rasterio.errors
import rasterio.windows
import xarray as xr

from lazyraster.cluster import available_cores
from lazyraster.config import gdal_options
from lazyraster.errors import ReadError
from lazyraster.load import asset_kind

__all__ = ["SceneFile", "readable", "scene_files", "unreadable", "with_item"]

#: What reading a damaged file raises: GDAL (through rasterio), HDF5/netCDF and fsspec
#: errors are OSErrors or RuntimeErrors; a file that is not what its extension says
#: gives a ValueError from xarray's backends.
READ_ERRORS = (OSError, RuntimeError, ValueError, rasterio.errors.RasterioError)


@dataclass(frozen=True)
class SceneFile:
    """One file a run reads: the item it belongs to, its asset key, href and kind."""

    item: str
    key: str
    href: str
    array: bool

    def describe(self) -> str:
        """``href (item ID, asset KEY)``, as the messages name a file."""
        return f"{self.href} (item {self.item!r}, asset {self.key!r})"


def _band_names(asset: pystac.Asset) -> set[str]:
    bands = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    return {str(b.get(f)) for b in bands for f in ("name", "common_name") if b.get(f)}


def scene_files(items: Iterable[pystac.Item], bands: Sequence[str] | None) -> list[SceneFile]:
    """The data files of ``items`` that loading ``bands`` reads (every data file without).

    Examples
    --------
    >>> import datetime as dt
    >>> item = pystac.Item("a", None, None, dt.datetime(2021, 3, 19), {})
    >>> item.add_asset("B04", pystac.Asset("/d/B04.tif", media_type="image/tiff",
    ...                                    extra_fields={"eo:bands": [{"common_name": "red"}]}))
    >>> item.add_asset("B08", pystac.Asset("/d/B08.tif", media_type="image/tiff"))
    >>> [f.key for f in scene_files([item], ["red"])]
    ['B04']
    """
    wanted = set(bands) if bands is not None else None
    files = []
    for item in items:
        for key, asset in item.assets.items():
            kind = asset_kind(asset)
            if kind is None:
                continue
            if {"overview", "thumbnail"} & set(asset.roles or []):
                continue
            if wanted is not None and not ({key} | _band_names(asset)) & wanted:
                continue
            href = asset.get_absolute_href() or asset.href
            files.append(SceneFile(item.id, key, href, kind == "array"))
    return files


def _last_block(src: rasterio.DatasetReader) -> rasterio.windows.Window:
    height, width = src.block_shapes[0]
    row, col = (src.height - 1) // height * height, (src.width - 1) // width * width
    return rasterio.windows.Window(
        col, row, min(width, src.width - col), min(height, src.height - row)
    )


def _open_netcdf(href: str) -> xr.Dataset:
    if "://" in href and not href.startswith("file://"):
        return xr.open_dataset(fsspec.open(href).open(), engine="h5netcdf")
    return xr.open_dataset(href.removeprefix("file://"), engine="h5netcdf")


def _check(file: SceneFile, gdal: Mapping[str, object]) -> str | None:
    """None if ``file`` opens and its last block decodes, else the reason, on one line."""
    try:
        if file.array:
            zarr = file.href.rstrip("/").endswith(".zarr")
            opened = xr.open_zarr(file.href) if zarr else _open_netcdf(file.href)
            with opened as ds:
                for var in ds.data_vars.values():
                    var.isel({dim: -1 for dim in var.dims}).values  # noqa: B018 - decodes
        else:
            with rasterio.Env(**gdal), rasterio.open(file.href) as src:
                src.read(1, window=_last_block(src))
    except READ_ERRORS as err:
        return reason_of(err)
    return None


def reason_of(err: BaseException) -> str:
    """The innermost cause of ``err`` on one line (GDAL's, HDF5's or the server's words)."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def readable(
    items: Sequence[pystac.Item], bands: Sequence[str] | None
) -> tuple[list[pystac.Item], dict[str, str]]:
    """Split ``items`` into those whose files can be read and the others.

    Every file is opened and its last block decoded (see the module documentation),
    on as many threads as this process may use cores, times four (the work is mostly
    waiting for the disk or the server).

    Returns
    -------
    (list of pystac.Item, dict)
        The readable items in their order, and ``{item id: "href: reason"}`` for the
        others.

    Examples
    --------
    >>> from lazyraster.catalog import read_items
    >>> items = list(read_items("catalogs/sample/catalog.json"))
    >>> ok, bad = readable(items, ["red", "nir"])
    >>> [item.id for item in ok], bad
    (['S2_L3B_21JXN_20210319'], {})
    """
    files = scene_files(items, bands)
    gdal = gdal_options()
    workers = min(len(files), 4 * available_cores()) or 1
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(lambda f: _check(f, gdal), files))
    bad: dict[str, str] = {}
    for file, reason in zip(files, reasons, strict=True):
        if reason is not None:
            bad.setdefault(file.item, f"{file.href}: {reason}")
    return [item for item in items if item.id not in bad], bad


def _messages(err: BaseException) -> str:
    texts = []
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


def unreadable(
    err: BaseException, items: Sequence[pystac.Item], bands: Sequence[str] | None
) -> ReadError | None:
    """The :class:`ReadError` that ``err`` means, or None if no file of ``items`` is at fault.

    The file is the one whose href the error names; when it names none (HDF5 and
    netCDF errors seldom do), every file is checked with :func:`readable` and the
    first that fails is named.

    Examples
    --------
    >>> from lazyraster.catalog import read_items
    >>> items = list(read_items("catalogs/sample/catalog.json"))
    >>> red = items[0].assets["B04"].href
    >>> err = unreadable(OSError(f"{red}: not recognized as a supported format"), items, ["red"])
    >>> err.item, err.href == red
    ('S2_L3B_21JXN_20210319', True)
    >>> unreadable(ValueError("no such band"), items, ["red"]) is None  # no file at fault
    True
    """
    files = scene_files(items, bands)
    text = _messages(err)
    named = sorted(
        (f for f in files if f.href in text or f.href.removeprefix("file://") in text),
        key=lambda f: -len(f.href),  # ".../B01.tif" before ".../B0"
    )
    if named:
        culprit, reason = named[0], reason_of(err)
    else:
        _, bad = readable(items, bands)
        if not bad:
            return None
        item_id = next(iter(bad))
        culprit = next(f for f in files if f.item == item_id and bad[item_id].startswith(f.href))
        reason = bad[item_id].removeprefix(f"{culprit.href}: ")
    return ReadError(
        f"cannot read {culprit.describe()}: {reason}. Replace or remove the file, or "
        "leave such scenes out with on_error: skip in the pipeline spec.",
        href=culprit.href,
        item=culprit.item,
        reason=reason,
    )


def with_item(
    err: ReadError, items: Sequence[pystac.Item], bands: Sequence[str] | None
) -> ReadError:
    """``err`` naming the item and asset of its file too (the reader knows only the file).

    Examples
    --------
    >>> from lazyraster.catalog import read_items
    >>> items = list(read_items("catalogs/sample/catalog.json"))
    >>> red = items[0].assets["B04"].href
    >>> err = with_item(ReadError(f"cannot read {red}: truncated", href=red), items, ["red"])
    >>> err.item
    'S2_L3B_21JXN_20210319'
    >>> "(item 'S2_L3B_21JXN_20210319', asset 'B04')" in str(err)
    True
    """
    if err.item is not None:
        return err
    return unreadable(err, items, bands) or err
