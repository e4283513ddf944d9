"""The process's limit on open files, raised where the package will hold many at once."""

from __future__ import annotations

import resource

__all__ = ["room_for"]

#: What the process may hold open besides: the interpreter, libraries, sockets.
HEADROOM = 256


def room_for(descriptors: int) -> None:
    """Raise this process's soft limit on open files if ``descriptors`` more may not fit.

    Up to the hard limit, which only an administrator can raise; past it, an open
    fails with ``EMFILE`` (``Too many open files``).

    Examples
    --------
    >>> soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    >>> room_for(8)
    >>> resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= min(8 + HEADROOM, hard)
    True
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = descriptors + HEADROOM
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
