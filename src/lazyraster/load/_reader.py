"""A stackstac reader that decodes, masks and rescales each chunk in one pass.

stackstac's own reader asks GDAL for a masked float array (a float copy of the data, a
boolean mask, and a third array when filling), then multiplies and adds in place. This
reader reads the file's native dtype (for Sentinel-2, uint16: half the bytes of
float32) and turns it into the output dtype with nodata -> fill, ``* scale + offset``
in a single numba loop that releases the GIL, so dask threads decode in parallel.

It also does what stackstac's reader cannot:

- read one band of a multi-band file (NAIP's red, green, blue, nir in one GeoTIFF), so
  that each band of such an asset is a variable of its own;
- take nodata from the catalog (``raster:bands`` says 0 where ESA's JP2s carry no
  nodata tag), falling back on the file's tag;
- work on a CRS without an EPSG code (a WKT, PROJJSON or ``IAU_2015:...`` code), which
  stackstac would only accept as an EPSG integer;
- fail with one line that names the file and the reason.

:func:`source_url` packs the band and the nodata into the URL stackstac hands to the
reader (stackstac passes nothing else per asset); the reader unpacks it. It relies on
stackstac 0.5's reader classes; the tests of :func:`lazyraster.load` pin its behaviour.
"""

from __future__ import annotations

import json
import math
import threading
import weakref
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
from rasterio.crs import CRS
from rasterio.vrt import WarpedVRT
from stackstac.rio_reader import (
    MULTITHREADED_DRIVER_ALLOWLIST,
    AutoParallelRioReader,
    SelfCleaningDatasetReader,
    SingleThreadedRioDataset,
    ThreadLocalRioDataset,
)

from lazyraster.errors import ReadError

__all__ = ["CRSKey", "Reader", "crs_key", "source_url"]

_SEPARATOR = "\x00lazyraster:"


class CRSKey(int):
    """A CRS as the integer stackstac wants for its ``epsg`` arguments.

    An EPSG CRS is its code. Another CRS gets a number outside the EPSG range, derived
    from its WKT, and carries the WKT: rasterio (which builds the warped VRT) takes
    any object with ``to_wkt``.
    """

    wkt: str

    def __new__(cls, value: int, wkt: str) -> CRSKey:
        key = super().__new__(cls, value)
        key.wkt = wkt
        return key

    def __getnewargs__(self) -> tuple[int, str]:
        return int(self), self.wkt

    def to_wkt(self, *args: Any, **kwargs: Any) -> str:
        """The CRS's WKT (rasterio calls this)."""
        return self.wkt

    def to_crs(self) -> CRS:
        """The CRS as a rasterio CRS."""
        return CRS.from_wkt(self.wkt)


def crs_key(crs: CRS) -> int:
    """The EPSG code of ``crs``, else a :class:`CRSKey` standing for it.

    Examples
    --------
    >>> crs_key(CRS.from_epsg(32631))
    32631
    >>> key = crs_key(CRS.from_user_input("IAU_2015:30100"))
    >>> key > 10**9, key.to_crs() == CRS.from_user_input("IAU_2015:30100")
    (True, True)
    """
    epsg = crs.to_epsg()
    if epsg is not None:
        return int(epsg)
    wkt = crs.to_wkt()
    return CRSKey(2_000_000_000 + zlib.crc32(wkt.encode()) % 100_000_000, wkt)


def as_crs(key: int) -> CRS:
    """The rasterio CRS of an EPSG code or a :class:`CRSKey`."""
    return key.to_crs() if isinstance(key, CRSKey) else CRS.from_epsg(key)


def source_url(
    href: str,
    *,
    band: int,
    nodata: float | None,
    group: Sequence[int] = (),
    listed: bool = True,
) -> str:
    """Pack the band to read and the catalog's nodata into the URL given to :class:`Reader`.

    ``band`` is 1-based; ``nodata`` None means: the file's nodata tag. ``group`` lists
    the bands of the file (``band`` among them) that are loaded with this nodata: they
    are read together, in one call per window. ``listed`` False says that the STAC
    asset describes no band at all: the file must then have one.

    Examples
    --------
    >>> Reader.unpack(source_url("https://x/a.tif", band=2, nodata=0, group=[2, 4]))
    ('https://x/a.tif', 2, 0, (2, 4), True)
    """
    packed = {"band": band, "nodata": nodata, "group": list(group) or [band], "listed": listed}
    return href + _SEPARATOR + json.dumps(packed)


