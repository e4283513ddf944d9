"""GeoTIFFs and Cloud Optimized GeoTIFFs: :func:`write_geotiff` and its final task.

GeoTIFFs are not written through ``rioxarray``'s ``to_raster``, which serialises dask
writes behind one lock and, in COG mode, can build overviews before the data are in
place (all-zero overviews). Each dask task compresses its own block into tiles, and
the overview levels whose tiles fall inside the block; each coarser level is made by
tasks that combine 2 x 2 of the tasks before; one final task assembles the Cloud
Optimized GeoTIFF by copying the compressed tiles behind GDAL's header (the tasks are
in :mod:`lazyraster.io.cog._graph`; the file layout and the overviews in
:mod:`lazyraster.io.cog._tiff` and :mod:`lazyraster.io.cog._overviews`). The
compression, the bulk of the work, so runs in parallel on every worker, no task holds
much more than a chunk, and the final task only copies bytes.

The rules shared with the Zarr writer (refuse to overwrite, atomic commit, lazy and
scheduler-agnostic) are those of :mod:`lazyraster.io._output`.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from dask.delayed import Delayed
from fsspec.implementations.local import LocalFileSystem

from lazyraster.errors import MissingCRSError, OutputExistsError
from lazyraster.io import _atomic
from lazyraster.io._atomic import _discard_local, _hold, _release, missing_folders, remove_empty
from lazyraster.io._journal import Swap
from lazyraster.io._output import (
    WriteMode,
    _check_mode,
    _check_replaceable_tiff,
    _compute,
    _disk_full,
    _exists_message,
    _provenance,
)
from lazyraster.io._together import Commit, commit_one, pending
from lazyraster.io.cog import _tiff
from lazyraster.io.cog._graph import (
    _block_profile,
    _inner_levels,
    _level_tiles,
    _overview_factors,
    _tile_aligned,
    _TileLevel,
    _write_block,
    _write_group,
    _Written,
)

__all__ = ["write_geotiff"]

_GDAL_DTYPES = frozenset(
    {"uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"}
)
# GDAL's overview methods (gdaladdo -r)
_OVERVIEW_RESAMPLINGS = (
    "average",
    "nearest",
    "bilinear",
    "cubic",
    "cubic_spline",
    "lanczos",
    "mode",
    "gauss",
    "rms",
)


def _step_label(value: Any) -> str:
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="D"))
    return str(value.item() if hasattr(value, "item") else value).replace("/", "-")


def _as_bands(
    obj: xr.Dataset | xr.DataArray, per: Hashable | None, nodata: float | None = None
) -> xr.DataArray:
    """Return a DataArray with dims ``([per,] band, y, x)``.

    A Dataset's variables become bands, with their common nodata unless ``nodata`` is
    given.
    """
    if isinstance(obj, xr.Dataset):
        if not obj.data_vars:
            raise ValueError("the Dataset has no variables to write")
        dtype = np.result_type(*(v.dtype for v in obj.data_vars.values()))
        names = [str(n) for n in obj.data_vars]
        found = {_recorded_nodata(v) for v in obj.data_vars.values()} - {None}
        if nodata is None and len({str(v) for v in found}) > 1:  # str: NaN equals NaN
            raise ValueError(
                f"the variables have different nodata values {sorted(map(str, found))}, but "
                "a GeoTIFF has one; pass nodata= (NaN pixels become it) or make them equal"
            )
        da = obj.astype(dtype).to_dataarray(dim="band").assign_coords(band=names)
        da.attrs = dict(obj.attrs)
        da = da.rio.write_crs(obj.rio.crs) if obj.rio.crs is not None else da
        if nodata is None and found:
            da = da.rio.write_nodata(found.pop())
    elif isinstance(obj, xr.DataArray):
        da = obj
    else:
        raise TypeError(f"write_geotiff needs an xarray Dataset or DataArray, not {type(obj)!r}")
    ydim, xdim = da.rio.y_dim, da.rio.x_dim
    other = [d for d in da.dims if d not in (ydim, xdim, per)]
    if per is not None and per not in da.dims:
        raise ValueError(f"per={per!r} is not a dimension of the data (dims: {da.dims})")
    if len(other) > 1:
        raise ValueError(
            f"a GeoTIFF holds bands of one 2-D grid, but the data has extra dims {other}; "
            "select or stack them, or write one file per step with per=<dim>"
        )
    if not other:
        da = da.expand_dims("band")
        other = ["band"]
    lead = [per] if per is not None else []
    return da.transpose(*lead, other[0], ydim, xdim)


def _descriptions(da: xr.DataArray) -> list[str]:
    """Band descriptions: the band coordinate's labels, or the name of a single band."""
    dim = da.dims[0]
    if dim in da.coords:
        return [_step_label(v) for v in da[dim].values]
    if da.sizes[dim] == 1 and da.name is not None:
        return [str(da.name)]
    return [str(i + 1) for i in range(da.sizes[dim])]


