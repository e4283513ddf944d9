"""A stackstac reader that decodes, masks and rescales each chunk in one pass.

stackstac's own reader asks GDAL for a masked float array (a float copy of the data, a
boolean mask, and a third array when filling), then multiplies and adds in place. This
reader reads the file's native dtype (for Sentinel-2, uint16: half the bytes of
float32) and turns it into the output dtype with nodata -> fill, ``* scale + offset``
in a single numba loop that releases the GIL, so dask threads decode in parallel.

It relies on stackstac 0.5's reader classes (``AutoParallelRioReader`` and the dataset
wrappers it opens); the tests of :func:`lazyraster.load` pin its behaviour.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from stackstac.rio_reader import AutoParallelRioReader, NodataReader

__all__ = ["Reader"]


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


def _nodata_of(source: Any) -> float | None:
    reader = getattr(source, "vrt", None) or getattr(source, "ds", None) or source.dataset
    return reader.nodata


class Reader(AutoParallelRioReader):
    """stackstac reader with a fused decode (see the module docstring)."""

    def _open(self) -> Any:
        source = super()._open()
        self._nodata = None if isinstance(source, NodataReader) else _nodata_of(source)
        return source

    def read(self, window: Any, **kwargs: Any) -> np.ndarray:
        """Read ``window`` as ``self.dtype``: nodata -> fill, then scale and offset."""
        source = self.dataset
        if isinstance(source, NodataReader):
            return source.read(window)
        try:
            raw = source.read(window=window, masked=False, **kwargs)
        except Exception as err:
            raise RuntimeError(f"Error reading {window} from {self.url!r}: {err!r}") from err
        out = np.empty(raw.shape[1:], dtype=self.dtype)
        kind = self.dtype.type
        scale, offset = self.scale_offset
        has_alpha = raw.shape[0] == 2  # a warped VRT adds alpha when the file has no nodata
        alpha = raw[1] if has_alpha else raw[0, :1, :1]
        nodata = self._nodata
        return _decode(
            raw[0],
            raw.dtype.type(nodata) if nodata is not None else raw.dtype.type(0),
            nodata is not None,
            alpha,
            has_alpha,
            kind(scale),
            kind(offset),
            kind(self.fill_value),
            out,
        )