@numba.njit(nogil=True, cache=True)
def _decode(
    raw, nodata, check_nodata, alpha, check_alpha, scale, offset, fill, out
):  # pragma: no cover
    rows, cols = raw.shape
    nan_nodata = nodata != nodata
    for i in range(rows):
        for j in range(cols):
            value = raw[i, j]
            missing = False
            if check_nodata:
                missing = (value != value) if nan_nodata else (value == nodata)
            if check_alpha and alpha[i, j] == 0:
                missing = True
            out[i, j] = fill if missing else out.dtype.type(value) * scale + offset
    return out


def _reason(err: BaseException) -> str:
    """The first line of the innermost informative error that ``err`` was raised from.

    rasterio raises "Read failed. See previous exception for details." from GDAL's own
    error (which says which block failed and why); that one is the reason.
    """
    lines: list[str] = []
    current: BaseException | None = err
    while current is not None and len(lines) < 16:
        text = str(current).strip() or type(current).__name__
        if "See previous exception" not in text:
            lines.append(text.splitlines()[0])
        current = current.__cause__ or current.__context__
    return lines[-1] if lines else type(err).__name__


def _fits(nodata: float, dtype: np.dtype) -> bool:
    """Whether ``nodata`` can occur in data of ``dtype`` (255 in uint8 can; -9999 cannot)."""
    if math.isnan(nodata) or math.isinf(nodata):
        return dtype.kind == "f"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(nodata).is_integer() and info.min <= nodata <= info.max
    return True


@dataclass
class _Shared:
    """An open file shared by the readers of its bands, and what they need to know."""

    dataset: Any
    count: int
    warped: bool
    nodata: float | None
    recent: threading.local = field(default_factory=threading.local)


#: Open files by (href, nodata, grid, resampling, GDAL env): the readers of the bands of
#: one file share its datasets, so GDAL's block cache decodes a pixel-interleaved block
#: once for all of its bands. An entry goes when its last reader does.
_SHARED: weakref.WeakValueDictionary[tuple, _Shared] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


