"""What both writers share: the rules on existing outputs, provenance, computing a graph.

Both writers (:func:`lazyraster.io.write_zarr`, :func:`lazyraster.io.write_geotiff`)
share three rules:

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
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import dask.array as dsa
import dask.base
import dask.core
import fsspec
import xarray as xr
from dask.delayed import Delayed
from dask.highlevelgraph import MaterializedLayer
from fsspec.implementations.local import LocalFileSystem

from lazyraster.config import package_version
from lazyraster.errors import OutputExistsError

__all__ = ["WriteMode"]

WriteMode = Literal["w-", "w"]

_ZARR_METADATA = {"zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata"}
_ZARR_ROOT_METADATA = ("zarr.json", ".zgroup", ".zarray")
_ZARR_METADATA_MAX = 64 << 20  # bytes of a metadata document read to recognise a store
_ZARR_CHUNK_NAME = re.compile(r"c|\d+(\.\d+)*")
_TIFF_MAGIC = {b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"}


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
    import dask.threaded

    get = dask.base.get_scheduler()
    on_processes = dask.multiprocessing.get in (get, getattr(get, "__wrapped__", None))
    if on_processes and _in_memory(data):
        # the function, not the name "threads": dask imports distributed to resolve a name
        return result.compute(scheduler=dask.threaded.get)
    return result.compute()


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


def _disk_full(exc: OSError, target: str) -> OSError:
    return OSError(
        exc.errno,
        f"no space left on the device while writing {target}; free space or write "
        "elsewhere. Any previous output there is unchanged and nothing was put in its place",
    )
