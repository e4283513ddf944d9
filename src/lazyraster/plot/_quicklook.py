"""``quicklook``: a PNG of a COG/GeoTIFF, netCDF file or Zarr store, whole or not at all."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from lazyraster.errors import MissingBandError, OutputExistsError, ReadError
from lazyraster.io import finish_commits, replacing
from lazyraster.plot._figure import PANEL_INCHES, _variables, plot

#: Files that make a folder a Zarr node (v3, then v2 group and array).
_ZARR_FILES = ("zarr.json", ".zgroup", ".zarray")


def _zarr_kind(folder: Path) -> str | None:
    """``"group"``, ``"array"`` or None (not a Zarr node)."""
    if (folder / "zarr.json").is_file():
        try:
            meta = json.loads((folder / "zarr.json").read_text())
        except (OSError, ValueError):
            return None
        return str(meta.get("node_type", "group"))
    if (folder / ".zarray").is_file():
        return "array"
    return "group" if (folder / ".zgroup").is_file() else None


def _zarr_root(folder: Path) -> tuple[Path, str]:
    """The store holding the node ``folder``, and the node's path inside it.

    The store is relative if ``folder`` is and it has a name so spelled (not ``.``, ``..``).
    """
    here = Path(os.path.abspath(folder))
    root = here
    while root.parent != root and _zarr_kind(root.parent) is not None:
        root = root.parent
    node = here.relative_to(root).as_posix().strip(".")
    relative = Path(os.path.relpath(root))
    if not folder.is_absolute() and relative.name not in ("", ".."):
        root = relative
    return root, node


def _open_zarr(
    path: Path, variable: str | Sequence[str] | None
) -> tuple[xr.Dataset, str | Sequence[str] | None]:
    """The Dataset of the Zarr group at ``path`` (an array's path selects that variable)."""
    root, node = _zarr_root(path)
    if _zarr_kind(path) == "array":
        node, _, name = node.rpartition("/")
        variable = variable or name
    try:
        ds = xr.open_zarr(root, group=node or None, consolidated=None, chunks={})
    except (OSError, ValueError, KeyError) as exc:
        raise ReadError(f"cannot read the Zarr store {path}: {exc}", href=str(path)) from None
    if not ds.data_vars:
        groups = sorted(p.name for p in path.iterdir() if p.is_dir() and _zarr_kind(p))
        if groups:
            raise MissingBandError(
                f"{path} holds the groups {', '.join(groups)} and no variables: give one, "
                f"e.g. {path / groups[0]}"
            )
        raise MissingBandError(f"{path} is a Zarr store without variables: nothing to draw")
    return ds, variable


def _overview_level(src: Any, pixels: int) -> int | None:
    """The coarsest overview still at least ``pixels`` wide and tall (None: full size)."""
    level = None
    for i, factor in enumerate(src.overviews(1)):
        if min(src.width, src.height) / factor >= pixels:
            level = i
    return level


def _open_geotiff(path: Path, variable: str | None, pixels: int) -> xr.DataArray:
    """The GeoTIFF's bands, lazily, from the overview that suits ``pixels``."""
    import rasterio
    import rasterio.errors
    import rioxarray

    try:
        with rasterio.open(path) as src:
            level = _overview_level(src, pixels)
            names = [d or str(i + 1) for i, d in enumerate(src.descriptions)]
    except rasterio.errors.RasterioIOError:
        raise ReadError(
            f"{path} is not a raster: give a GeoTIFF/COG file or a Zarr store (a folder "
            "with zarr.json or .zgroup)",
            href=str(path),
        ) from None
    chunks = {"band": 1, "y": "auto", "x": "auto"}
    da = rioxarray.open_rasterio(path, overview_level=level, chunks=chunks)
    da = da.assign_coords(band=names)
    if variable is not None:
        if variable not in names:
            raise MissingBandError(
                f"no band {variable!r} in {path} (it has: {', '.join(names)}); pass one of "
                "those as variable= (CLI: --variable)"
            )
        da = da.sel(band=variable)
    elif len(names) == 1:
        da = da.isel(band=0)
    da.name = variable or (names[0] if len(names) == 1 else path.stem)
    if da.attrs.get("long_name") and not isinstance(da.attrs["long_name"], str):
        del da.attrs["long_name"]  # rioxarray's tuple of band descriptions
    return da


#: How netCDF files begin: netCDF-4 (HDF5), then netCDF-3 (classic, 64-bit offsets, CDF-5).
_NETCDF_MAGIC = (b"\x89HDF\r\n\x1a\n", b"CDF\x01", b"CDF\x02", b"CDF\x05")


def _is_netcdf(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(8).startswith(_NETCDF_MAGIC)


def _open_netcdf(path: Path) -> xr.Dataset:
    """The netCDF file's variables, lazily, each with the CRS of its CF ``grid_mapping``."""
    try:
        ds = xr.open_dataset(path, decode_coords="all", chunks={})
    except (OSError, ValueError) as exc:
        raise ReadError(f"cannot read the netCDF file {path}: {exc}", href=str(path)) from None
    crs = ds.rio.crs  # rioxarray reads the grid mapping's crs_wkt, or its CF parameters
    return ds if crs is None else ds.rio.write_crs(crs)


def _open(
    path: Path, variable: str | Sequence[str] | None, time: Any, pixels: int
) -> tuple[xr.Dataset | xr.DataArray, str | Sequence[str] | None]:
    """What to draw from ``path``: variable(s) of a Zarr group or netCDF, or GeoTIFF bands."""
    if not os.path.lexists(path):
        raise ReadError(f"{path} does not exist; check the path", href=str(path))
    if path.is_dir():
        if _zarr_kind(path) is None:
            raise ReadError(
                f"{path} is a folder but not a Zarr store or group (no zarr.json or .zgroup): "
                "give a Zarr store, or a GeoTIFF/COG file",
                href=str(path),
            )
        return _open_zarr(path, variable)
    if _is_netcdf(path):
        return _open_netcdf(path), variable
    if time is not None:
        raise ValueError(f"{path} is a GeoTIFF, which has no time steps: leave out time=")
    if variable is not None and not isinstance(variable, str):
        raise TypeError("variable= of a GeoTIFF is one band's description")
    return _open_geotiff(path, variable, pixels), None


def default_png(path: str | os.PathLike[str], variable: str | None = None) -> Path:
    """Where :func:`quicklook` writes by default: ``<name>.png`` beside the raster.

    For a group or array inside a Zarr store, beside the store, named after both.

    Examples
    --------
    >>> default_png("out/ndvi.tif").as_posix()
    'out/ndvi.png'
    >>> default_png("out/ndvi.zarr", "ndvi_focal_mean").as_posix()
    'out/ndvi-ndvi_focal_mean.png'
    """
    path = Path(path)
    root, node = _zarr_root(path) if path.is_dir() else (path, "")
    parts = [root.stem, *filter(None, node.split("/")), *([variable] if variable else [])]
    return root.with_name("-".join(parts) + ".png")


def quicklook(
    path: str | os.PathLike[str],
    png: str | os.PathLike[str] | None = None,
    *,
    variable: str | Sequence[str] | None = None,
    time: Any = None,
    overwrite: bool = False,
    max_panels: int = 6,
    dpi: float = 100,
    **options: Any,
) -> Path:
    """Write a PNG picture of a COG/GeoTIFF, netCDF file or Zarr store, as :func:`plot` draws it.

    A GeoTIFF is read from the overview level that still has as many pixels as the
    picture (rasterio through rioxarray), a Zarr store (as :func:`~lazyraster.write_zarr`
    writes it; a group, or an array, by its path inside the store) and a netCDF file
    (the CRS from its CF ``grid_mapping``) lazily with only the panels drawn computed.
    The PNG is written into a temporary beside ``png`` and moved into place complete
    (:func:`lazyraster.io.replacing`): a run killed midway leaves no partial PNG under
    its name. A commit of several outputs that a killed run left unfinished on ``path``
    is finished first (:func:`lazyraster.io.finish_commits`).

    Parameters
    ----------
    path : str or path-like
        A GeoTIFF/COG file, a netCDF file, or a Zarr store, group or array folder.
    png : str or path-like, optional
        The PNG to write (missing folders are created); default ``<name>.png`` beside
        ``path`` (beside the store, named after store, group and variable, for a Zarr
        group).
    variable : str or list of str, optional
        The variable of a Zarr group or netCDF file (or several, side by side), or the band (by
        description) of a GeoTIFF; may be left out when there is one.
    time : label or list of labels, optional
        Time steps (dates, ``"2023-05"`` for a month, years on a ``year`` dim); default
        one panel per step up to ``max_panels``.
    overwrite : bool
        Replace an existing PNG (refused by default).
    max_panels, dpi, **options
        As :func:`plot` (``cmap``, ``vmin``, ``vmax``, ``robust``, ``title``, ...).

    Returns
    -------
    pathlib.Path
        The PNG written.

    Raises
    ------
    OutputExistsError
        If ``png`` exists and ``overwrite`` is False (nothing is read or written), or
        another writer put it there while this one drew (theirs is kept).
    ReadError
        If ``path`` is missing or not a raster.
    ValueError
        If ``png`` is a folder, lies under a file or is not named ``.png`` (nothing is
        read), or for a ``time`` not in the data.
    MissingBandError
        If ``variable`` is not there (the message lists what is), or is needed.
    UnfinishedCommitError
        If a killed run left ``path`` part of a commit that cannot be finished.

    Examples
    --------
    >>> import numpy as np, os, tempfile, xarray as xr
    >>> from lazyraster.io import write_zarr
    >>> folder = tempfile.mkdtemp()
    >>> ndvi = xr.DataArray(
    ...     np.linspace(-1, 1, 16, dtype="float32").reshape(4, 4), dims=("y", "x"),
    ...     coords={"y": [35.0, 25.0, 15.0, 5.0], "x": [5.0, 15.0, 25.0, 35.0]}, name="ndvi",
    ... ).rio.write_crs("EPSG:32633")
    >>> store = write_zarr(ndvi, os.path.join(folder, "ndvi.zarr"))
    >>> quicklook(store).name
    'ndvi.png'
    """
    path = Path(path)
    if png is None:
        png = default_png(path, variable if isinstance(variable, str) else None)
    png = Path(png)
    if _within(png, path):
        raise OutputExistsError(
            f"{png} is (inside) the raster {path} to draw, which the PNG would replace: "
            "choose another PNG (CLI: --out)"
        )
    _check_png(png)
    if os.path.lexists(png) and not overwrite:
        raise OutputExistsError(_exists(png))
    if png.suffix.lower() != ".png":
        raise ValueError(
            f"{png} is not named .png: give a PNG file name, e.g. "
            f"{png.with_name(png.stem + '.png')} (CLI: --out)"
        )
    root, node = _zarr_root(path) if path.is_dir() else (path, "")
    for output in {path, root}:  # a killed run's commit, before drawing what it left
        finish_commits(output)
    obj, variable = _open(path, variable, time, int(PANEL_INCHES * dpi))
    arrays = _variables(obj, variable)
    label = "/".join(filter(None, [root.name, node]))
    heading = str(arrays[0].attrs.get("long_name") or arrays[0].name or "")
    if "title" not in options:
        options["title"] = f"{label}: {heading}" if heading and len(arrays) == 1 else label
    fig = plot(obj, variable=variable, time=time, max_panels=max_panels, dpi=dpi, **options)
    png.parent.mkdir(parents=True, exist_ok=True)  # as the writers do, once it is drawn
    try:
        with replacing(png, overwrite=overwrite) as tmp:
            fig.savefig(tmp.path, format="png", dpi=dpi)
    except OutputExistsError:  # another writer committed it while this one drew
        raise OutputExistsError(_exists(png)) from None
    return png


def _check_png(png: Path) -> None:
    """Refuse a PNG path that no file can take: a folder, or a path under a regular file."""
    if png.is_dir():
        raise ValueError(
            f"{png} is a folder: give the PNG file to write in it, e.g. {png / 'map.png'} "
            "(CLI: --out)"
        )
    for parent in png.parents:
        if os.path.lexists(parent) and not parent.is_dir():
            raise ValueError(
                f"{png} lies under {parent}, which is a file, not a folder: choose a PNG "
                "in a folder (CLI: --out)"
            )


def _within(png: Path, path: Path) -> bool:
    """Whether ``png`` is ``path`` (whatever the spelling or links) or inside its store."""
    png, path = Path(os.path.realpath(png)), Path(os.path.realpath(path))
    return png == path or (path in png.parents and _zarr_kind(path) is not None)


def _exists(png: Path) -> str:
    return (
        f"{png} already exists; pass overwrite=True (CLI: --overwrite) to replace it, or "
        "choose another PNG (CLI: --out)"
    )
