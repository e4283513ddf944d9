"""Small but faithful sample inputs for catalogs: SAFE products, COGs, Daymet-like netCDF.

Used by the tests, the benchmark and the examples; every file is written with the same
libraries the real products are read with (GDAL for JPEG2000 and COG, netCDF4/HDF5).

Examples
--------
>>> import tempfile, pathlib
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> safe = write_safe(tmp, baseline="04.00", bands={"10m": ["B04"]})
>>> sorted(p.name for p in safe.rglob("*.jp2"))
['T31UFU_20230430T104621_B04_10m.jp2']
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

__all__ = ["write_sample_cog", "write_daymet", "write_safe"]

#: Band files of a real L2A product, per resolution.
L2A_BANDS: dict[str, list[str]] = {
    "10m": ["AOT", "B02", "B03", "B04", "B08", "TCI", "WVP"],
    "20m": [
        "AOT",
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B11",
        "B12",
        "B8A",
        "SCL",
        "TCI",
        "WVP",
    ],
    "60m": [
        "AOT",
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B09",
        "B11",
        "B12",
        "B8A",
        "SCL",
        "TCI",
        "WVP",
    ],
}

_MTD = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-2A_User_Product xmlns:n1="{psd}" xmlns:xsi="{xsi}" xsi:schemaLocation="{psd}">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{start}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{start}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{name}</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <GENERATION_TIME>{generation}</GENERATION_TIME>
      <PREVIEW_IMAGE_URL>Not applicable</PREVIEW_IMAGE_URL>
      <PREVIEW_GEO_INFO>Not applicable</PREVIEW_GEO_INFO>
      <Datatake datatakeIdentifier="GS2{unit}_{compact}_000000_N{nbaseline}">
        <SPACECRAFT_NAME>Sentinel-2{unit}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>{start}</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>{orbit}</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Product_Organisation>
        <Granule_List>
          <Granule datastripIdentifier="{datastrip}" granuleIdentifier="{granule}"
                   imageFormat="JPEG2000">
{image_files}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Image_Display_Order>
        <RED_CHANNEL>3</RED_CHANNEL>
        <GREEN_CHANNEL>2</GREEN_CHANNEL>
        <BLUE_CHANNEL>1</BLUE_CHANNEL>
      </Image_Display_Order>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
        <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>
        <WVP_QUANTIFICATION_VALUE unit="cm">1000.0</WVP_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
{offsets}    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Coordinate_Reference_System>
      <GEO_TABLES version="1">EPSG</GEO_TABLES>
      <HORIZONTAL_CS_TYPE>GEOGRAPHIC</HORIZONTAL_CS_TYPE>
    </Coordinate_Reference_System>
  </n1:Geometric_Info>
  <n1:Quality_Indicators_Info>
    <Cloud_Coverage_Assessment>{cloud}</Cloud_Coverage_Assessment>
    <Technical_Quality_Assessment>
      <DEGRADED_ANC_DATA_PERCENTAGE>0.0</DEGRADED_ANC_DATA_PERCENTAGE>
      <DEGRADED_MSI_DATA_PERCENTAGE>0</DEGRADED_MSI_DATA_PERCENTAGE>
    </Technical_Quality_Assessment>
  </n1:Quality_Indicators_Info>
</n1:Level-2A_User_Product>
"""

_MTD_TL = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_Tile_ID xmlns:n1="{psd}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <n1:General_Info>
    <TILE_ID metadataLevel="Brief">S2{unit}_OPER_MSI_L2A_TL_{compact}_T{tile}_N{nbaseline}</TILE_ID>
    <SENSING_TIME metadataLevel="Standard">{sensing}</SENSING_TIME>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding metadataLevel="Brief">
      <HORIZONTAL_CS_NAME>WGS84 / UTM zone {zone}</HORIZONTAL_CS_NAME>
      <HORIZONTAL_CS_CODE>EPSG:{epsg}</HORIZONTAL_CS_CODE>
{sizes}{positions}    </Tile_Geocoding>
  </n1:Geometric_Info>
