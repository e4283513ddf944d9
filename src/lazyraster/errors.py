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


class ReadError(LazyrasterError, OSError):
    """A data file cannot be read (truncated, damaged, gone): the message names it.

    ``href`` is the file, ``item`` the id of the STAC item it belongs to, ``reason``
    what reading it said.
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
    """A worker process died during a computation (killed, out of memory) and the retry did too."""
