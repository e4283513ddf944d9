"""Writers: Zarr and GeoTIFF/COG straight from the lazy graph, safe under every scheduler.

Both writers share three rules:

- **Refuse to overwrite.** An existing output is an :class:`~lazyraster.errors.OutputExistsError`
  unless ``mode="w"`` is given (``--overwrite`` on the command line). Even then only
  what lazyraster writes is replaced: a Zarr store (a folder with ``zarr.json``,
  ``.zgroup`` or ``.zarray``, or an empty folder) or a TIFF file; anything else (a
  folder of other files, a link) is refused, naming the path.
- **Atomic on local file systems** (one mechanism, :mod:`lazyraster.io._atomic`). The
  output is written under a hidden sibling ``.<name>.tmp-<random hex>`` that the writing
  process holds locked (``fcntl.flock`` on ``.<name>.tmp-<hex>.lock``), and committed
  once complete under the output's lock ``.<name>.lock``: a rename, or an atomic
  exchange with the previous output, which is then removed. A crash, a killed job or an
  exception in a task leaves either the previous output or nothing under the final
  name. Concurrent writers of one output, in any processes, commit one after the other
  (with ``mode="w"`` the last one's output stays; with ``"w-"`` the later ones are
  refused); each commit removes the temporaries that no live writer holds (left by a
  killed writer, or by a task still running when a write failed), never a live one's.
  A full disk raises an ``OSError`` (``ENOSPC``) naming the output, after removing the
  temporary.
- **Lazy and scheduler-agnostic.** Tasks receive paths and URLs, never open file handles,
  so the same graph runs on threads, processes, a ``LocalCluster`` or SLURM workers
  (which must see the output's file system). ``compute=False`` returns a
  :class:`dask.delayed.Delayed` whose ``compute()`` writes the data *and* moves the
  output into place. Under dask's ``processes`` scheduler, data that are in memory
  already (persisted: that scheduler brings results back to the client) are written
  from this process on threads, not copied to worker processes chunk by chunk.

Remote fsspec stores (``s3://``, ``gs://``, ``memory://``, ...) have no atomic rename of
a prefix. There :func:`write_zarr` writes to the temporary prefix, then copies the chunks
to the final prefix first and the Zarr metadata documents last (the root ``zarr.json`` /
``.zgroup`` at the very end), so a reader never sees a store that opens until every
chunk is there; the temporary prefix is deleted last, so nothing is lost if the copy is
interrupted. With ``mode="w"`` the old output is deleted (metadata first) before the
copy starts. Remote stores have no lock: two writers of one remote store at the same
time are not serialised. Append and region writes go into an existing store in place:
they are not atomic, but rewriting a region is idempotent, which is what resuming needs.

GeoTIFFs are not written through ``rioxarray``'s ``to_raster``, which serialises dask
writes behind one lock and, in COG mode, can build overviews before the data are in
place (all-zero overviews). Each dask task compresses its own block into tiles, and
the overview levels whose tiles fall inside the block; each coarser level is made by
tasks that combine 2 x 2 of the tasks before; one final task assembles the Cloud
Optimized GeoTIFF by copying the compressed tiles behind GDAL's header (see
:mod:`lazyraster.io.cog._tiff` and :mod:`lazyraster.io.cog._overviews`). The
compression, the bulk of the work, so runs in parallel on every worker, no task holds
much more than a chunk, and the final task only copies bytes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import re
import secrets
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import dask
import dask.array as dsa
import dask.base
import dask.core
import fsspec
import numpy as np
import rasterio
import rasterio.shutil
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from affine import Affine
from dask.delayed import Delayed
from dask.highlevelgraph import MaterializedLayer
from fsspec.implementations.local import LocalFileSystem

from lazyraster.config import package_version
from lazyraster.errors import MissingCRSError, OutputExistsError
from lazyraster.io import _atomic
from lazyraster.io.cog import _overviews as _overview
from lazyraster.io.cog import _tiff

__all__ = ["commit_together", "discard_temporaries", "write_geotiff", "write_zarr"]

WriteMode = Literal["w-", "w"]

_ZARR_METADATA = {"zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata"}
_ZARR_ROOT_METADATA = ("zarr.json", ".zgroup", ".zarray")
_ZARR_METADATA_MAX = 64 << 20  # bytes of a metadata document read to recognise a store
_ZARR_CHUNK_NAME = re.compile(r"c|\d+(\.\d+)*")
_TIFF_MAGIC = {b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"}
# temporaries whose lock this process holds, by path (see lazyraster.io._atomic)
_HELD: dict[str, _atomic.Temporary] = {}
# the writes returned by compute=False, by their key: the file system, the temporaries,
# the tasks that commit, and whether the write computes to their list
_PENDING: dict[Hashable, tuple[fsspec.AbstractFileSystem, list[str], list[Delayed], bool]] = {}
_DROP_ENCODING = {"chunks", "preferred_chunks", "shards", "compressor", "compressors", "filters"}
_DROP_ENCODING |= {"serializer", "fill_value", "write_empty_chunks", "coordinates"}


# --------------------------------------------------------------------------------------
# shared helpers


def _check_mode(mode: str) -> None:
    if mode not in ("w-", "w"):
        raise ValueError(
            f"mode must be 'w-' (refuse to overwrite, the default) or 'w' (overwrite), "
            f"not {mode!r}; to add to an existing Zarr store use append_dim= or region="
        )


def _exists_message(target: str) -> str:
    return (
        f"{target} already exists. Pass mode='w' (or --overwrite on the command line) to "
        "replace it; the old output is kept until the new one is complete."
    )


def _provenance(
    function: str,
    parameters: Mapping[str, Any],
    inputs: Sequence[str] | str | None,
) -> dict[str, Any]:
    """Attributes recording who wrote an output, when, from what and how."""
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    prov: dict[str, Any] = {
        "lazyraster_version": package_version(),
        "lazyraster_function": function,
        "lazyraster_created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lazyraster_parameters": json.dumps(dict(parameters), sort_keys=True, default=str),
    }
    if inputs is not None:
        prov["lazyraster_inputs"] = [os.fspath(i) for i in inputs]
    return prov


def _with_transform(obj: xr.Dataset) -> xr.Dataset:
    """Record ``GeoTransform`` on ``spatial_ref`` when the object has an x/y grid and a CRS."""
    try:
        if obj.rio.crs is None:
            return obj
        transform = obj.rio.transform(recalc=True)
    except Exception:  # no spatial dims, or coordinates not regular: write as they are
        return obj
    return obj.rio.write_transform(transform)


def _in_memory(obj: xr.Dataset | xr.DataArray) -> bool:
    """True if every chunk of ``obj`` is computed already (persisted, or numpy-backed)."""
    variables = obj.variables if isinstance(obj, xr.Dataset) else {None: obj.variable, **obj.coords}
    for var in variables.values():
        if not isinstance(var.data, dsa.Array):
            continue
        layers = var.data.__dask_graph__().layers.values()
        if not all(isinstance(layer, MaterializedLayer) for layer in layers):
            return False
        if any(dask.core.istask(value) for layer in layers for value in layer.values()):
            return False
    return True


def _compute(result: Delayed, data: xr.Dataset | xr.DataArray) -> Any:
    """Compute a writer's graph; data in memory here are written from here, on threads.

    Under dask's ``processes`` scheduler every task's inputs are pickled to a worker
    process. Data that are in this process's memory already (persisted there: that
    scheduler brings results back) would so be copied chunk by chunk to other
    processes only to be compressed and written, which is GIL-free work that threads
    here do as well. On a distributed cluster persisted chunks live on the workers,
    and the writing tasks run there, next to them.
    """
    import dask.multiprocessing

    get = dask.base.get_scheduler()
    on_processes = dask.multiprocessing.get in (get, getattr(get, "__wrapped__", None))
    if on_processes and _in_memory(data):
        return result.compute(scheduler="threads")
    return result.compute()


# --------------------------------------------------------------------------------------
# Zarr


def _clean_for_zarr(ds: xr.Dataset) -> xr.Dataset:
    """Shallow copy without storage-specific encodings; CRS coordinate listed explicitly.

    Fixed-width string coordinates become variable-length strings.

    The ``coordinates`` encoding of every data variable names its non-index
    coordinates, ``spatial_ref`` included: xarray leaves a grid-mapping variable out of
    that attribute, and ``xr.open_zarr`` would then read it back as a data variable and
    ``ds.rio.crs`` would be ``None``.
    """
    ds = ds.copy(deep=False)
    # Fixed-width unicode (numpy "U", e.g. item ids) has no Zarr v3 specification;
    # variable-length strings do.
    fixed_strings = [name for name, var in ds.variables.items() if var.dtype.kind == "U"]
    ds = ds.assign_coords(
        {name: ds[name].astype(object) for name in fixed_strings if name in ds.coords}
    )
    for var in ds.variables.values():
        var.encoding = {k: v for k, v in var.encoding.items() if k not in _DROP_ENCODING}
    for name, var in ds.data_vars.items():
        coords = [
            str(c)
            for c in ds.coords
            if c not in ds.indexes and set(ds[c].dims) <= set(var.dims) and c != name
        ]
        if coords:
            var.encoding["coordinates"] = " ".join(sorted(coords))
    return ds


def _regular_chunks(chunks: tuple[int, ...]) -> int | None:
    """Return the common chunk size if ``chunks`` is regular in the Zarr sense, else None."""
    if len(chunks) <= 1:
        return chunks[0] if chunks else None
    first = chunks[0]
    if all(c == first for c in chunks[:-1]) and chunks[-1] <= first:
        return first
    return None


def _align_chunks(ds: xr.Dataset, chunks: Mapping[Hashable, int] | None) -> xr.Dataset:
    """Make dask chunks Zarr-compatible and set each variable's Zarr chunks to match.

    ``chunks`` rechunks the named dimensions; then regular dask chunks are kept as they
    are and irregular ones are rechunked to a regular grid of their largest chunk.
    """
    if chunks is not None:
        unknown = set(chunks) - set(ds.dims)
        if unknown:
            raise ValueError(
                f"chunks names dimensions {sorted(map(str, unknown))} that the data does not "
                f"have (it has {sorted(map(str, ds.dims))})"
            )
        ds = ds.chunk(dict(chunks))
    target: dict[Hashable, int] = {}
    for var in ds.variables.values():
        for dim, sizes in zip(var.dims, var.chunks or (), strict=False):
            if _regular_chunks(tuple(sizes)) is None:
                target[dim] = max(target.get(dim, 0), *sizes)
    if target:
        ds = ds.chunk(target)
    for var in ds.variables.values():
        if var.chunks is not None:
            var.encoding["chunks"] = tuple(c[0] for c in var.chunks)
    return ds


def _replace_refusal(target: str, what: str) -> OutputExistsError:
    return OutputExistsError(
        f"{target} is not {what} written by lazyraster, so mode='w' (--overwrite) will not "
        "replace it; move it away or choose another output path."
    )


def _is_zarr_node(folder: str) -> bool:
    """True if ``folder`` holds a root metadata document that parses as Zarr metadata."""
    for name in _ZARR_ROOT_METADATA:
        path = os.path.join(folder, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as f:
                meta = json.loads(f.read(_ZARR_METADATA_MAX))
        except (OSError, ValueError):
            return False
        return isinstance(meta, dict) and meta.get("zarr_format") in (2, 3)
    return False


def _foreign_entry(target: str) -> str | None:
    """The first entry under the local folder ``target`` that Zarr did not write, or None.

    Every folder must be a Zarr node (valid metadata) or a chunk folder (``c`` or digits)
    inside one; every file Zarr metadata or a chunk (digits and dots, or ``c``); no links.
    Chunk folders are not descended into, so the check costs one listing per node.
    """
    pending = [target]
    while pending:
        node = pending.pop()
        if not _is_zarr_node(node):
            return node
        with os.scandir(node) as entries:
            for entry in entries:
                if entry.is_symlink():
                    return entry.path
                if entry.is_dir():
                    if not _ZARR_CHUNK_NAME.fullmatch(entry.name):
                        pending.append(entry.path)
                elif entry.name not in _ZARR_METADATA and not _ZARR_CHUNK_NAME.fullmatch(
                    entry.name
                ):
                    return entry.path
    return None


def _check_replaceable_zarr(fs: fsspec.AbstractFileSystem, target: str, shown: str) -> None:
    """Refuse to replace ``target`` unless it is a Zarr store (or an empty folder)."""
    if isinstance(fs, LocalFileSystem):
        if os.path.islink(target) or not os.path.isdir(target):
            raise _replace_refusal(shown, "a Zarr store (a folder, not a link)")
        if not os.listdir(target):
            return
        foreign = _foreign_entry(target)
        if foreign is not None:
            raise _replace_refusal(
                shown, f"a Zarr store ({foreign} is neither Zarr metadata nor a chunk)"
            )
        return
    if not any(fs.exists(f"{target}/{name}") for name in _ZARR_ROOT_METADATA):
        raise _replace_refusal(
            shown, f"a Zarr store (it has no {' or '.join(_ZARR_ROOT_METADATA)})"
        )


def _check_replaceable_tiff(target: str) -> None:
    """Refuse to replace ``target`` unless it is a TIFF file."""
    try:
        with open(target, "rb") as f:
            magic = f.read(4)
    except IsADirectoryError:
        magic = b""
    if magic not in _TIFF_MAGIC:
        raise _replace_refusal(target, "a TIFF file")


def _release(tmp: str) -> None:
    """Release the lock of the temporary ``tmp`` if this process holds it."""
    held = _HELD.pop(tmp, None)
    if held is not None:
        held.close()


def _hold(target: str) -> str:
    """Name and lock a new local temporary for ``target``; see :mod:`lazyraster.io._atomic`.

    Dead temporaries of ``target`` are removed first, so that the space they hold (after a
    full disk, say) is free for this write.
    """
    _atomic.sweep(target)
    held = _atomic.Temporary.beside(target)
    _HELD[held.path] = held
    return held.path


def _disk_full(exc: OSError, target: str) -> OSError:
    return OSError(
        exc.errno,
        f"no space left on the device while writing {target}; free space or write "
        "elsewhere. Any previous output there is unchanged and nothing was put in its place",
    )


def _move_zarr(fs: fsspec.AbstractFileSystem, tmp: str, target: str, mode: str) -> None:
    """Move the complete store ``tmp`` to ``target``: a commit locally, metadata-last copy else."""
    if isinstance(fs, LocalFileSystem):
        with _atomic.output_lock(target):
            if os.path.lexists(target):
                if mode != "w":
                    raise OutputExistsError(_exists_message(target))
                _check_replaceable_zarr(fs, target, target)
            _atomic.commit(tmp, target)
            _atomic.sweep(target)
        return
    if fs.exists(target):
        if mode != "w":
            fs.rm(tmp, recursive=True)
            raise OutputExistsError(_exists_message(target))
        _check_replaceable_zarr(fs, target, fs.unstrip_protocol(target))
        old_meta = [p for p in fs.find(target) if p.rsplit("/", 1)[-1] in _ZARR_METADATA]
        for p in sorted(old_meta, key=len):  # root metadata first: the old store stops opening
            fs.rm(p)
        fs.rm(target, recursive=True)
    files = sorted(fs.find(tmp))
    is_meta = [p.rsplit("/", 1)[-1] in _ZARR_METADATA for p in files]
    chunks = [p for p, m in zip(files, is_meta, strict=True) if not m]
    metadata = sorted((p for p, m in zip(files, is_meta, strict=True) if m), key=len, reverse=True)
    for src in [*chunks, *metadata]:  # deepest metadata last but one, root metadata last
        fs.copy(src, target + src[len(tmp) :])
    fs.rm(tmp, recursive=True)


def _finish_zarr(
    _written: Any,
    url: str,
    storage_options: Mapping[str, Any],
    tmp: str,
    target: str,
    mode: str,
    consolidate_root: str | None = None,
) -> str:
    """Move the written store into place (and re-consolidate the root after a group write)."""
    fs, _ = fsspec.core.url_to_fs(url, **storage_options)
    local = isinstance(fs, LocalFileSystem)
    try:
        _move_zarr(fs, tmp, target, mode)
    except BaseException:
        if not local and fs.exists(tmp):
            fs.rm(tmp, recursive=True)
        raise
    finally:
        if local:  # after a commit, the temporary holds the previous output
            _discard_local(tmp)
    if consolidate_root is not None:
        import zarr
        import zarr.storage

        if local:
            store: Any = zarr.storage.LocalStore(consolidate_root)
        else:
            store = zarr.storage.FsspecStore.from_url(
                fs.unstrip_protocol(consolidate_root), storage_options=dict(storage_options)
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(store)
    return target if local else fs.unstrip_protocol(target)


def zarr_group(group: str | None) -> str | None:
    """``group`` without its outer slashes; ``ValueError`` unless every part is a name.

    ``.``, ``..`` and empty parts would put the group somewhere else than inside the
    store (``x/..`` is the store itself, which ``mode="w"`` would then replace whole).

    Examples
    --------
    >>> zarr_group("/2021/spring/")
    '2021/spring'
    >>> zarr_group("x/..")
    Traceback (most recent call last):
    ...
    ValueError: Zarr group 'x/..' must be names separated by '/' (no '.', '..' or empty part)
    """
    if not group:
        return None
    stripped = group.strip("/")
    if any(part in ("", ".", "..") for part in stripped.split("/")) or "\\" in stripped:
        raise ValueError(
            f"Zarr group {group!r} must be names separated by '/' (no '.', '..' or empty part)"
        )
    return stripped


def _ensure_parent_groups(
    url: str, group: str, zarr_format: int, storage_options: Mapping[str, Any]
) -> None:
    """Create the root group and intermediate groups of ``group`` if they are missing."""
    import zarr

    parts = group.split("/")[:-1]
    for i in range(len(parts) + 1):
        path = "/".join(parts[:i])
        zarr.open_group(
            url,
            path=path or None,
            mode="a",
            zarr_format=zarr_format,  # type: ignore[arg-type]
            storage_options=dict(storage_options) or None,
        )


def write_zarr(
    obj: xr.Dataset | xr.DataArray,
    store: str | os.PathLike[str],
    *,
    group: str | None = None,
    mode: WriteMode = "w-",
    chunks: Mapping[Hashable, int] | None = None,
    compute: bool = True,
    zarr_format: Literal[2, 3] = 3,
    append_dim: Hashable | None = None,
    region: Mapping[Hashable, slice] | Literal["auto"] | None = None,
    metadata_only: bool = False,
    consolidated: bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
    inputs: Sequence[str] | str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> str | Delayed:
    """Write a Dataset or DataArray to a Zarr store, atomically, with its CRS.

    The data are written chunk by chunk from the dask graph (on whatever scheduler is
    active) under a temporary sibling name, then moved into place: see the module
    docstring for the exact guarantees on local and remote stores.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        Data to write, dask-backed or in memory. A DataArray becomes a one-variable
        Dataset named after it (``"data"`` if unnamed).
    store : str or path-like
        Local path or any fsspec URL (``s3://bucket/out.zarr``, ``memory://x.zarr``).
    group : str, optional
        Group inside the store, e.g. ``"2021"`` for one group per year; intermediate
        groups and the root group are created. Only that group is written, moved into
        place and refused if it exists; other groups are left alone, and the root's
        consolidated metadata is refreshed so that ``xr.open_zarr(store, group=...)``
        finds every group. When several jobs write groups of one store at the same
        time, run ``zarr.consolidate_metadata(store)`` once they are all done.
    mode : {"w-", "w"}
        ``"w-"`` refuses with :class:`~lazyraster.errors.OutputExistsError` if the
        target exists; ``"w"`` replaces it once the new output is complete, if it is
        a Zarr store (or an empty folder), and refuses anything else.
    chunks : mapping of dim to int, optional
        Zarr chunk sizes of the named dimensions; the data are rechunked to match.
        Other dimensions keep their dask chunks (irregular ones are evened out to their
        largest size), so Zarr chunks and dask chunks always line up.
    compute : bool
        If ``False``, return a :class:`dask.delayed.Delayed` whose ``compute()`` writes
        the data and moves the store into place (the checks above are made now); pass
        it to :func:`discard_temporaries` once computed.
    zarr_format : {3, 2}
        Zarr format. Use 2 for readers that only speak Zarr v2 (e.g. GDAL 3.10).
    append_dim : hashable, optional
        Append along this dimension to an existing store (created if absent). Appends
        write in place and are not atomic.
    region : mapping of dim to slice, or "auto", optional
        Write into that region of an existing store, in place: the way a long job fills
        a store made with ``metadata_only=True`` and resumes after a crash (rewriting a
        region is idempotent). Variables without a region dimension are skipped.
    metadata_only : bool
        Write the metadata and the in-memory coordinates, not the data: a template
        for region writes. Placed atomically like a full write.
    consolidated : bool, optional
        Passed to :meth:`xarray.Dataset.to_zarr` (default: consolidate).
    storage_options : mapping, optional
        fsspec options for remote stores.
    inputs : str or sequence of str, optional
        Input files or URLs, recorded in the ``lazyraster_inputs`` attribute.
    parameters : mapping, optional
        Parameters of the computation, recorded (as JSON) in ``lazyraster_parameters``
        together with the write parameters.

    Returns
    -------
    str or dask.delayed.Delayed
        The final location, or a Delayed that computes to it.

    Raises
    ------
    OutputExistsError
        If the target exists and ``mode`` is not ``"w"``, or is not a Zarr store.
    OSError
        ``ENOSPC`` when the disk is full (the previous output is unchanged).
    FileNotFoundError
        For a region write into a store that does not exist.

    Examples
    --------
    >>> import xarray as xr
    >>> from lazyraster.testing import synthetic_raster
    >>> da = synthetic_raster((20, 30), chunks={"y": 10, "x": 15})
    >>> out = write_zarr(da, "memory://doc/ndvi.zarr")
    >>> back = xr.open_zarr(out)
    >>> str(back.rio.crs), back.rio.transform()[2]
    ('EPSG:32631', 600000.0)
    >>> write_zarr(da, "memory://doc/ndvi.zarr")
    Traceback (most recent call last):
    ...
    lazyraster.errors.OutputExistsError: memory://doc/ndvi.zarr already exists. ...
    """
    _check_mode(mode)
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, not {zarr_format!r}")
    if append_dim is not None and region is not None:
        raise ValueError("pass append_dim= or region=, not both")
    storage_options = dict(storage_options or {})
    ds = obj.to_dataset(name=obj.name or "data") if isinstance(obj, xr.DataArray) else obj
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"write_zarr needs an xarray Dataset or DataArray, not {type(obj)!r}")

    url = os.fspath(store)
    fs, root = fsspec.core.url_to_fs(url, **storage_options)
    root = root.rstrip("/")
    group = zarr_group(group)
    target = f"{root}/{group}" if group else root
    write_params = {
        "store": url,
        "group": group,
        "mode": mode,
        "chunks": dict(chunks) if chunks else None,
        "zarr_format": zarr_format,
        "append_dim": append_dim,
        "region": region if region is None or region == "auto" else dict(region),
    }
    ds = _with_transform(ds)
    ds = ds.assign_attrs(
        _provenance("write_zarr", {**(parameters or {}), "write": write_params}, inputs)
    )

    with warnings.catch_warnings():
        # zarr-python warns that consolidated metadata is not in the v3 spec; readers
        # that do not know it fall back to the normal metadata, so nothing is lost.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        if region is not None or (append_dim is not None and fs.exists(target)):
            return _write_zarr_in_place(
                ds, fs, target, append_dim, region, compute, consolidated, storage_options
            )

        shown = url if group is None else f"{url}:{group}"
        if fs.exists(target):
            if mode != "w":
                raise OutputExistsError(_exists_message(shown))
            _check_replaceable_zarr(fs, target, shown)
        parent = target.rsplit("/", 1)[0] if "/" in target else ""
        name = target.rsplit("/", 1)[-1]
        local = isinstance(fs, LocalFileSystem)
        if group:
            root_url = root if local else fs.unstrip_protocol(root)
            _ensure_parent_groups(root_url, group, zarr_format, storage_options)
        elif parent:
            fs.makedirs(parent, exist_ok=True)
        tmp = _hold(target) if local else f"{parent}/.{name}.tmp-{secrets.token_hex(16)}"

        # xarray reads a group through the root's consolidated metadata: keep it current
        consolidate_root = root if group and consolidated is not False else None
        source = ds
        ds = _align_chunks(_clean_for_zarr(ds), chunks)
        tmp_url = tmp if local else fs.unstrip_protocol(tmp)
        to_zarr_options = {
            "mode": "w",
            "compute": False,
            "consolidated": consolidated,
            "zarr_format": zarr_format,
            "storage_options": storage_options or None,
        }
        finish_args = (url, storage_options, tmp, target, mode, consolidate_root)
        try:
            if metadata_only:
                ds.to_zarr(tmp_url, **to_zarr_options)
                return _finish_zarr(None, *finish_args)
            writes = ds.to_zarr(tmp_url, **to_zarr_options)
            finish = dask.delayed(_finish_zarr, pure=False)(writes, *finish_args)
            if not compute:  # the temporary stays locked by this process until it commits
                _PENDING[finish.key] = (fs, [tmp], [finish], False)
                return finish
            return _compute(finish, source)
        except BaseException as exc:
            _discard(fs, tmp)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise _disk_full(exc, shown) from exc
            raise
        finally:
            if compute:  # the commit may have run in another process: release our lock
                _release(tmp)


def discard_temporaries(*writes: Delayed) -> None:
    """Remove what computing writes made with ``compute=False`` left, and release their locks.

    Call it once the writes are computed, whether the compute succeeded or not (a
    ``finally`` clause): after a failure (an exception in a task, a lost worker, an
    interrupt) it removes their temporaries, so neither an output nor a temporary is
    left and a previous output being replaced is unchanged; after a success there is
    nothing left to remove, and it releases the locks this process held on temporaries
    that a worker process committed. Writes already passed, and writes that have no
    temporary (appends, region writes), are ignored. Never call it while the writes
    are being computed.

    Parameters
    ----------
    *writes : dask.delayed.Delayed
        What :func:`write_zarr` and :func:`write_geotiff` returned with ``compute=False``.

    Examples
    --------
    >>> import dask, os, tempfile
    >>> from lazyraster.testing import synthetic_raster
    >>> da = synthetic_raster((20, 30), chunks={"y": 10, "x": 15})
    >>> folder = tempfile.mkdtemp()
    >>> writes = [write_zarr(da, os.path.join(folder, "a.zarr"), compute=False),
    ...           write_geotiff(da, os.path.join(folder, "a.tif"), compute=False)]
    >>> try:
    ...     paths = dask.compute(*writes)
    ... finally:
    ...     discard_temporaries(*writes)
    >>> sorted(os.listdir(folder))
    ['a.tif', 'a.zarr']
    """
    for write in writes:
        fs, temporaries, _, _ = _PENDING.pop(write.key, (None, [], [], False))
        for tmp in temporaries:
            _discard(fs, tmp)


def commit_together(*writes: Delayed) -> list[Delayed]:
    """The writes, each of their commits waiting for the data of all of them.

    Computed together (``dask.compute(*commit_together(a, b))``), writes made with
    ``compute=False`` then move their outputs into place (every file of a
    ``per=`` GeoTIFF included) only once every task writing data has succeeded: a
    failure anywhere leaves no new output. Pass the writes given, not the ones
    returned, to :func:`discard_temporaries`.

    Parameters
    ----------
    *writes : dask.delayed.Delayed
        What :func:`write_zarr` and :func:`write_geotiff` returned with ``compute=False``.

    Returns
    -------
    list of dask.delayed.Delayed
        One per write, computing to what it computes to.

    Examples
    --------
    >>> import dask, os, tempfile
    >>> from lazyraster.testing import synthetic_raster
    >>> da = synthetic_raster((20, 30), chunks={"y": 10, "x": 15})
    >>> path = os.path.join(tempfile.mkdtemp(), "b.zarr")
    >>> write = write_zarr(da, path, compute=False)
    >>> try:
    ...     (out,) = dask.compute(*commit_together(write))
    ... finally:
    ...     discard_temporaries(write)
    >>> out == path
    True
    """
    from dask.graph_manipulation import bind

    parts = [_PENDING[w.key][2:] if w.key in _PENDING else ([w], False) for w in writes]
    data = [
        Delayed(below, commit.__dask_graph__())
        for commits, _ in parts
        for commit in commits
        for below in commit.__dask_graph__().dependencies[commit.__dask_layers__()[0]]
    ]
    together = []
    for commits, listed in parts:
        bound = [bind(commit, data, omit=data) for commit in commits]
        together.append(dask.delayed(list, pure=False)(bound) if listed else bound[0])
    return together


def _discard_local(tmp: str) -> None:
    """Remove the local temporary ``tmp`` (if still there) and its lock."""
    _release(tmp)
    _atomic.discard(tmp)


def _discard(fs: fsspec.AbstractFileSystem, tmp: str) -> None:
    """Remove the temporary ``tmp`` (if still there) and release its lock."""
    if isinstance(fs, LocalFileSystem):
        _discard_local(tmp)
    else:
        with contextlib.suppress(Exception):
            if fs.exists(tmp):
                fs.rm(tmp, recursive=True)


def _write_zarr_in_place(
    ds: xr.Dataset,
    fs: fsspec.AbstractFileSystem,
    target: str,
    append_dim: Hashable | None,
    region: Mapping[Hashable, slice] | Literal["auto"] | None,
    compute: bool,
    consolidated: bool | None,
    storage_options: Mapping[str, Any],
) -> str | Delayed:
    """Append or region-write into an existing store (in place, not atomic)."""
    if not fs.exists(target):
        raise FileNotFoundError(
            f"{target} does not exist: a region write fills an existing store. Create it "
            "first with write_zarr(template, store, metadata_only=True)."
        )
    target_url = target if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(target)
    ds = _clean_for_zarr(ds)
    for var in ds.variables.values():
        var.encoding.pop("coordinates", None)
    if region is not None:
        ds = ds.drop_attrs(deep=False)
        region_dims = set(ds.dims) if region == "auto" else set(region)
        keep_index = region == "auto"
        drop = [
            name
            for name, var in ds.variables.items()
            if not (set(var.dims) & region_dims) or (name in ds.indexes and not keep_index)
        ]
        ds = ds.drop_vars(drop)
    writes = ds.to_zarr(
        target_url,
        mode="a" if append_dim is not None else "r+",
        append_dim=append_dim,
        region=region,
        align_chunks=True,
        compute=compute,
        consolidated=consolidated,
        storage_options=dict(storage_options) or None,
    )
    if not compute:
        return dask.delayed(lambda _w, t: t, pure=False)(writes, target_url)
    return target_url


# --------------------------------------------------------------------------------------
# GeoTIFF / COG

_GDAL_DTYPES = frozenset(
    {"uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"}
)
_PREDICTOR_COMPRESSIONS = {"deflate", "lzw", "zstd", "lzma"}
_TABLE_COMPRESSIONS = {"jpeg"}
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
        found = {_nodata_of(v) for v in obj.data_vars.values()} - {None}
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


def _nodata_of(da: xr.DataArray) -> float | None:
    """The nodata value of ``da``: encoded (``_FillValue`` masked on load) or not."""
    return da.rio.encoded_nodata if da.rio.encoded_nodata is not None else da.rio.nodata


def _resolve_nodata(da: xr.DataArray, nodata: float | None) -> float | None:
    if nodata is None:
        nodata = _nodata_of(da)
    if nodata is None and np.issubdtype(da.dtype, np.floating):
        nodata = float("nan")
    if nodata is not None and not np.isnan(nodata) and np.issubdtype(da.dtype, np.integer):
        info = np.iinfo(da.dtype)
        if not info.min <= nodata <= info.max or nodata != int(nodata):
            raise ValueError(f"nodata={nodata} cannot be stored in {da.dtype}; pick another")
    return None if nodata is None else float(nodata)


# a level's tiles in a file: the file, (height, width), tile offsets, tile sizes
_TileLevel = tuple[str, tuple[int, int], np.ndarray, np.ndarray]
# what a task wrote: the tiles of consecutive levels, the first of those levels, and the
# task's origin in full-resolution pixels
_Written = tuple[list[_TileLevel], int, tuple[int, int]]


def _block_profile(
    dtype: np.dtype,
    count: int,
    *,
    compress: str | None,
    predictor: int | None,
    blocksize: int,
) -> dict[str, Any]:
    """Creation options of every file GDAL writes for one GeoTIFF: the format of its tiles."""
    comp = (compress or "none").lower()
    if comp in _TABLE_COMPRESSIONS:
        raise ValueError(
            f"compress={compress!r} shares tables across a file's tiles, which blocks written "
            "in parallel cannot do; use 'deflate', 'zstd', 'lzw' or 'webp' instead"
        )
    if predictor is None:
        if comp in _PREDICTOR_COMPRESSIONS:
            predictor = 3 if np.issubdtype(dtype, np.floating) else 2
        else:
            predictor = 1
    if predictor not in (1, 2, 3):
        raise ValueError(f"predictor must be 1 (none), 2 (integers) or 3 (floats), not {predictor}")
    if predictor == 3 and dtype.kind != "f":
        raise ValueError(f"predictor 3 is for floating-point data, not {dtype}; use 2 or 1")
    return {
        "driver": "GTiff",
        "count": count,
        "dtype": dtype.name,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": comp,
        "predictor": predictor,
        "interleave": "pixel",
    }


def _write_tiles(
    path: str,
    data: np.ndarray,
    profile: Mapping[str, Any],
    georef: Mapping[str, Any],
    nodata: float | None,
) -> _TileLevel:
    """Write ``data`` ``(band, y, x)`` as compressed tiles to ``path``.

    DEFLATE tiles are made here (:func:`lazyraster.io.cog._tiff.encode_tiles`) and simply
    concatenated; other compressions are left to GDAL, in a tiled GeoTIFF. Returns the
    file, the data's shape, and the offsets and sizes of its tiles.
    """
    dtype, predictor = np.dtype(profile["dtype"]), profile["predictor"]
    if profile["compress"] == "deflate" and _tiff.can_encode(dtype, predictor):
        offsets, sizes = [], []
        with open(path, "wb") as f:
            for encoded in _tiff.encode_tiles(data, profile["blockxsize"], predictor):
                offsets.append(f.tell())
                sizes.append(len(encoded))
                f.write(encoded)
        return (path, data.shape[1:], np.array(offsets), np.array(sizes))
    shape = {"width": data.shape[2], "height": data.shape[1]}
    with (
        rasterio.Env(GDAL_CACHEMAX=64),
        rasterio.open(path, "w", nodata=nodata, **shape, **profile, **georef) as dst,
    ):
        dst.write(data)
    (ifd,) = _tiff.read_ifds(path)
    return (path, ifd.shape, *ifd.tiles)


def _level_georef(georef: Mapping[str, Any], origin: tuple[int, int], level: int) -> dict:
    """CRS and transform of the pixels of overview ``level`` from full-resolution ``origin``."""
    y0, x0 = origin
    shift = Affine.translation(x0, y0) * Affine.scale(2**level)
    return {**georef, "transform": georef["transform"] * shift}


def _write_block(
    block: np.ndarray,
    path: str,
    *,
    origin: tuple[int, int],
    profile: Mapping[str, Any],
    georef: Mapping[str, Any],
    nodata: float | None,
    inner: int,
    handoff: bool,
    resampling: str,
) -> tuple[_Written, _overview.Level | None]:
    """Compress one block ``(band, y, x)`` and its first ``inner`` overviews (runs in a task).

    Each level goes to a file of its own (``path``, then ``path`` with ``.ov<k>``).
    Returns what was written and, with ``handoff``, the next level, which
    :func:`_write_group` combines with its neighbours'.
    """
    block = np.asarray(block)
    if nodata is not None and not np.isnan(nodata) and np.issubdtype(block.dtype, np.floating):
        block = np.where(np.isnan(block), block.dtype.type(nodata), block)
    levels = [_write_tiles(path, block, profile, _level_georef(georef, origin, 0), nodata)]
    level: _overview.Level | np.ndarray = block
    for k in range(1, inner + 1):
        level = _overview.halve(level, resampling, nodata)
        where = _level_georef(georef, origin, k)
        levels.append(_write_tiles(f"{path}.ov{k}", level.values, profile, where, nodata))
    handed = _overview.halve(level, resampling, nodata) if handoff else None
    return (levels, 0, origin), handed


def _write_group(
    handed: Sequence[_overview.Level],
    origins: Sequence[tuple[int, int]],
    path: str,
    *,
    level: int,
    profile: Mapping[str, Any],
    georef: Mapping[str, Any],
    nodata: float | None,
    handoff: bool,
    resampling: str,
) -> tuple[_Written, _overview.Level | None]:
    """Mosaic up to 2 x 2 neighbours' handed-over ``level``, write its tiles, hand over the next.

    ``origins`` are the neighbours' origins in full-resolution pixels, the first one the
    group's own; the group's region is whole tiles of ``level``, so its tiles are the
    file's own.
    """
    y0, x0 = origins[0]
    parts = [
        (part, ((y >> level) - (y0 >> level), (x >> level) - (x0 >> level)))
        for part, (y, x) in zip(handed, origins, strict=True)
    ]
    height = max(y + part.values.shape[1] for part, (y, _) in parts)
    width = max(x + part.values.shape[2] for part, (_, x) in parts)
    merged = _overview.mosaic(parts, (parts[0][0].values.shape[0], height, width))
    where = _level_georef(georef, (y0, x0), level)
    tiles = _write_tiles(path, merged.values, profile, where, nodata)
    handed_on = _overview.halve(merged, resampling, nodata) if handoff else None
    return ([tiles], level, (y0, x0)), handed_on


def _level_tiles(
    parts: Sequence[tuple[_TileLevel, tuple[int, int]]], shape: tuple[int, int], tile: int
) -> list[tuple[str, int, int]]:
    """Row-major ``(file, offset, size)`` of one level's tiles, from the files of its parts.

    ``parts`` gives, for each block, its tiles of the level and its origin in the
    level's pixels (on a tile boundary).
    """
    cells: list[tuple[str, int, int]] = []
    grid = np.full((-(-shape[0] // tile), -(-shape[1] // tile)), -1)
    for (path, (height, width), offsets, sizes), (y0, x0) in parts:
        rows, cols = -(-height // tile), -(-width // tile)
        r0, c0 = y0 // tile, x0 // tile
        grid[r0 : r0 + rows, c0 : c0 + cols] = len(cells) + np.arange(rows * cols).reshape(
            rows, cols
        )
        cells += [(path, o, s) for o, s in zip(offsets.tolist(), sizes.tolist(), strict=True)]
    return [cells[i] for i in grid.ravel()]


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


def _finish_geotiff(
    written: Sequence[_Written], *, tmpdir: str, target: str, mode: str, **assembly: Any
) -> str:
    """Assemble the final GeoTIFF and commit it under the output's lock."""
    try:
        out = _assemble_geotiff(written, tmpdir=tmpdir, **assembly)
        with _atomic.output_lock(target):
            if mode == "w":
                if os.path.lexists(target):
                    _check_replaceable_tiff(target)
                _atomic.commit(out, target)
            else:
                try:
                    os.link(out, target)  # fails if the target appeared meanwhile: never clobber
                except FileExistsError:
                    raise OutputExistsError(_exists_message(target)) from None
            _atomic.sweep(target)
    finally:
        _discard_local(tmpdir)
    return target


def _overview_factors(height: int, width: int, blocksize: int, overviews: bool | int) -> list[int]:
    """Overview factors 2, 4, ... down to one tile (``True``), none, or that many levels."""
    if overviews is False:
        return []
    factors = []
    f = 2
    while max(height, width) / (f // 2) > blocksize:
        factors.append(f)
        f *= 2
    if overviews is not True:
        factors = factors[: int(overviews)]
    return factors


def _tile_aligned(arr: dsa.Array, tile: int) -> dsa.Array:
    """``arr`` ``(band, y, x)`` in one band chunk, and regular y and x chunks of whole tiles.

    Regular chunks of whole tiles (the last one may be smaller) are kept; others become
    the nearest power of two of tiles.
    """
    chunks: list[Any] = [-1]
    for sizes in arr.chunks[1:]:
        first = sizes[0]
        regular = all(s == first for s in sizes[:-1]) and sizes[-1] <= first
        if len(sizes) == 1 or (regular and first % tile == 0):
            chunks.append(sizes)
        else:
            chunks.append(tile * 2 ** max(0, round(float(np.log2(max(sizes) / tile)))))
    return arr.rechunk(tuple(chunks))


def _inner_levels(chunks: Sequence[tuple[int, ...]], tile: int, levels: int) -> int:
    """How many overview levels blocks can hold: each block starts on a tile of them."""
    inner = 0
    while inner < levels and all(
        s % (tile * 2 ** (inner + 1)) == 0 for sizes in chunks for s in sizes[:-1]
    ):
        inner += 1
    return inner


def _geotiff_graph(
    da: xr.DataArray,
    target: str,
    *,
    mode: str,
    cog: bool,
    profile: Mapping[str, Any],
    overviews: bool | int,
    nodata: float | None,
    resampling: str,
    tags: Mapping[str, str],
) -> tuple[Delayed, str]:
    """Delayed that writes the (band, y, x) ``da`` to ``target`` through per-task files.

    Block tasks write the full resolution and the overview levels inside their block;
    then each coarser level is written by tasks that each combine 2 x 2 of the tasks
    before, so that every task holds about one chunk, and the final task only copies.
    Also returns the temporary directory, created here, where the files go.
    """
    tmpdir = _hold(target)
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
    finish = dask.delayed(_finish_geotiff, pure=False)(
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
    return finish, tmpdir


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
        :func:`discard_temporaries` once computed.
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
    for target, _ in jobs:
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)

    graphs = [
        _geotiff_graph(
            step_da,
            target,
            mode=mode,
            cog=cog,
            profile=profile,
            overviews=overviews,
            nodata=nodata,
            resampling=resampling,
            tags=tags,
        )
        for target, step_da in jobs
    ]
    finals = [g for g, _ in graphs]
    result = finals[0] if per is None else dask.delayed(list, pure=False)(finals)
    if not compute:
        tmpdirs = [tmpdir for _, tmpdir in graphs]
        _PENDING[result.key] = (LocalFileSystem(), tmpdirs, finals, per is not None)
        return result
    try:
        return _compute(result, obj)
    except BaseException as exc:
        for _, tmpdir in graphs:
            _discard_local(tmpdir)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise _disk_full(exc, raw) from exc
        raise
    finally:
        for _, tmpdir in graphs:  # the commit may have run in another process
            _release(tmpdir)
