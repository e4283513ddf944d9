"""Pictures: maps of DataArrays and Datasets, and PNG quicklooks of COGs and Zarr stores.

:func:`plot` draws a raster in its CRS (axes in map units, north up, equal aspect),
with a colour map chosen from the data (normalised indices red-yellow-green on -1..1,
days of year sequential, anything else sequential with robust limits), nodata in a
colour of its own, and one panel per time step up to ``max_panels``. It is bound as
``da.geo.plot()`` and ``ds.geo.plot(variable=...)``. :func:`quicklook` writes such a
picture of a COG/GeoTIFF or a Zarr store to a PNG (``lazyraster quicklook PATH``)::

    from lazyraster.plot import plot, quicklook
    fig = plot(ndvi, max_panels=4)
    quicklook("out/ndvi.zarr", "ndvi.png")

matplotlib is imported when a picture is drawn, not with this package. Figures are
made without pyplot, so they need no display (they draw with Agg when saved) and leave
no global state; in Jupyter they show as the cell's result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from lazyraster._imports import lazy_exports as _lazy_exports

if _TYPE_CHECKING:
    from lazyraster.plot._figure import plot
    from lazyraster.plot._quicklook import quicklook

_HOME = {"plot": "_figure", "quicklook": "_quicklook"}

__all__ = ["plot", "quicklook"]

__getattr__, __dir__ = _lazy_exports(__name__, _HOME)