</n1:Level-2A_Tile_ID>
"""

_BAND_IDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
             "B11", "B12"]  # fmt: skip


def write_safe(
    folder: str | Path,
    *,
    baseline: str = "05.09",
    start: _dt.datetime = _dt.datetime(2023, 4, 30, 10, 46, 21, 24000),
    tile: str = "31UFU",
    unit: str = "A",
    orbit: int = 51,
    cloud: float = 12.345678,
    epsg: int = 32631,
    origin: tuple[float, float] = (600000.0, 5700000.0),
    size_10m: int = 24,
    bands: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    metadata: bool = True,
    tile_metadata: bool = True,
) -> Path:
    """Write a Sentinel-2 L2A SAFE folder with real JPEG2000 band files.

    The grids are those of a real tile scaled down: ``size_10m`` pixels of 10 m, and
    ``size_10m / 2`` of 20 m and ``size_10m / 6`` of 60 m over the same extent. Pixel
    values are seeded random DNs in 1..10000; SCL is uint8 and TCI 3-band uint8.
    ``MTD_MSIL2A.xml`` follows the real layout (namespaced root,
    ``BOA_ADD_OFFSET_VALUES_LIST`` of -1000 from baseline 04.00 on), and so does the
    granule's ``MTD_TL.xml`` (``Tile_Geocoding`` with ``Size`` and ``Geoposition`` per
    resolution); ``metadata`` and ``tile_metadata`` leave them out.

    Returns
    -------
    Path
        The ``.SAFE`` folder.

    Examples
    --------
    >>> safe = write_safe("products", tile="31UFU")
    >>> safe.name
    'S2A_MSIL2A_20230430T104621_N0509_R051_T31UFU_20230430T151154.SAFE'
    >>> len(list(safe.rglob("*_B04_10m.jp2")))
    1
    """
    nbaseline = baseline.replace(".", "")
    compact = start.strftime("%Y%m%dT%H%M%S")
    generation = start + _dt.timedelta(hours=4, minutes=25, seconds=33)
    name = (
        f"S2{unit}_MSIL2A_{compact}_N{nbaseline}_R{orbit:03d}_T{tile}_"
        f"{generation.strftime('%Y%m%dT%H%M%S')}.SAFE"
    )
    granule = f"L2A_T{tile}_A000000_{compact}"
    safe = Path(folder) / name
    rng = np.random.default_rng(seed)
    image_files = []
    for res, names in (bands or L2A_BANDS).items():
        metres = int(res.rstrip("m"))
        n = max(1, size_10m * 10 // metres)
        img = safe / "GRANULE" / granule / "IMG_DATA" / f"R{res}"
        img.mkdir(parents=True, exist_ok=True)
        for band in names:
            stem = f"T{tile}_{compact}_{band}_{res}"
            image_files.append(
                f"            <IMAGE_FILE>GRANULE/{granule}/IMG_DATA/R{res}/{stem}</IMAGE_FILE>"
            )
            count = 3 if band == "TCI" else 1
            dtype = "uint8" if band in ("TCI", "SCL") else "uint16"
            high = {"TCI": 255, "SCL": 12}.get(band, 10000)
            data = rng.integers(1, high, size=(count, n, n)).astype(dtype)
            with rasterio.open(
                img / f"{stem}.jp2",
                "w",
                driver="JP2OpenJPEG",
                width=n,
                height=n,
                count=count,
                dtype=dtype,
                crs=f"EPSG:{epsg}",
                transform=from_origin(*origin, metres, metres),
                QUALITY=100,
                REVERSIBLE="YES",
            ) as dst:
                dst.write(data)
    if tile_metadata:
        sizes = positions = ""
        for res in bands or L2A_BANDS:
            metres = int(res.rstrip("m"))
            n = max(1, size_10m * 10 // metres)
            sizes += (f'      <Size resolution="{metres}">\n        <NROWS>{n}</NROWS>\n'
                      f"        <NCOLS>{n}</NCOLS>\n      </Size>\n")  # fmt: skip
            positions += (
                f'      <Geoposition resolution="{metres}">\n'
                f"        <ULX>{origin[0]:.15g}</ULX>\n        <ULY>{origin[1]:.15g}</ULY>\n"
                f"        <XDIM>{metres}</XDIM>\n        <YDIM>-{metres}</YDIM>\n"
                "      </Geoposition>\n"
            )
        (safe / "GRANULE" / granule / "MTD_TL.xml").write_text(
            _MTD_TL.format(
                psd="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-2A_Tile_Metadata.xsd",
                unit=unit,
                compact=compact,
                tile=tile,
                nbaseline=nbaseline,
                sensing=start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                zone=f"{epsg % 100}{'N' if epsg < 32700 else 'S'}",
                epsg=epsg,
                sizes=sizes,
                positions=positions,
            ),
            encoding="utf-8",
        )
    if metadata:
        offsets = ""
        if tuple(int(p) for p in baseline.split(".")) >= (4, 0):
            lines = "".join(
                f'        <BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>\n'
                for i in range(len(_BAND_IDS))
            )
            offsets = (
                f"      <BOA_ADD_OFFSET_VALUES_LIST>\n{lines}      </BOA_ADD_OFFSET_VALUES_LIST>\n"
            )
        stamp = start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{start.microsecond // 1000:03d}Z"
        (safe / "MTD_MSIL2A.xml").write_text(
            _MTD.format(
                start=stamp,
                name=name,
                baseline=baseline,
                nbaseline=nbaseline,
                generation=generation.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                unit=unit,
                compact=compact,
                orbit=orbit,
                granule=granule,
                datastrip=f"S2{unit}_OPER_MSI_L2A_DS_{compact}_N{nbaseline}",
                psd="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd",
                xsi="http://www.w3.org/2001/XMLSchema-instance",
                image_files="\n".join(image_files),
                offsets=offsets,
                cloud=cloud,
            ),
            encoding="utf-8",
        )
    return safe


def write_sample_cog(
    path: str | Path,
    *,
    shape: tuple[int, int] = (32, 32),
    count: int = 1,
    dtype: str = "uint16",
    epsg: int = 32631,
    origin: tuple[float, float] = (600000.0, 5700000.0),
    resolution: float = 10.0,
    nodata: float | None = 0,
    descriptions: Sequence[str] | None = None,
    datetime_tag: str | None = None,
    scale: float | None = None,
    offset: float | None = None,
    seed: int = 0,
) -> Path:
    """Write a small Cloud-Optimized GeoTIFF (GDAL's COG driver) with seeded values.

    Examples
    --------
    >>> import rasterio
    >>> path = write_sample_cog("B04.tif", shape=(16, 16))
    >>> with rasterio.open(path) as src:
    ...     src.shape, src.dtypes, str(src.crs)
    ((16, 16), ('uint16',), 'EPSG:32631')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 10000, size=(count, *shape)).astype(dtype)
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=shape[1],
        height=shape[0],
        count=count,
        dtype=dtype,
        crs=f"EPSG:{epsg}",
        transform=from_origin(*origin, resolution, resolution),
        nodata=nodata,
    ) as dst:
        dst.write(data)
        if descriptions:
            for i, text in enumerate(descriptions, start=1):
                dst.set_band_description(i, text)
        if datetime_tag:
            dst.update_tags(TIFFTAG_DATETIME=datetime_tag)
        if scale is not None or offset is not None:
            dst.scales = [scale if scale is not None else 1.0] * count
            dst.offsets = [offset if offset is not None else 0.0] * count
    return path


