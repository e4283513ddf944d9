"""The file formats a static catalog is built from, one module each.

:mod:`~lazyraster.catalog.formats.sentinel2` (Sentinel-2 L2A SAFE folders of JPEG2000
band files), :mod:`~lazyraster.catalog.formats.geotiff` (GeoTIFF and COG files) and
:mod:`~lazyraster.catalog.formats.netcdf` (CF netCDF files) each turn a file or folder
into the JSON of a STAC item (``safe_item``, ``geotiff_item``, ``netcdf_item``: a dict,
which :func:`lazyraster.catalog.build_catalog` turns into a :class:`pystac.Item`);
the builder chooses among them.
"""
