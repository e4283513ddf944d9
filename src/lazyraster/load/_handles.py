"""An open raster file that many threads read at once, on rasterio's public API.

GDAL datasets are never safe to use from two threads, and a dataset must be read by
the thread that opened it. Most drivers (GTiff, JP2OpenJPEG) are safe to use from
several threads when each has its own dataset on its own file descriptor
(``sharing=False``); others (netCDF, HDF5) keep state per driver, in libraries that are
not thread-safe, and must be used by one thread at a time. :class:`Handles` picks per
driver: a dataset per thread for the drivers of the public
:data:`stackstac.MULTITHREADED_DRIVER_ALLOWLIST` (as stackstac's own reader does, so a
user who adds a driver there changes both readers alike) and for JP2OpenJPEG, which
stackstac leaves out although OpenJPEG keeps no state between its datasets (without
it, two threads decode a Sentinel-2 band one at a time):

- a thread-safe driver: each thread opens its own dataset (and its own warped VRT) on
  first use and keeps it in a :class:`threading.local`; nothing is locked on a read;
- any other driver: one dataset, one lock around every read.

A dataset is opened on a thread's first read, which may come long after the load (a
lazy dataset computed again later): each open checks that the file is still the version
the load saw (:func:`file_stamp`), so that a file replaced in between fails the read
rather than mixing its pixels with those of the version other threads opened, or leaving
part of a chunk unread when the new file is smaller.

The warp onto the output grid is given as the keyword arguments of
:class:`rasterio.vrt.WarpedVRT` with the CRS as text, so every thread builds its VRT
from the same values and parses its own CRS (a CRS object is not shared between
threads). Datasets close when the :class:`Handles` holding them is dropped (rasterio
closes a dataset it frees), the per-thread ones included: their
:class:`threading.local` goes with it.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import rasterio
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from stackstac import MULTITHREADED_DRIVER_ALLOWLIST, LayeredEnv

from lazyraster._paths import local_path
from lazyraster.errors import ReadError

__all__ = ["Handles", "file_stamp"]


def file_stamp(href: str) -> Hashable:
    """What identifies this version of the file at ``href``.

    A local file: its (size, mtime_ns, inode), or None if it does not exist (its read
    then fails with the open's error); any other URL: a fresh random string, so that
    two load calls never share the reads of a file that may have changed in between.

    Examples
    --------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/a.txt"
    >>> _ = open(path, "w").write("a")
    >>> before = file_stamp(path)
    >>> _ = open(path, "w").write("bb")
    >>> before == file_stamp(path), file_stamp(path)[0]
    (False, 2)
    >>> spaced = path.replace("a.txt", "a b.txt")
    >>> _ = open(spaced, "w").write("c")
    >>> file_stamp("file://" + spaced.replace(" ", "%20")) == file_stamp(spaced) != None
    True
    >>> file_stamp("https://example.com/a.tif") == file_stamp("https://example.com/a.tif")
    False
    """
    path = None if "::" in href or href.startswith("/vsi") else local_path(href, os.getcwd())
    if path is None:
        return uuid.uuid4().hex
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino)


def _check_version(dataset: DatasetReader, stamp: Hashable) -> None:
    """Fail (closing ``dataset``) if its file is not the version ``stamp`` names.

    Only a local file's stamp (a tuple) can be checked; a remote file's or a missing
    one's (None) cannot.
    """
    if not isinstance(stamp, tuple) or file_stamp(dataset.name) == stamp:
        return
    dataset.close()
    reason = "the file changed since it was loaded (another size, modification time or inode)"
    raise ReadError(
        f"cannot read {dataset.name}: {reason}; load it again to read the new file",
        href=dataset.name,
        reason=reason,
    )


#: Drivers read through a dataset per thread besides stackstac's allowlist.
PER_THREAD_DRIVERS = frozenset({"JP2OpenJPEG"})


class Handles:
    """The datasets of one file (and its warp), one per thread where the driver allows.

    Parameters
    ----------
    env : stackstac.LayeredEnv
        GDAL options: ``env.open`` while opening, ``env.open_vrt`` while building the
        warped VRT, ``env.read`` while reading.
    dataset : rasterio.io.DatasetReader
        The file, opened by the calling thread with ``sharing=False``; that thread
        reads it (a thread-safe driver) or every thread does, one at a time.
    warp : mapping, optional
        Keyword arguments of :class:`rasterio.vrt.WarpedVRT` (``crs`` as text) when
        the file's grid is not the output grid; None to read the file as it is.
    overview_level : int, optional
        The overview (for JPEG2000, the resolution level) ``dataset`` was opened at
        (rasterio's ``overview_level``): the other threads open the same one.
    stamp : hashable, optional
        The version of the file that was loaded (:func:`file_stamp`): each open, this
        one's included, fails with a :class:`~lazyraster.errors.ReadError` if the file
        is another. None: not checked.

    Examples
    --------
    >>> import tempfile, stackstac
    >>> from lazyraster.testing import write_cog
    >>> path = write_cog(tempfile.mkdtemp() + "/a.tif", np.ones((8, 8), "uint16"))
    >>> env = stackstac.DEFAULT_GDAL_ENV
    >>> with env.open:
    ...     handles = Handles(env, rasterio.open(path, sharing=False))
    >>> handles.read(Window(0, 0, 4, 2), [1]).shape
    (1, 2, 4)
    """

    def __init__(
        self,
        env: LayeredEnv,
        dataset: DatasetReader,
        warp: Mapping[str, Any] | None = None,
        overview_level: int | None = None,
        stamp: Hashable = None,
    ) -> None:
        _check_version(dataset, stamp)
        self._env = env
        self._stamp = stamp
        self._open_options = {} if overview_level is None else {"overview_level": overview_level}
        self._url = dataset.name
        self._driver = dataset.driver
        self._warp = dict(warp) if warp is not None else None
        self._per_thread = (
            dataset.driver in MULTITHREADED_DRIVER_ALLOWLIST or dataset.driver in PER_THREAD_DRIVERS
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        if self._per_thread:
            self._local.source = self._warped(dataset)  # the opening thread's own
        else:
            self._source = self._warped(dataset)  # every thread's, read under the lock

    def _warped(self, dataset: DatasetReader) -> DatasetReader | WarpedVRT:
        if self._warp is None:
            return dataset
        with self._env.open_vrt:
            return WarpedVRT(dataset, sharing=False, **self._warp)

    def _open_here(self) -> DatasetReader | WarpedVRT:
        """Open the calling thread's own dataset (and VRT), on its first read."""
        with self._env.open:
            dataset = rasterio.open(
                self._url, sharing=False, driver=self._driver, **self._open_options
            )
            _check_version(dataset, self._stamp)
            source = self._local.source = self._warped(dataset)
        return source

    def read(self, window: Window, indexes: Sequence[int]) -> np.ndarray:
        """Bands ``indexes`` (1-based) of ``window``, shape (bands, rows, cols), native dtype."""
        if self._per_thread:
            source = getattr(self._local, "source", None)
            if source is None:
                source = self._open_here()
            with self._env.read:
                return source.read(indexes, window=window, masked=False)
        with self._lock, self._env.read:
            return self._source.read(indexes, window=window, masked=False)
