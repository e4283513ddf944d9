"""GeoTIFF / COG (and stray JPEG2000) files: one asset per file, items per file or group."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import rasterio
import rasterio.errors
from rasterio.windows import Window

from lazyraster.catalog import _stac
from lazyraster.catalog._stac import ReadProblem

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")

#: Sentinel-2 MSI bands: name -> (common name, centre wavelength um, FWHM um).
S2_BANDS: dict[str, tuple[str, float, float]] = {
    "B01": ("coastal", 0.443, 0.027),
    "B02": ("blue", 0.49, 0.098),
    "B03": ("green", 0.56, 0.045),
    "B04": ("red", 0.665, 0.038),
    "B05": ("rededge", 0.704, 0.019),
    "B06": ("rededge", 0.74, 0.018),
    "B07": ("rededge", 0.783, 0.028),
    "B08": ("nir", 0.842, 0.145),
    "B8A": ("nir08", 0.865, 0.033),
    "B09": ("nir09", 0.945, 0.026),
    "B10": ("cirrus", 1.375, 0.075),
    "B11": ("swir16", 1.61, 0.143),
    "B12": ("swir22", 2.19, 0.242),
}


def eo_band(name: str) -> dict[str, Any]:
    """An ``eo:bands`` entry; the common name is filled in when ``name`` tells it.

    Examples
    --------
    >>> eo_band("B04")
    {'name': 'B04', 'common_name': 'red', 'center_wavelength': 0.665, 'full_width_half_max': 0.038}
    >>> eo_band("nir")
    {'name': 'nir', 'common_name': 'nir'}
    >>> eo_band("elevation")
    {'name': 'elevation'}
    """
    band: dict[str, Any] = {"name": name}
    s2 = S2_BANDS.get(name.upper())
    if s2 is not None:
        band["common_name"], band["center_wavelength"], band["full_width_half_max"] = s2
    elif name.lower() in _stac.COMMON_NAMES:
        band["common_name"] = name.lower()
    return band


def _check_complete(src: Any, path: Path) -> None:
    """Raise if a TIFF's last block lies beyond the end of the file (truncated copy)."""
    if src.driver != "GTiff":
        return
    size = path.stat().st_size
    rows, cols = (-(-n // b) for n, b in zip(src.shape, src.block_shapes[0], strict=True))
    for bidx in range(1, src.count + 1):
        offset = src.get_tag_item(f"BLOCK_OFFSET_{cols - 1}_{rows - 1}", "TIFF", bidx=bidx)
        length = src.get_tag_item(f"BLOCK_SIZE_{cols - 1}_{rows - 1}", "TIFF", bidx=bidx)
        if offset and length and int(offset) + int(length) > size:
            raise ReadProblem(
                f"truncated: its last block ends at byte {int(offset) + int(length)} "
                f"but the file has {size} bytes; copy it again"
            )


def _check_jp2_complete(path: Path) -> None:
    """Raise if a JPEG2000 file's boxes or codestream stop short (truncated copy).

    A JP2 file is a sequence of boxes, each starting with its length; the codestream
    box (``jp2c``, or the whole file for a raw codestream) ends with the EOC marker
    ``FF D9``. Reads a few bytes per box, never the image data.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] == b"\xff\x4f\xff\x51":  # a raw J2K codestream
            codestream_end = size
        else:
            codestream_end, pos = None, 0
            while pos < size:
                f.seek(pos)
                header = f.read(16)
                if len(header) < 8:
                    raise ReadProblem(f"truncated: a JPEG2000 box header at byte {pos} is cut")
                length, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if length == 1:
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:
                    length = size - pos
                if length < 8 or pos + length > size:
                    raise ReadProblem(
                        f"truncated: its JPEG2000 box {kind.decode('latin-1')!r} at byte {pos} "
                        f"ends at byte {pos + length} but the file has {size} bytes; copy it again"
                    )
                pos += length
                if kind == b"jp2c":
                    codestream_end = pos
            if codestream_end is None:
                raise ReadProblem("has no JPEG2000 codestream box; copy it again")
        f.seek(codestream_end - 2)
        if f.read(2) != b"\xff\xd9":
            raise ReadProblem(
                "truncated: its JPEG2000 codestream does not end with the EOC marker; copy it again"
            )


def check_decodes(src: Any, path: Path) -> None:
    """Raise :class:`ReadProblem` unless an open raster is complete and decodes.

    Checks that the file is not cut short (TIFF: the last block lies within the file;
    JPEG2000: every box and the codestream end within it), then decodes a little: the
    smallest overview of a TIFF that has overviews (stored apart, a few kB), else the
    first block or tile (a JPEG2000 overview would decode every tile).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from lazyraster.testing import write_sample_cog
    >>> path = write_sample_cog(pathlib.Path(tempfile.mkdtemp()) / "a.tif", shape=(256, 256))
    >>> _ = path.write_bytes(path.read_bytes()[:-1000])
    >>> with rasterio.open(path) as src:  # doctest: +ELLIPSIS
    ...     check_decodes(src, path)
    Traceback (most recent call last):
    lazyraster.catalog._stac.ReadProblem: truncated: its last block ends at byte ...
    """
    _check_complete(src, path)
    if src.driver.startswith("JP2"):
        _check_jp2_complete(path)
    try:
        factors = src.overviews(1) if src.driver == "GTiff" else []
        if factors:
            small = (src.count, max(1, src.height // factors[-1]), max(1, src.width // factors[-1]))
            src.read(out_shape=small)
        else:
            rows, cols = src.block_shapes[0]
            src.read(window=Window(0, 0, min(cols, src.width), min(rows, src.height)))
    except rasterio.errors.RasterioError as exc:
        raise ReadProblem(f"cannot be decoded ({_first_line(exc)}); copy it again") from None


def read_raster(
    path: Path, *, band_names: Sequence[str] | None = None, checksum: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read one raster file's header: its asset and what the item needs from it.

    Returns
    -------
    asset, info
        ``info`` holds ``crs``, ``transform``, ``shape`` and ``datetime`` (from the
        ``TIFFTAG_DATETIME`` tag, or None).
    """
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise ReadProblem("has no CRS; write one with `rio edit-info --crs EPSG:XXXX`")
            check_decodes(src, path)
            count = src.count
            names = list(band_names) if band_names else None
            if names is not None and len(names) != count:
                raise ReadProblem(f"has {count} band(s) but {len(names)} band name(s) were given")
            if names is None and all(src.descriptions):
                names = list(src.descriptions)
            structure = src.tags(ns="IMAGE_STRUCTURE")
            tag_time = src.tags().get("TIFFTAG_DATETIME")
            raster_bands = []
            for i in range(count):
                band: dict[str, Any] = {}
                if src.nodatavals[i] is not None:
                    band["nodata"] = _nodata(src.nodatavals[i])
                band["data_type"] = src.dtypes[i]
                band["spatial_resolution"] = _stac._clean(abs(src.transform.a))
                band["scale"] = float(src.scales[i])
                band["offset"] = float(src.offsets[i])
                if src.units and src.units[i]:
                    band["unit"] = src.units[i]
                raster_bands.append(band)
            crs, transform, shape = src.crs, src.transform, src.shape
            driver = src.driver
    except rasterio.errors.RasterioError as exc:
        raise ReadProblem(f"not a readable raster ({_first_line(exc)})") from None
    if driver == "GTiff":
        is_cog = structure.get("LAYOUT", "").upper() == "COG"
        media = _stac.COG_MEDIA_TYPE if is_cog else _stac.GEOTIFF_MEDIA_TYPE
    elif driver.startswith("JP2"):
        media = _stac.JP2_MEDIA_TYPE
    else:
        raise ReadProblem(f"unsupported raster format {driver}; convert it to a COG")
    asset: dict[str, Any] = {"href": str(path), "type": media, "roles": ["data"]}
    asset.update(_stac.proj_fields(crs, transform, shape))
    if names:
        asset["eo:bands"] = [eo_band(n) for n in names]
    asset["raster:bands"] = raster_bands
    asset.update(_stac.file_fields(path, checksum=checksum))
    when = None
    if tag_time:
        try:
            when = _dt.datetime.strptime(tag_time.strip(), "%Y:%m:%d %H:%M:%S")
        except ValueError:
            when = None
    info = {"crs": crs, "transform": transform, "shape": shape, "datetime": when}
    return asset, info


def _nodata(value: float) -> float | int | str:
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return _stac._clean(value)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def geotiff_item(
    item_id: str,
    files: Mapping[str, Path],
    *,
    fields: Mapping[str, str],
    when: _dt.datetime | tuple[_dt.datetime, _dt.datetime] | None,
    band_names: Sequence[str] | None = None,
    checksum: bool = False,
) -> dict[str, Any]:
    """The item JSON (a dict) of one GeoTIFF/COG file or of a group of them, read from them.

    Parameters
    ----------
    item_id : str
        The item id.
    files : mapping
        Asset key -> file. A key that names a band (``B04``, ``red``) also names the
        file's single band when ``band_names`` is not given.
    fields : mapping
        Extra properties (from the file-name pattern).
    when : datetime, (start, end) or None
        Acquisition time; None falls back on the files' ``TIFFTAG_DATETIME``.
    band_names : sequence of str, optional
        Names of the bands of every file, in band order.
    checksum : bool
        Write ``file:checksum``.
    """
    assets: dict[str, dict[str, Any]] = {}
    boxes = []
    codes = set()
    tag_times = []
    for key, path in files.items():
        names = band_names
        if names is None and len(files) > 1:
            names = [key]
        asset, info = read_raster(path, band_names=names, checksum=checksum)
        if "eo:bands" not in asset and len(asset["raster:bands"]) == 1 and key != "data":
            asset["eo:bands"] = [eo_band(key)]
        assets[key] = asset
        boxes.append(_stac.footprint(info["crs"], info["transform"], info["shape"])[0])
        codes.add(asset["proj:code"])
        if info["datetime"] is not None:
            tag_times.append(info["datetime"])
    if when is None and tag_times:
        when = min(tag_times)
    if when is None:
        raise ReadProblem(
            "has no date: give a --pattern with {date}, a TIFFTAG_DATETIME tag, or --datetime"
        )
    bbox, geometry = _stac.bbox_geometry(_stac.union_bbox(boxes))
    properties: dict[str, Any] = {}
    if isinstance(when, tuple):
        properties["datetime"] = None
        properties["start_datetime"] = _stac.format_datetime(when[0])
        properties["end_datetime"] = _stac.format_datetime(when[1])
    else:
        properties["datetime"] = _stac.format_datetime(when)
    properties.update(fields)
    if len(codes) == 1:
        properties["proj:code"] = codes.pop()
    extensions = {_stac.PROJ_EXT, _stac.RASTER_EXT, _stac.FILE_EXT}
    if any("eo:bands" in a for a in assets.values()):
        extensions.add(_stac.EO_EXT)
    return _stac.new_item(
        item_id,
        bbox=bbox,
        geometry=geometry,
        properties=properties,
        assets=assets,
        extensions=extensions,
    )