class Reader(AutoParallelRioReader):
    """stackstac reader with a fused decode, band selection and catalog nodata."""

    def __init__(self, *, url: str, **kwargs: Any) -> None:
        self._packed_url = url
        href, self._band, self._catalog_nodata, self._group, self._listed = self.unpack(url)
        super().__init__(url=href, **kwargs)

    @staticmethod
    def unpack(url: str) -> tuple[str, int, float | None, tuple[int, ...], bool]:
        """Split a :func:`source_url` into (href, band, catalog nodata, band group, listed)."""
        href, _, packed = url.partition(_SEPARATOR)
        fields = json.loads(packed) if packed else {}
        band = int(fields.get("band", 1))
        group = tuple(fields.get("group", [band]))
        return href, band, fields.get("nodata"), group, bool(fields.get("listed", True))

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "url": self._packed_url}

    def _fail(self, what: str, err: BaseException) -> ReadError:
        reason = _reason(err).removeprefix(f"{self.url}: ").removeprefix(f"'{self.url}' ")
        return ReadError(f"cannot {what} {self.url}: {reason}", href=self.url, reason=reason)

    def _open(self) -> Any:
        env = self.gdal_env
        key = (
            self.url,
            self._catalog_nodata,
            self._group,
            (self.spec.epsg, tuple(self.spec.bounds), tuple(self.spec.resolutions_xy)),
            self.resampling,
            json.dumps([env._always, env._open, env._open_vrt, env._read], default=str),
        )
        with _SHARED_LOCK:
            shared = _SHARED.get(key)
            if shared is None:
                shared = _SHARED[key] = self._open_shared()
        self._shared = shared  # keeps the shared dataset alive while this reader lives
        self._count, self._warped, self._nodata = shared.count, shared.warped, shared.nodata
        if not self._listed and shared.count > 1:
            raise ReadError(
                f"cannot read {self.url}: the file has {shared.count} bands but its STAC asset "
                "lists none (no eo:bands, raster:bands or bands), so only band 1 would load; "
                "add one entry per band to the asset's raster:bands (each then loads as a "
                "variable of its own)"
            )
        if not all(1 <= band <= shared.count for band in self._group):
            raise ReadError(
                f"cannot read band {self._band} of {self.url}: the file has {shared.count} "
                "band(s) but its STAC asset lists more; rebuild the catalog"
            )
        return shared.dataset

    def _open_shared(self) -> _Shared:
        """Open the file (and a warped VRT onto the output grid where it differs)."""
        with self.gdal_env.open:
            try:
                ds = SelfCleaningDatasetReader(self.url, sharing=False)
            except Exception as err:
                raise self._fail("open", err) from err
            if ds.crs is None:
                gcps = bool(ds.gcps[0])
                ds.close()
                raise ReadError(
                    f"cannot read {self.url}: "
                    + (
                        "it has ground control points but no geotransform (radar geometry, "
                        "as Sentinel-1 GRD); use a geocoded product (such as sentinel-1-rtc) "
                        "or warp it with gdalwarp first"
                        if gcps
                        else "it has no CRS; write one with `rio edit-info --crs EPSG:XXXX`"
                    )
                )
            nodata = self._catalog_nodata
            if nodata is None:
                nodata = ds.nodatavals[min(self._band, ds.count) - 1]
            dtype = np.dtype(ds.dtypes[min(self._band, ds.count) - 1])
            nodata = float(nodata) if nodata is not None else None
            if nodata is not None and not _fits(nodata, dtype):
                nodata = None  # a value the data cannot hold never matches
            height, width = self.spec.shape
            crs = as_crs(self.spec.epsg)
            native = (
                ds.crs == crs
                and ds.transform == self.spec.transform
                and (ds.height, ds.width) == (height, width)
            )
            vrt = None
            if not native:
                with self.gdal_env.open_vrt:
                    vrt = WarpedVRT(
                        ds,
                        sharing=False,
                        resampling=self.resampling,
                        crs=crs,
                        transform=self.spec.transform,
                        height=height,
                        width=width,
                        src_nodata=nodata,
                        nodata=nodata,
                        add_alpha=nodata is None,
                    )
        wrapper = (
            ThreadLocalRioDataset
            if ds.driver in MULTITHREADED_DRIVER_ALLOWLIST
            else SingleThreadedRioDataset
        )
        return _Shared(wrapper(self.gdal_env, ds, vrt=vrt), ds.count, not native, nodata)

    def _read_group(self, source: Any, window: Any, indexes: list[int]) -> np.ndarray:
        """Read the bands ``indexes`` of ``window`` in one call, shared by their readers.

        GDAL decodes a pixel-interleaved block for all its bands whichever one is asked
        for; one call for the bands of the group decodes it once. stackstac's task reads
        the group's bands one after the other in one thread: the first reader reads
        them all, and the result waits (per thread) until each band has taken its own.
        """
        recent = self._shared.recent
        entry = getattr(recent, "entry", None)
        where = (window.col_off, window.row_off, window.width, window.height)
        if entry is None or entry[0] != where or self._band not in entry[2]:
            try:
                raw = source.read(window=window, masked=False, indexes=indexes)
            except Exception as err:
                raise self._fail("read", err) from err
            entry = recent.entry = (where, raw, set(self._group))
        entry[2].discard(self._band)
        if not entry[2]:
            recent.entry = None
        return entry[1]

    def close(self) -> None:
        """Let go of the file; it closes when no reader of it is left."""
        with self._dataset_lock:
            self._dataset = None
            self._shared = None

    def read(self, window: Any, **kwargs: Any) -> np.ndarray:
        """Read ``window`` as ``self.dtype``: nodata -> fill, then scale and offset."""
        source = self.dataset  # opens the file on first use
        # a warped VRT without nodata adds an alpha band after the file's bands
        has_alpha = self._warped and self._nodata is None
        group = list(self._group)
        raw = self._read_group(source, window, [*group, self._count + 1] if has_alpha else group)
        data = raw[group.index(self._band)]
        out = np.empty(data.shape, dtype=self.dtype)
        kind = self.dtype.type
        scale, offset = self.scale_offset
        alpha = raw[-1] if has_alpha else data[:1, :1]
        nodata = self._nodata
        return _decode(
            data,
            raw.dtype.type(nodata) if nodata is not None else raw.dtype.type(0),
            nodata is not None,
            alpha,
            has_alpha,
            kind(scale),
            kind(offset),
            kind(self.fill_value),
            out,
        )
