"""Zarr stores: :func:`write_zarr`, and the group names it accepts (:func:`zarr_group`).

On a local file system a store (or one group of a store) is written under a hidden
temporary that this process holds locked, and committed under the output's lock once
complete, by the rules of :mod:`lazyraster.io._output`: a crash, a killed job or a
failing task leaves the previous output or nothing under the final name.

Remote fsspec stores (``s3://``, ``gs://``, ``memory://``, ...) have no atomic rename of
a prefix. There :func:`write_zarr` writes to the temporary prefix, then copies the chunks
to the final prefix first and the Zarr metadata documents last (the root ``zarr.json`` /
``.zgroup`` at the very end), so a reader never sees a store that opens until every
chunk is there; the temporary prefix is deleted last, so nothing is lost if the copy is
interrupted. With ``mode="w"`` the old output is deleted (metadata first) before the
copy starts. Remote stores have no lock: two writers of one remote store at the same
time are not serialised. Append and region writes go into an existing store in place:
they are not atomic, but rewriting a region is idempotent, which is what resuming needs.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import secrets
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import dask
import fsspec
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from dask.delayed import Delayed
from fsspec.implementations.local import LocalFileSystem

from lazyraster.errors import OutputExistsError
from lazyraster.io import _atomic
from lazyraster.io._atomic import _discard_local, _hold, _release, missing_folders, remove_empty
from lazyraster.io._journal import Swap
from lazyraster.io._output import (
    _ZARR_METADATA,
    WriteMode,
    _check_mode,
    _check_replaceable_zarr,
    _compute,
    _disk_full,
    _exists_message,
    _provenance,
)
from lazyraster.io._together import Commit, _discard, commit_one, pending

__all__ = ["write_zarr", "zarr_group"]

_DROP_ENCODING = {"chunks", "preferred_chunks", "shards", "compressor", "compressors", "filters"}
_DROP_ENCODING |= {"serializer", "fill_value", "write_empty_chunks", "coordinates"}


def _with_transform(obj: xr.Dataset) -> xr.Dataset:
    """Record ``GeoTransform`` on ``spatial_ref`` when the object has an x/y grid and a CRS."""
    try:
        if obj.rio.crs is None:
            return obj
        transform = obj.rio.transform(recalc=True)
    except Exception:  # no spatial dims, or coordinates not regular: write as they are
        return obj
    return obj.rio.write_transform(transform)


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


@dataclasses.dataclass
class _ZarrCommit(Commit):
    """Put the complete store ``tmp`` at ``target``: a commit locally, metadata-last copy else.

    ``parents`` (root URL, group, Zarr format) of a group write: its root and parent
    groups are made by :meth:`ready`, once every output's data are written; the root's
    consolidated metadata are re-made by :meth:`close` after the commit.
    """

    url: str
    storage_options: Mapping[str, Any]
    tmp: str
    target: str
    mode: str
    consolidate_root: str | None = None
    parents: tuple[str, str, int] | None = None

    def __post_init__(self) -> None:
        self.local = isinstance(self._fs(), LocalFileSystem)

    def _fs(self) -> fsspec.AbstractFileSystem:
        return fsspec.core.url_to_fs(self.url, **self.storage_options)[0]

    def check(self) -> None:
        fs = self._fs()
        if os.path.lexists(self.target) if self.local else fs.exists(self.target):
            if self.mode != "w":
                raise OutputExistsError(_exists_message(self.result()))
            _check_replaceable_zarr(fs, self.target, self.result())

    def ready(self) -> None:
        if self.parents is not None:
            _ensure_parent_groups(*self.parents, self.storage_options)

    def staged(self) -> Swap:
        return Swap(self.tmp, self.tmp, self.target, replace=self.mode == "w")

    def swap(self) -> None:
        if self.local:
            _atomic.commit(self.tmp, self.target)
            return
        fs, target, tmp = self._fs(), self.target, self.tmp
        if fs.exists(target):
            old_meta = [p for p in fs.find(target) if p.rsplit("/", 1)[-1] in _ZARR_METADATA]
            for p in sorted(old_meta, key=len):  # root metadata first: the old store stops opening
                fs.rm(p)
            fs.rm(target, recursive=True)
        files = sorted(fs.find(tmp))
        is_meta = [p.rsplit("/", 1)[-1] in _ZARR_METADATA for p in files]
        chunks = [p for p, m in zip(files, is_meta, strict=True) if not m]
        meta = sorted((p for p, m in zip(files, is_meta, strict=True) if m), key=len, reverse=True)
        for src in [*chunks, *meta]:  # deepest metadata last but one, root metadata last
            fs.copy(src, target + src[len(tmp) :])
        fs.rm(tmp, recursive=True)

    def close(self, committed: bool) -> None:
        if self.local:  # after a commit, the temporary holds the previous output
            _discard_local(self.tmp)
            if committed:  # after the locks: the swaps of outputs committed together stay close
                _atomic.sweep(self.target)
        elif not committed:
            _discard(self._fs(), self.tmp)
        if committed and self.consolidate_root is not None:
            self._consolidate()

    def _consolidate(self) -> None:
        import zarr
        import zarr.storage

        root = self.consolidate_root
        if self.local:
            store: Any = zarr.storage.LocalStore(root)
        else:
            store = zarr.storage.FsspecStore.from_url(
                self._fs().unstrip_protocol(root), storage_options=dict(self.storage_options)
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(store)

    def result(self) -> str:
        return self.target if self.local else self._fs().unstrip_protocol(self.target)


def _prepare_zarr(_written: Any, *args: Any) -> _ZarrCommit:
    """The commit of a store whose data are written (``_written``: the data tasks' results)."""
    return _ZarrCommit(*args)


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
        it to :func:`~lazyraster.io.discard_temporaries` once computed.
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
        created = missing_folders(parent) if local else []
        source = ds
        ds = _align_chunks(_clean_for_zarr(ds), chunks)  # refuses bad chunks: before any file
        if parent:
            fs.makedirs(parent, exist_ok=True)
        # the root and parent groups are made by the commit: a failed write leaves none
        parents = (root if local else fs.unstrip_protocol(root), group, zarr_format)
        tmp = _hold(target) if local else f"{parent}/.{name}.tmp-{secrets.token_hex(16)}"

        # xarray reads a group through the root's consolidated metadata: keep it current
        consolidate_root = root if group and consolidated is not False else None
        tmp_url = tmp if local else fs.unstrip_protocol(tmp)
        to_zarr_options = {
            "mode": "w",
            "compute": False,
            "consolidated": consolidated,
            "zarr_format": zarr_format,
            "storage_options": storage_options or None,
        }
        finish_args = (
            url,
            storage_options,
            tmp,
            target,
            mode,
            consolidate_root,
            parents if group else None,
        )
        try:
            if metadata_only:
                ds.to_zarr(tmp_url, **to_zarr_options)
                return commit_one(_ZarrCommit(*finish_args))
            writes = ds.to_zarr(tmp_url, **to_zarr_options)
            prepared = dask.delayed(_prepare_zarr, pure=False)(writes, *finish_args)
            finish = dask.delayed(commit_one, pure=False)(prepared)
            if not compute:  # the temporary stays locked by this process until it commits
                return pending(
                    finish, fs, [tmp], [prepared], listed=False, targets=[target], folders=created
                )
            return _compute(finish, source)
        except BaseException as exc:
            _discard(fs, tmp)
            remove_empty(created)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise _disk_full(exc, shown) from exc
            raise
        finally:
            if compute:  # the commit may have run in another process: release our lock
                _release(tmp)


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
