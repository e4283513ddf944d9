"""Exceptions raised by lazyraster.

Every error the package raises on purpose derives from :class:`LazyrasterError`, so a
batch script can catch them all in one place. Messages say what to do next.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it (``user:password@``) masked.

    Messages, dry-run plans and provenance name URLs; the secrets in them must not be
    printed, logged or written into outputs.

    Examples
    --------
    >>> redact("cannot read https://ana:s3cret@example.org/catalog.json: refused")
    'cannot read https://***@example.org/catalog.json: refused'
    """
    return _USERINFO.sub("***@", text)


class LazyrasterError(Exception):
    """Base class of every error raised on purpose by lazyraster.

    Examples
    --------
    >>> import lazyraster
    >>> try:
    ...     lazyraster.load([])
    ... except lazyraster.LazyrasterError as err:
    ...     print(type(err).__name__)
    EmptyResultError
    """


class MissingBandError(LazyrasterError, KeyError):
    """A computation needs a band (variable) that the Dataset does not have.

    Examples
    --------
    >>> import numpy as np, xarray as xr, lazyraster
    >>> lazyraster.ndvi(xr.Dataset({"red": ("x", np.ones(3))}))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lazyraster.errors.MissingBandError: ndvi needs band 'N': ... Pass nir=<variable name> ...
    """

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class MissingCRSError(LazyrasterError, ValueError):
    """An object carries no CRS where one is needed.

    Examples
    --------
    >>> import numpy as np, xarray as xr, lazyraster
    >>> lazyraster.write_geotiff(xr.DataArray(np.ones((2, 2)), dims=("y", "x")), "a.tif")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lazyraster.errors.MissingCRSError: the data has no CRS; set one with obj.rio.write_crs(...
    """


class EmptyResultError(LazyrasterError, ValueError):
    """A search or catalog yielded no items to load.

    Examples
    --------
    >>> import lazyraster
    >>> lazyraster.load("catalogs/sample/catalog.json", datetime="1999")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lazyraster.errors.EmptyResultError: no items in ... pass the filters ...
    """


class OutputExistsError(LazyrasterError, FileExistsError):
    """An output already exists and overwriting it was not asked for.

    Examples
    --------
    >>> import lazyraster
    >>> from lazyraster.testing import synthetic_raster
    >>> da = synthetic_raster((8, 8)).rename("ndvi")
    >>> _ = lazyraster.write_zarr(da, "a.zarr")
    >>> try:
    ...     lazyraster.write_zarr(da, "a.zarr")
    ... except FileExistsError as err:  # an OutputExistsError is a FileExistsError
    ...     print(type(err).__name__)
    OutputExistsError
    """


class UnfinishedCommitError(LazyrasterError, RuntimeError):
    """Outputs committed together were left part old, part new, and cannot all be made new.

    A run killed between two swaps of one commit leaves a journal beside each output,
    which the next write (or :func:`lazyraster.io.finish_commits`) rolls forward. This
    error says why it could not (the prepared data removed, a journal of another user
    or not of lazyraster) and what to run.

    Examples
    --------
    >>> issubclass(UnfinishedCommitError, LazyrasterError)
    True
    """


class CatalogError(LazyrasterError, ValueError):
    """A STAC catalog cannot be built, read or localized as asked.

    Examples
    --------
    >>> import os, lazyraster
    >>> os.mkdir("empty")
    >>> lazyraster.search("empty")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lazyraster.errors.CatalogError: ...
    """


class ClusterConfigError(LazyrasterError, ValueError):
    """A cluster option is wrong (no such partition, more memory than a node has, ...).

    Raised before anything is submitted.

    Examples
    --------
    >>> import lazyraster
    >>> with lazyraster.cluster("slurm", cores=8, memory="32GiB", walltime="forever",
    ...                         dry_run=True):  # doctest: +ELLIPSIS
    ...     pass
    Traceback (most recent call last):
    ...
    lazyraster.errors.ClusterConfigError: walltime='forever' is not a time limit SLURM accepts; ...
    """


class ClusterStartError(LazyrasterError, RuntimeError):
    """Cluster workers did not start: the message shows the jobs' state and logs.

    Examples
    --------
    No scheduler listens on port 9 of this machine:

    >>> import lazyraster
    >>> with lazyraster.cluster("tcp://127.0.0.1:9", timeout=0.5):  # doctest: +ELLIPSIS
    ...     pass
    Traceback (most recent call last):
    ...
    lazyraster.errors.ClusterStartError: cannot reach the dask scheduler at tcp://127.0.0.1:9 ...
    """


class SpecError(LazyrasterError, ValueError):
    """A pipeline spec is not valid: unknown key or step, wrong type, missing entry.

    Examples
    --------
    >>> from lazyraster.pipeline import Spec
    >>> Spec.from_mapping({"source": "catalog.json", "steps": ["nvdi"], "output": {}})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lazyraster.errors.SpecError: ...
    """


class ReadError(LazyrasterError, OSError):
    """A data file cannot be read (truncated, damaged, gone): the message names it.

    ``href`` is the file, ``item`` the id of the STAC item it belongs to, ``reason``
    what reading it said.

    Examples
    --------
    >>> err = ReadError("cannot read /d/B04.tif: truncated", href="/d/B04.tif", item="a")
    >>> isinstance(err, OSError), err.href, err.item
    (True, '/d/B04.tif', 'a')
    >>> print(err)
    cannot read /d/B04.tif: truncated
    """

    def __init__(
        self,
        message: str,
        *,
        href: str | None = None,
        item: str | None = None,
        reason: str | None = None,
    ):
        super().__init__(message)
        self.href = href
        self.item = item
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0])


class WorkerLostError(LazyrasterError, RuntimeError):
    """A worker process died during a computation (killed, out of memory) and the retry did too.

    Examples
    --------
    >>> issubclass(WorkerLostError, LazyrasterError)
    True
    >>> issubclass(WorkerLostError, RuntimeError)
    True
    """
