"""lazyraster's raster reader: stackstac's public ``Reader`` protocol, our own class.

stackstac reads each asset through a ``reader=`` class that meets the protocol of
``stackstac/reader_protocol.py``: built with keywords (``url``, ``spec``,
``resampling``, ``dtype``, ``fill_value``, ``scale_offset``, ``gdal_env``,
``errors_as_nodata``) without touching the file, ``read(window)`` from many threads,
``close()``, and pickled to the workers. :class:`Reader` is such a class of its own
(not a subclass of stackstac's ``AutoParallelRioReader``, whose private ``_open`` and
dataset wrappers may change in any release). It is on rasterio's public API, with
the per-thread datasets in :mod:`lazyraster.load._handles`.

stackstac's reader asks GDAL for a masked float array (a float copy of the data, a
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
- decode a JPEG2000 band at the resolution level a coarser grid needs
  (:func:`resolution_level`) rather than every pixel;
- fail with one line that names the file and the reason.

:func:`source_url` packs the band and the nodata into the URL stackstac hands to the
reader (stackstac passes nothing else per asset); the reader unpacks it. A plain URL
reads band 1 with the file's nodata tag, as stackstac's reader does.
"""

from __future__ import annotations

import json
import math
import re
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from stackstac import DEFAULT_GDAL_ENV, LayeredEnv

from lazyraster._limits import room_for
from lazyraster.errors import ReadError
from lazyraster.load._crs import as_crs, crs_text
from lazyraster.load._handles import Handles

if TYPE_CHECKING:
    from rasterio.windows import Window
    from stackstac.raster_spec import RasterSpec

__all__ = ["Reader", "resolution_level", "source_url"]

_SEPARATOR = "\x00lazyraster:"


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


def _matches(err: BaseException, patterns: Sequence[BaseException]) -> bool:
    """Whether ``err`` is of a pattern's type and its message starts as the pattern's regex.

    stackstac's meaning of ``errors_as_nodata``: ``RasterioIOError("HTTP response code:
    404")`` matches a RasterioIOError whose message matches that regular expression.
    """
    return any(isinstance(err, type(p)) and re.match(str(p), str(err)) for p in patterns)


#: Resamplings that smooth, for which a JPEG2000 resolution level (the wavelet's low-pass
#: band) stands in for the full-resolution pixels; not nearest, mode or the order
#: statistics, which must pick values that occur in the file (a class of SCL).
_SMOOTHING = frozenset(
    {
        Resampling.average,
        Resampling.bilinear,
        Resampling.cubic,
        Resampling.cubic_spline,
        Resampling.lanczos,
        Resampling.gauss,
    }
)


