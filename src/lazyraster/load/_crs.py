"""A CRS as the integer stackstac wants for ``epsg``, also for CRSs without an EPSG code.

stackstac passes the output CRS around as an EPSG integer. :func:`crs_key` gives such an
integer for any CRS: its EPSG code, else a :class:`CRSKey` (an ``int`` outside the EPSG
range that carries the WKT), so a WKT, PROJJSON or ``IAU_2015:...`` CRS loads as well.
"""

from __future__ import annotations

import zlib
from typing import Any

from rasterio.crs import CRS

__all__ = ["CRSKey", "as_crs", "crs_key", "crs_text"]


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


def crs_text(key: int) -> str:
    """The CRS of an EPSG code or :class:`CRSKey` as text, parsed by each thread's VRT."""
    return key.wkt if isinstance(key, CRSKey) else f"EPSG:{int(key)}"