def write_daymet(
    path: str | Path,
    *,
    variable: str = "tmax",
    year: int = 2020,
    shape: tuple[int, int] = (6, 8),
    days: int = 365,
    x0: float = -1000.0,
    y0: float = 500.0,
    resolution: float = 1000.0,
    seed: int = 0,
    grid_mapping: bool = True,
) -> Path:
    """Write a Daymet-like daily netCDF file: Lambert conformal conic grid, CF time bounds.

    Like Daymet v4: ``x``/``y`` in metres, ``time`` at noon of each day with
    ``time_bnds`` from midnight to midnight, the variable on ``(time, y, x)`` with
    ``grid_mapping = "lambert_conformal_conic"``.

    Examples
    --------
    >>> import xarray as xr
    >>> path = write_daymet("tmax_2020.nc", days=3)
    >>> with xr.open_dataset(path) as ds:
    ...     ds.tmax.dims, ds.tmax.shape, ds.tmax.attrs["grid_mapping"]
    (('time', 'y', 'x'), (3, 6, 8), 'lambert_conformal_conic')
    """
    import xarray as xr

    from lazyraster.testing._arrays import DAYMET_LCC

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ny, nx = shape
    x = x0 + resolution * (np.arange(nx) + 0.5)
    y = y0 - resolution * (np.arange(ny) + 0.5)
    t0 = np.datetime64(f"{year}-01-01T00:00:00", "s")
    starts = t0 + np.arange(days) * np.timedelta64(1, "D")
    values = rng.normal(10, 5, size=(days, ny, nx)).astype("float32")
    data_attrs = {"long_name": f"daily {variable}", "units": "degrees C"}
    if grid_mapping:
        data_attrs["grid_mapping"] = "lambert_conformal_conic"
    ds = xr.Dataset(
        {
            variable: (("time", "y", "x"), values, data_attrs),
            "time_bnds": (("time", "nv"), np.stack([starts, starts + np.timedelta64(1, "D")], 1)),
        },
        coords={
            "time": ("time", starts + np.timedelta64(12, "h"), {"bounds": "time_bnds"}),
            "y": ("y", y, {"units": "m", "standard_name": "projection_y_coordinate"}),
            "x": ("x", x, {"units": "m", "standard_name": "projection_x_coordinate"}),
        },
    )
    if grid_mapping:
        ds["lambert_conformal_conic"] = ((), np.int16(0), DAYMET_LCC)
    units = {"units": "days since 1950-01-01 00:00:00", "dtype": "float64"}
    encoding = {"time": units, "time_bnds": units}
    ds.to_netcdf(path, engine="netcdf4", encoding=encoding)
    return path