def resolution_level(
    ds: rasterio.io.DatasetReader,
    spec: RasterSpec,
    resampling: Resampling,
    nodata: float | None = None,
) -> int | None:
    """The JPEG2000 resolution level to decode for ``spec``, or None for the full resolution.

    A JP2 holds its image at 1/2, 1/4, ... of its resolution (rasterio's overviews,
    opened with ``overview_level=k`` for 1/2**(k+1)). Where the output grid is in the
    file's CRS, at least twice as coarse on both axes, and ``resampling`` smooths, the
    coarsest level still at least as fine as the grid is decoded and resampled onto it
    (what ``gdalwarp`` does with overviews), rather than every pixel.

    Only where every pixel of the file is valid: a level is the wavelet's low-pass band,
    which blends ``nodata`` (or an alpha band's or mask's transparent pixels) into the
    valid pixels beside them, where the output must leave them out: a Sentinel-2 band
    with nodata 0 at its swath edge is decoded at full resolution.

    Examples
    --------
    >>> import tempfile
    >>> from stackstac.raster_spec import RasterSpec
    >>> path = tempfile.mkdtemp() + "/a.jp2"
    >>> with rasterio.open(path, "w", driver="JP2OpenJPEG", width=1024, height=1024,
    ...                    count=1, dtype="uint16", crs="EPSG:32631",
    ...                    transform=rasterio.transform.from_origin(0, 10240, 10, 10)) as dst:
    ...     dst.write(np.ones((1, 1024, 1024), "uint16"))
    >>> ds = rasterio.open(path)
    >>> [resolution_level(ds, RasterSpec(32631, (0, 0, 10240, 10240), (r, r)),
    ...                   Resampling.average) for r in (10, 20, 30, 60, 1000)]
    [None, 0, 0, 1, 2]
    >>> spec = RasterSpec(32631, (0, 0, 10240, 10240), (60, 60))
    >>> resolution_level(ds, spec, Resampling.nearest) is None
    True
    >>> resolution_level(ds, spec, Resampling.average, nodata=0) is None
    True
    """
    if ds.driver != "JP2OpenJPEG" or resampling not in _SMOOTHING or nodata is not None:
        return None
    if alpha_band(ds) is not None or any(
        MaskFlags.per_dataset in flags or MaskFlags.alpha in flags for flags in ds.mask_flag_enums
    ):
        return None
    if ds.crs != as_crs(spec.epsg) or ds.transform.b or ds.transform.d:
        return None
    factor = min(
        spec.resolutions_xy[0] / abs(ds.transform.a), spec.resolutions_xy[1] / abs(ds.transform.e)
    )
    # level k holds pixels 2 ** (k + 1) times the file's
    level = min(math.floor(math.log2(factor) + 1e-9) - 1, len(ds.overviews(1)) - 1)
    return level if level >= 0 else None


def alpha_band(ds: rasterio.io.DatasetReader) -> int | None:
    """The (1-based) band of ``ds`` flagged as alpha (0 where a pixel is missing), if any."""
    return next((i + 1 for i, c in enumerate(ds.colorinterp) if c == ColorInterp.alpha), None)


@dataclass
class _Window:
    """One window of a band group: read by its first reader, taken by the other bands."""

    waiting: set[int]
    ready: threading.Event = field(default_factory=threading.Event)
    raw: np.ndarray | None = None  # None once ready: the first reader failed


@dataclass
class _Shared:
    """An open file shared by the readers of its bands, and what they need to know."""

    handles: Handles
    count: int
    alpha: int | None  # the band (1-based) that is 0 where a pixel is missing, if any
    nodata: float | None
    recent: OrderedDict[tuple, _Window] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


#: Windows read for a band group and not yet taken by all of its bands, per open file:
#: beyond this many, the oldest goes (its remaining bands read it again).
_RECENT = 16


#: Open files by (href, stamp, nodata, grid, resampling, GDAL env): the readers of the bands of
#: one file share its datasets, so GDAL's block cache decodes a pixel-interleaved block
#: once for all of its bands. An entry goes when its last reader does.
_SHARED: weakref.WeakValueDictionary[tuple, _Shared] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


