"""Exceptions raised by lazyraster.

Every error the package raises on purpose derives from :class:`LazyrasterError`, so a
batch script can catch them all in one place. Messages say what to do next.
"""

from __future__ import annotations


class LazyrasterError(Exception):
    """Base class of every error raised on purpose by lazyraster."""


class MissingBandError(LazyrasterError, KeyError):
    """A computation needs a band (variable) that the Dataset does not have."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class MissingCRSError(LazyrasterError, ValueError):
    """An object carries no CRS where one is needed."""


class EmptyResultError(LazyrasterError, ValueError):
    """A search or catalog yielded no items to load."""


class OutputExistsError(LazyrasterError, FileExistsError):
    """An output already exists and overwriting it was not asked for."""


class CatalogError(LazyrasterError, ValueError):
    """A STAC catalog cannot be built, read or localized as asked."""


class ClusterConfigError(LazyrasterError, ValueError):
    """A cluster option is wrong (no such partition, more memory than a node has, ...)."""


class ClusterStartError(LazyrasterError, RuntimeError):
    """Cluster workers did not start: the message shows the jobs' state and logs."""


class SpecError(LazyrasterError, ValueError):
    """A pipeline spec is not valid: unknown key or step, wrong type, missing entry."""


class RasterReadError(LazyrasterError, RuntimeError):
    """A raster file could not be opened or decoded when its pixels were computed."""