def _recorded_nodata(da: xr.DataArray) -> float | None:
    """The nodata value of ``da``: encoded (``_FillValue`` masked on load) or not."""
    return da.rio.encoded_nodata if da.rio.encoded_nodata is not None else da.rio.nodata


def _resolve_nodata(da: xr.DataArray, nodata: float | None) -> float | None:
    if nodata is None:
        nodata = _recorded_nodata(da)
    if nodata is None and np.issubdtype(da.dtype, np.floating):
        nodata = float("nan")
    if nodata is not None and not np.isnan(nodata) and np.issubdtype(da.dtype, np.integer):
        info = np.iinfo(da.dtype)
        if not info.min <= nodata <= info.max or nodata != int(nodata):
            raise ValueError(f"nodata={nodata} cannot be stored in {da.dtype}; pick another")
    return None if nodata is None else float(nodata)


def _assemble_geotiff(
    written: Sequence[_Written],
    *,
    shape: tuple[int, int, int],
    tmpdir: str,
    cog: bool,
    profile: Mapping[str, Any],
    factors: Sequence[int],
    nodata: float | None,
    georef: Mapping[str, Any],
    descriptions: Sequence[str],
    tags: Mapping[str, str],
) -> str:
    """Assemble the tasks' tiles into ``tmpdir/out.tif``; return its path.

    The full-resolution IFD (georeferencing, nodata, metadata, band descriptions) is
    GDAL's, taken from an empty (sparse) file of the full size.
    """
    _, height, width = shape
    tile = profile["blockxsize"]
    template = os.path.join(tmpdir, "template.tif")
    full = {"width": width, "height": height, "nodata": nodata, "sparse_ok": True}
    with rasterio.open(template, "w", **full, **profile, **georef) as dst:
        dst.update_tags(**tags)
        dst.descriptions = tuple(descriptions)
    (main,) = _tiff.read_ifds(template)

    by_level: list[list[tuple[_TileLevel, tuple[int, int]]]] = [[] for _ in range(len(factors) + 1)]
    for tile_levels, first, (y0, x0) in written:
        for k, tiles in enumerate(tile_levels, start=first):
            by_level[k].append((tiles, (y0 >> k, x0 >> k)))
    levels = []
    for k, f in enumerate((1, *factors)):
        size = (-(-height // f), -(-width // f))
        ifd = main if k == 0 else _tiff.overview_ifd(main, size)
        levels.append(_tiff.Image(ifd, _level_tiles(by_level[k], size, tile)))
    out = os.path.join(tmpdir, "out.tif")
    _tiff.write_tiff(out, levels, cog=cog)
    return out


@dataclasses.dataclass
class _GeoTIFFCommit(Commit):
    """Put the assembled GeoTIFF ``out`` (in the temporary ``tmpdir``) at ``target``."""

    out: str
    tmpdir: str
    target: str
    mode: str

    def check(self) -> None:
        if os.path.lexists(self.target):
            if self.mode != "w":
                raise OutputExistsError(_exists_message(self.target))
            _check_replaceable_tiff(self.target)

    def staged(self) -> Swap:
        return Swap(self.tmpdir, self.out, self.target, replace=self.mode == "w")

    def swap(self) -> None:
        if self.mode == "w":
            _atomic.commit(self.out, self.target)
        else:
            try:
                os.link(self.out, self.target)  # fails if the target appeared: never clobber
            except FileExistsError:
                raise OutputExistsError(_exists_message(self.target)) from None

    def close(self, committed: bool) -> None:
        _discard_local(self.tmpdir)
        if committed:  # after the locks: the swaps of outputs committed together stay close
            _atomic.sweep(self.target)


def _prepare_geotiff(
    written: Sequence[_Written], *, tmpdir: str, target: str, mode: str, **assembly: Any
) -> _GeoTIFFCommit:
    """Assemble the final GeoTIFF; return its commit."""
    try:
        out = _assemble_geotiff(written, tmpdir=tmpdir, **assembly)
    except BaseException:
        _discard_local(tmpdir)
        raise
    return _GeoTIFFCommit(out, tmpdir, target, mode)


def _geotiff_graph(
    da: xr.DataArray,
    target: str,
    tmpdir: str,
    *,
    mode: str,
    cog: bool,
    profile: Mapping[str, Any],
    overviews: bool | int,
    nodata: float | None,
    resampling: str,
    tags: Mapping[str, str],
) -> tuple[Delayed, str]:
    """Delayed that writes ``da`` (band, y, x) as ``target``'s GeoTIFF: to its commit.

    The GeoTIFF is assembled in ``tmpdir``; the Delayed computes to its commit
    (:class:`_GeoTIFFCommit`), which puts it at ``target``.

    Block tasks write the full resolution and the overview levels inside their block;
    then each coarser level is written by tasks that each combine 2 x 2 of the tasks
    before, so that every task holds about one chunk, and the final task only copies.
    Also returns ``tmpdir``, the held temporary (created here) where the files go.
    """
    os.makedirs(tmpdir)
    tile = profile["blockxsize"]
    arr = da.data if isinstance(da.data, dsa.Array) else dsa.from_array(da.data, chunks=2048)
    arr = _tile_aligned(arr, tile)
    factors = _overview_factors(arr.shape[1], arr.shape[2], tile, overviews)
    inner = _inner_levels(arr.chunks[1:], tile, len(factors))
    georef = {"crs": da.rio.crs.to_wkt(), "transform": da.rio.transform(recalc=True)}
    options = {"profile": profile, "georef": georef, "nodata": nodata, "resampling": resampling}
    starts = [np.cumsum((0, *c[:-1])).tolist() for c in arr.chunks]
    written, handed, origins = [], {}, {}
    for (_, j, k), block in np.ndenumerate(arr.to_delayed()):
        origins[j, k] = (starts[1][j], starts[2][k])
        done, handed[j, k] = dask.delayed(_write_block, pure=False, nout=2)(
            block,
            os.path.join(tmpdir, f"block-{j}-{k}.tif"),
            origin=origins[j, k],
            inner=inner,
            handoff=inner < len(factors),
            **options,
        )
        written.append(done)
    for level in range(inner + 1, len(factors) + 1):  # each from 2 x 2 of the tasks before
        groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for j, k in handed:
            groups.setdefault((j // 2, k // 2), []).append((j, k))
        next_handed, next_origins = {}, {}
        for (j, k), members in sorted(groups.items()):
            members.sort()
            done, next_handed[j, k] = dask.delayed(_write_group, pure=False, nout=2)(
                [handed[m] for m in members],
                [origins[m] for m in members],
                os.path.join(tmpdir, f"ov{level}-{j}-{k}.tif"),
                level=level,
                handoff=level < len(factors),
                **options,
            )
            next_origins[j, k] = origins[members[0]]
            written.append(done)
        handed, origins = next_handed, next_origins
    prepared = dask.delayed(_prepare_geotiff, pure=False)(
        written,
        shape=arr.shape,
        tmpdir=tmpdir,
        target=target,
        mode=mode,
        cog=cog,
        profile=profile,
        factors=factors,
        nodata=nodata,
        georef=georef,
        descriptions=_descriptions(da),
        tags=tags,
    )
    return prepared, tmpdir


def write_geotiff(
    obj: xr.Dataset | xr.DataArray,
    path: str | os.PathLike[str],
    *,
    cog: bool = True,
    compress: str | None = "deflate",
    predictor: int | None = None,
    overviews: bool | int = True,
    blocksize: int = 512,
    nodata: float | None = None,
    compute: bool = True,
    mode: WriteMode = "w-",
    per: Hashable | None = None,
    resampling: str = "average",
    inputs: Sequence[str] | str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> str | list[str] | Delayed:
    """Write a raster as a Cloud Optimized GeoTIFF (or tiled GeoTIFF), in parallel.

    Every dask block is compressed into tiles by its own task, together with the
    overview levels whose tiles lie inside it, and written to its own file (so tasks
    never share a file handle or a lock); each coarser level is written by tasks that
    combine 2 x 2 of the tasks before. A final task assembles the COG: GDAL's header
    (CRS, transform, nodata, metadata), the IFDs of every level, then the compressed
    tiles copied byte for byte in GDAL's COG layout. Chunks that are not regular whole
    tiles are rechunked to whole tiles first. Memory stays bounded by a few chunks,
    whatever the image size. The output appears under ``path`` only when complete.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        A 2-D ``(y, x)`` raster, or 3-D with one extra dimension (bands, or time steps
        with ``per=``). A Dataset's variables become bands (in a common dtype) whose
        descriptions are the variable names, with their common nodata (different
        values need ``nodata=``). Must carry a CRS (``spatial_ref``).
    path : str or path-like
        Local output file, on a file system every worker sees.
    cog : bool
        Cloud Optimized GeoTIFF (default), or a plain tiled GeoTIFF if ``False``.
    compress : str or None
        GDAL compression: ``"deflate"`` (made in the tasks by libdeflate, at GDAL's
        default level 6), ``"zstd"``, ``"lzw"``, ``"webp"``, ``None``... (GDAL's, in
        the tasks too). JPEG, whose tiles share tables, is refused.
    predictor : {None, 1, 2, 3}
        1 none, 2 horizontal (integers), 3 floating point; ``None`` picks 3 for floats and
        2 for integers when the compression benefits from it.
    overviews : bool or int
        Build overviews down to one block (``True``), none, or that many levels.
    blocksize : int
        Tile size in pixels (a multiple of 16).
    nodata : float, optional
        Nodata value. Default: the object's (``rio.encoded_nodata`` / ``rio.nodata``),
        NaN for floats. NaN pixels are written as ``nodata``; overviews ignore nodata.
    compute : bool
        If ``False``, return a :class:`dask.delayed.Delayed` that writes the file(s)
        (names and existing outputs are checked now); pass it to
        :func:`~lazyraster.io.discard_temporaries` once computed.
    mode : {"w-", "w"}
        Refuse (default) or replace an existing output; only a TIFF file is replaced.
    per : hashable, optional
        Write one file per step of this dimension (e.g. ``"time"``). ``path`` is a
        pattern with ``{}`` (``"ndvi_{}.tif"``) or gets ``_<step>`` before its suffix;
        dates are written as ``YYYY-MM-DD``.
    resampling : str
        Overview resampling: ``"average"`` (each overview pixel the exact mean of the
        valid full-resolution pixels it covers), ``"nearest"`` (the first pixel of
        each window), or GDAL's
        ``"bilinear"``, ``"cubic"``, ``"cubic_spline"``, ``"lanczos"``, ``"mode"``,
        ``"gauss"``, ``"rms"`` (each level from the one before, within each task's
        region).
    inputs, parameters : optional
        Recorded as ``lazyraster_*`` metadata tags, like in :func:`write_zarr`.

    Returns
    -------
    str, list of str, or dask.delayed.Delayed
        The absolute path(s) written, or a Delayed that computes to them.

    Raises
    ------
    OutputExistsError
        If an output exists and ``mode`` is not ``"w"``, or is not a TIFF file.
    OSError
        ``ENOSPC`` when the disk is full (the previous output is unchanged).
    MissingCRSError
        If ``obj`` has no CRS.

    Examples
    --------
    >>> import os, tempfile, rasterio
    >>> from lazyraster.testing import synthetic_raster
    >>> da = synthetic_raster((600, 700), chunks={"y": 256, "x": 300})
    >>> path = os.path.join(tempfile.mkdtemp(), "band.tif")
    >>> write_geotiff(da, path, blocksize=256) == path
    True
    >>> with rasterio.open(path) as src:
    ...     src.crs.to_epsg(), src.overviews(1), src.block_shapes[0]
    (32631, [2, 4], (256, 256))
    """
    _check_mode(mode)
    if blocksize % 16 or blocksize < (128 if cog else 16):
        raise ValueError(
            f"blocksize must be a multiple of 16 and at least {128 if cog else 16} "
            f"{'for a COG ' if cog else ''}(GDAL's limits), not {blocksize}"
        )
    if resampling not in _OVERVIEW_RESAMPLINGS:
        raise ValueError(
            f"resampling {resampling!r} cannot make overviews; use one of "
            f"{', '.join(_OVERVIEW_RESAMPLINGS)}"
        )
    raw = os.fspath(path)
    if "://" in raw and not raw.startswith("file://"):
        raise ValueError(
            f"write_geotiff writes local files only, not {raw!r}: write to a local or "
            "shared path, then copy it (e.g. fsspec.filesystem('s3').put(...))"
        )
    raw = os.path.abspath(raw.removeprefix("file://"))  # workers may run elsewhere
    if obj.rio.crs is None:
        raise MissingCRSError(
            "the data has no CRS; set one with obj.rio.write_crs('EPSG:...') before writing"
        )
    da = _as_bands(obj, per, nodata)
    if np.dtype(da.dtype).name not in _GDAL_DTYPES:
        raise TypeError(f"GeoTIFF cannot hold {da.dtype}; cast with .astype('float32') first")
    if da.rio.transform(recalc=True).e > 0:  # south-up: flip to the usual north-up
        da = da.isel({da.rio.y_dim: slice(None, None, -1)})
    nodata = _resolve_nodata(da, nodata)
    dtype = np.dtype(da.dtype)
    profile = _block_profile(
        dtype, da.shape[-3], compress=compress, predictor=predictor, blocksize=blocksize
    )
    write_params = {
        "path": raw,
        "cog": cog,
        "compress": compress,
        "predictor": predictor,
        "overviews": overviews,
        "blocksize": blocksize,
        "nodata": None if nodata is None else str(nodata),
        "per": per,
        "resampling": resampling,
    }
    prov = _provenance("write_geotiff", {**(parameters or {}), "write": write_params}, inputs)
    tags = {k: v if isinstance(v, str) else json.dumps(v) for k, v in prov.items()}

    if per is None:
        jobs = [(raw, da)]
    else:
        jobs = []
        for step in range(da.sizes[per]):
            label = _step_label(da[per].values[step])
            if "{}" in raw:
                target = raw.replace("{}", label)
            else:
                root, ext = os.path.splitext(raw)
                target = f"{root}_{label}{ext or '.tif'}"
            jobs.append((target, da.isel({per: step})))
        names = [t for t, _ in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"per={per!r} gives duplicate file names; make the steps unique")
    existing = [t for t, _ in jobs if os.path.lexists(t)]
    if existing and mode != "w":
        raise OutputExistsError(_exists_message(", ".join(existing)))
    for target in existing:
        _check_replaceable_tiff(target)
    created: list[str] = []
    for target, _ in jobs:
        folder = os.path.dirname(os.path.abspath(target))
        created = missing_folders(folder) + created  # deepest first
        os.makedirs(folder, exist_ok=True)

    held: list[str] = []
    graphs = []
    try:
        for target, step_da in jobs:
            held.append(_hold(target))
            graphs.append(
                _geotiff_graph(
                    step_da,
                    target,
                    held[-1],
                    mode=mode,
                    cog=cog,
                    profile=profile,
                    overviews=overviews,
                    nodata=nodata,
                    resampling=resampling,
                    tags=tags,
                )
            )
    except BaseException:  # an interrupt, say: no temporary is left behind
        for tmpdir in held:
            _discard_local(tmpdir)
        remove_empty(created)
        raise
    finals = [dask.delayed(commit_one, pure=False)(prepared) for prepared, _ in graphs]
    result = finals[0] if per is None else dask.delayed(list, pure=False)(finals)
    if not compute:
        tmpdirs = [tmpdir for _, tmpdir in graphs]
        return pending(
            result,
            LocalFileSystem(),
            tmpdirs,
            [prepared for prepared, _ in graphs],
            listed=per is not None,
            targets=[target for target, _ in jobs],
            folders=created,
        )
    try:
        return _compute(result, obj)
    except BaseException as exc:
        for _, tmpdir in graphs:
            _discard_local(tmpdir)
        remove_empty(created)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise _disk_full(exc, raw) from exc
        raise
    finally:
        for _, tmpdir in graphs:  # the commit may have run in another process
            _release(tmpdir)