class Reader:
    """Reads one band of one raster onto stackstac's grid, decoded in one numba pass.

    Meets stackstac's public ``Reader`` protocol (``stackstac.stack(reader=Reader)``);
    the parameters are the protocol's. Why it is built as it is:

    - **Its own class, not a subclass of ``AutoParallelRioReader``.** That class's
      ``read`` asks GDAL for masked float arrays, which the fused decode replaces, and
      its ``_open`` refuses multi-band files, reads nodata from the file alone and wants
      an EPSG integer: every part would be overridden, and the private ones
      (``_open``, its dataset wrappers) may change in any stackstac release.
    - **Band and catalog nodata in the URL** (:func:`source_url`): stackstac passes the
      reader nothing else per asset. A plain URL reads band 1 with the file's nodata.
    - **One open file for the readers of its bands** (``_SHARED``, by href, nodata,
      grid, resampling and GDAL options): the bands of a multi-band file are read in
      one GDAL call per window, so a pixel-interleaved block is decoded once.
    - **A dataset per thread where the driver allows it (GTiff, JPEG2000), else one
      behind a lock** (:class:`~lazyraster.load._handles.Handles`): GDAL datasets are
      not thread-safe. Each first open of a file raises the process's soft limit on
      open files (up to the hard limit) to fit a dataset per thread of every open file.
    - **Opened on the first read, not on construction**: stackstac builds every
      reader on the client; only the tasks open files, on the workers.
    - **Pickled as its constructor's arguments**: open GDAL datasets cannot travel;
      the worker reopens the file on its first read.
    - **``close`` lets go of the file**: it closes when no reader of it is left, so
      closing one band's reader does not close the file under another band's.
    - **``errors_as_nodata`` as stackstac means it**: an error (or the rasterio
      error it was raised from) that matches a pattern is warned about and read as
      ``fill_value``; an open that fails so is not retried. Any other error is a
      :class:`~lazyraster.errors.ReadError` naming the file and GDAL's reason.

    Parameters
    ----------
    url : str
        A :func:`source_url`, or a plain URL or path (band 1, the file's nodata).
    spec : stackstac.raster_spec.RasterSpec
        The output grid; ``spec.epsg`` may be a :class:`CRSKey`.
    resampling : rasterio.enums.Resampling
        For the warp onto ``spec`` where the file's grid differs.
    dtype : numpy.dtype
        Output dtype.
    fill_value : int or float
        Value of nodata pixels and of pixels outside the file.
    scale_offset : (scale, offset)
        Applied to valid pixels: ``value * scale + offset``.
    gdal_env : stackstac.LayeredEnv, optional
        GDAL options for opening, warping and reading; default
        ``stackstac.DEFAULT_GDAL_ENV``.
    errors_as_nodata : tuple of Exception
        Patterns of errors to read as ``fill_value`` (see above).
    stamp : hashable, optional
        What identifies this version of the file (see
        :func:`lazyraster.load._handles.file_stamp`): readers with another stamp do not
        share its open datasets, so a file replaced between two loads is read anew; a
        read of another version than this one fails.

    Examples
    --------
    >>> import tempfile
    >>> from stackstac.raster_spec import RasterSpec
    >>> from rasterio.enums import Resampling
    >>> from rasterio.windows import Window
    >>> from lazyraster.testing import write_cog
    >>> data = np.array([[0, 100], [200, 300]], "uint16")
    >>> path = write_cog(tempfile.mkdtemp() + "/b.tif", data, nodata=0)
    >>> spec = RasterSpec(32631, (600000, 5699980, 600020, 5700000), (10, 10))
    >>> reader = Reader(url=str(path), spec=spec, resampling=Resampling.nearest,
    ...                 dtype=np.dtype("float32"), fill_value=np.nan,
    ...                 scale_offset=(0.5, 1.0), gdal_env=None)
    >>> reader.read(Window(0, 0, 2, 2))
    array([[ nan,  51.],
           [101., 151.]], dtype=float32)
    """

    def __init__(
        self,
        *,
        url: str,
        spec: RasterSpec,
        resampling: Resampling,
        dtype: np.dtype,
        fill_value: float,
        scale_offset: tuple[float, float],
        gdal_env: LayeredEnv | None = None,
        errors_as_nodata: tuple[BaseException, ...] = (),
        stamp: Any = None,
    ) -> None:
        self._packed_url = url
        self.stamp = stamp
        self.url, self._band, self._catalog_nodata, self._group, self._listed = self.unpack(url)
        self.spec = spec
        self.resampling = resampling
        self.dtype = np.dtype(dtype)
        self.fill_value = fill_value
        self.scale_offset = scale_offset
        self.gdal_env = gdal_env or DEFAULT_GDAL_ENV
        self.errors_as_nodata = tuple(errors_as_nodata or ())
        self._lock = threading.Lock()
        self._shared: _Shared | None = None
        self._gone = False  # the open failed with an error read as nodata

    @staticmethod
    def unpack(url: str) -> tuple[str, int, float | None, tuple[int, ...], bool]:
        """Split a :func:`source_url` into (href, band, catalog nodata, band group, listed)."""
        href, _, packed = url.partition(_SEPARATOR)
        fields = json.loads(packed) if packed else {}
        band = int(fields.get("band", 1))
        group = tuple(fields.get("group", [band]))
        return href, band, fields.get("nodata"), group, bool(fields.get("listed", True))

    def __getstate__(self) -> dict[str, Any]:
        return {
            "url": self._packed_url,
            "spec": self.spec,
            "resampling": self.resampling,
            "dtype": self.dtype,
            "fill_value": self.fill_value,
            "scale_offset": self.scale_offset,
            "gdal_env": self.gdal_env,
            "errors_as_nodata": self.errors_as_nodata,
            "stamp": self.stamp,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def _fail(self, what: str, err: BaseException) -> ReadError:
        reason = _reason(err).removeprefix(f"{self.url}: ").removeprefix(f"'{self.url}' ")
        return ReadError(f"cannot {what} {self.url}: {reason}", href=self.url, reason=reason)

    def _as_nodata(self, err: BaseException) -> bool:
        """Whether ``err`` (or an error it was raised from) is one to read as nodata."""
        current: BaseException | None = err
        while current is not None:
            if _matches(current, self.errors_as_nodata):
                warnings.warn(
                    f"{err}; read as fill_value {self.fill_value} (errors_as_nodata)",
                    stacklevel=3,
                )
                return True
            current = current.__cause__
        return False

    def _open(self) -> _Shared | None:
        """The shared open file (opening it on first use), None if it is read as nodata."""
        with self._lock:
            if self._shared is None and not self._gone:
                try:
                    self._shared = self._lookup()
                except Exception as err:
                    if not self._as_nodata(err):
                        raise
                    self._gone = True
            return self._shared

    def _lookup(self) -> _Shared:
        env = self.gdal_env
        key = (
            self.url,
            self.stamp,
            self._catalog_nodata,
            self._group,
            (self.spec.epsg, tuple(self.spec.bounds), tuple(self.spec.resolutions_xy)),
            self.resampling,
            json.dumps(env.__getstate__(), default=str),
        )
        with _SHARED_LOCK:
            shared = _SHARED.get(key)
            if shared is None:
                # each thread may keep a dataset of each open file: a year of scenes with
                # a few bands on a few threads passes a soft limit of 1024 descriptors
                room_for((len(_SHARED) + 1) * (threading.active_count() + 1))
                shared = _SHARED[key] = self._open_shared()
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
        self._has_alpha = shared.alpha is not None
        group = list(self._group)
        self._indexes = [*group, shared.alpha] if self._has_alpha else group
        self._position = group.index(self._band)
        return shared

    def _open_shared(self) -> _Shared:
        """Open the file (and a warped VRT onto the output grid where it differs)."""
        with self.gdal_env.open:
            try:
                ds = rasterio.open(self.url, sharing=False)
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
            native = (
                ds.crs == as_crs(self.spec.epsg)
                and ds.transform == self.spec.transform
                and (ds.height, ds.width) == (height, width)
            )
            warp, level, alpha = None, None, None
            if not native:
                level = resolution_level(ds, self.spec, self.resampling, nodata)
                if level is not None:
                    ds.close()
                    try:
                        ds = rasterio.open(self.url, sharing=False, overview_level=level)
                    except Exception as err:
                        raise self._fail("open", err) from err
                warp = {
                    "resampling": self.resampling,
                    "crs": crs_text(self.spec.epsg),
                    "transform": self.spec.transform,
                    "height": height,
                    "width": width,
                    "src_nodata": nodata,
                    "nodata": nodata,
                    "add_alpha": nodata is None,
                }
                # the warp's alpha band, 0 outside the file: the VRT adds one after the bands,
                # but rasterio warps with the file's own (RGBA, gdalwarp -dstalpha) and
                # refuses to add another
                alpha = alpha_band(ds)
                if alpha is not None:
                    warp["add_alpha"] = False
                elif nodata is None:
                    alpha = ds.count + 1
            handles = Handles(self.gdal_env, ds, warp, level, self.stamp)
        return _Shared(handles, ds.count, alpha, nodata)

    def _read_group(self, shared: _Shared, window: Window) -> np.ndarray:
        """Read the bands of this reader's group in ``window`` in one call, shared by them.

        GDAL decodes a pixel-interleaved block for all its bands whichever one is asked
        for; one call for the bands of the group decodes it once. Each band's chunk is a
        task of its own, on any thread: the first reader of a window reads the group,
        a band that comes while that read is under way waits for it (two threads never
        fetch the same bytes), and the result waits in ``shared.recent`` until each band
        has taken its own (at most :data:`_RECENT` windows wait; an older one is read
        again).
        """
        where = (window.col_off, window.row_off, window.width, window.height)
        mine = None
        with shared.lock:
            entry = shared.recent.get(where)
            if entry is not None and self._band in entry.waiting:
                entry.waiting.discard(self._band)
                if not entry.waiting:
                    del shared.recent[where]
            else:
                entry = None
                if len(self._group) > 1:  # the other bands wait for this read, not repeat it
                    mine = shared.recent[where] = _Window(set(self._group) - {self._band})
                    while len(shared.recent) > _RECENT:
                        shared.recent.popitem(last=False)
        if entry is not None:
            entry.ready.wait()
            if entry.raw is not None:
                return entry.raw
        raw = None
        try:
            raw = shared.handles.read(window, self._indexes)
        except ReadError:
            raise
        except Exception as err:
            raise self._fail("read", err) from err
        finally:
            if mine is not None:  # its waiters take raw, or read themselves if it failed
                mine.raw = raw
                mine.ready.set()
        return raw

    def read(self, window: Window) -> np.ndarray:
        """Read ``window`` of ``spec`` as ``dtype``: nodata -> fill, then scale and offset."""
        return self.read_into(window, np.empty((window.height, window.width), self.dtype))

    def read_into(self, window: Window, out: np.ndarray) -> np.ndarray:
        """Decode ``window`` of ``spec`` straight into ``out`` (shape of the window, ``dtype``).

        Nodata pixels (and all of ``out`` where an error is read as nodata) become
        ``fill_value``; valid ones ``value * scale + offset``. Returns ``out``.
        """
        shared, raw = self._shared, None
        try:
            if shared is None:
                shared = self._open()
            if shared is not None:
                raw = self._read_group(shared, window)
        except Exception as err:
            if not self._as_nodata(err):
                raise
        if shared is None or raw is None:  # an error read as nodata, now or at the open
            out[...] = self.fill_value
            return out
        data = raw[self._position]
        if data.shape != out.shape:  # a window beyond the grid: GDAL reads the part inside
            raise ReadError(
                f"cannot read {self.url}: {data.shape[0]} x {data.shape[1]} pixels read for a "
                f"window of {out.shape[0]} x {out.shape[1]} (the window must lie in the grid)",
                href=self.url,
                reason="the read was smaller than its window",
            )
        kind = self.dtype.type
        scale, offset = self.scale_offset
        alpha = raw[-1] if self._has_alpha else data[:1, :1]
        nodata = shared.nodata
        return _decode(
            data,
            raw.dtype.type(nodata) if nodata is not None else raw.dtype.type(0),
            nodata is not None,
            alpha,
            self._has_alpha,
            kind(scale),
            kind(offset),
            kind(self.fill_value),
            out,
        )

    def close(self) -> None:
        """Let go of the file; it closes when no reader of it is left."""
        with self._lock:
            self._shared = None
            self._gone = False
