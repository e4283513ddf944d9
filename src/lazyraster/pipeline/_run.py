"""Running a spec: :func:`run_pipeline`, and its dry run :func:`plan_pipeline`.

A run finds the items and builds the lazy result (:mod:`lazyraster.pipeline._steps`),
then asks each writer for its output with ``compute=False``: :func:`~lazyraster.write_zarr`
and :func:`~lazyraster.write_geotiff` check names, shapes and existing outputs there, so
an existing output stops the run before any cluster starts or any pixel is read, and
the files written are the writers' names (one naming rule). Inside
``with lazyraster.cluster(...)`` every output is then computed in one dask compute, with
progress on the ``lazyraster`` logger (:mod:`lazyraster.pipeline._progress`). Each
output's commit waits for the data of every output (:func:`~lazyraster.io.commit_together`),
so a failure anywhere (a file that
cannot be read, a lost worker, an interrupt) commits nothing: no output appears, an
output being replaced is unchanged, and :func:`~lazyraster.io.discard_temporaries`
removes what the compute left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import time
from collections.abc import Iterator, Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array
import fsspec
import pystac
import xarray as xr
from dask.delayed import Delayed

from lazyraster.cluster import cluster as _cluster
from lazyraster.cluster import default_workers
from lazyraster.errors import (
    LazyrasterError,
    OutputExistsError,
    ReadError,
    SpecError,
    WorkerLostError,
    redact,
)
from lazyraster.io import commit_together, discard_temporaries, write_geotiff, write_zarr
from lazyraster.load import READ_ERRORS, readable, unreadable, with_item
from lazyraster.pipeline._progress import compute_writes
from lazyraster.pipeline._spec import Spec, load_spec
from lazyraster.pipeline._steps import (
    _build_skipping,
    _find_items,
    _leave_out,
    _noted,
    _selected,
)

__all__ = ["Plan", "RunReport", "plan_pipeline", "run_pipeline"]

logger = logging.getLogger("lazyraster")


@dataclass
class RunReport:
    """What a run wrote, how long each stage took, how many items it read or skipped.

    Examples
    --------
    >>> report = RunReport(outputs={"zarr": ["out/ndvi.zarr"]}, timings={"write": 1.5},
    ...                    items=2, bytes_written=3072, variables=["ndvi"])
    >>> print(report.summary())
    2 item(s), variables: ndvi
    wrote:
      zarr     out/ndvi.zarr
      3.0 KiB in all
    timings:
      write      1.500 s
    """

    outputs: dict[str, list[str]]
    timings: dict[str, float]
    items: int
    bytes_written: int
    variables: list[str]
    #: ``on_error: skip``: item id -> the file that could not be read and why.
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """A short human-readable summary."""
        lines = [f"{self.items} item(s), variables: {', '.join(self.variables)}"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} item(s) whose files cannot be read:")
            lines.extend(f"  {item}: {why}" for item, why in self.skipped.items())
        lines.append("wrote:")
        for kind, paths in self.outputs.items():
            lines.extend(f"  {kind:<8} {path}" for path in paths)
        lines.append(f"  {self.bytes_written / 1024:.1f} KiB in all")
        lines.append("timings:")
        lines.extend(f"  {stage:<8} {seconds:7.3f} s" for stage, seconds in self.timings.items())
        return "\n".join(lines)


def _size(path: str) -> int:
    fs, root = fsspec.core.url_to_fs(path)
    if fs.isdir(root):
        return sum(fs.du(root, total=False).values())
    return int(fs.size(root))


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start
    logger.info("%s: %.2f s", stage, timings[stage])


@contextlib.contextmanager
def _started(options: dict[str, Any]) -> Iterator[Any]:
    """Enter ``lazyraster.cluster(**options)``; a wrong option is a :class:`SpecError`."""
    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(_cluster(**options))
        except LazyrasterError:
            raise
        except (TypeError, ValueError) as err:
            raise SpecError(f"cluster: {err}") from None
        yield client


#: Bytes of a run's variables (bands read and results) that make another worker process
#: worth its start: a Python start, the imports of the analysis and its numba kernels
#: cost about as long as computing this much does on one core.
BYTES_PER_WORKER = 256 * 2**20


def _sized_to_job(options: dict[str, Any], kind: str, ds: xr.Dataset) -> dict[str, Any]:
    """No more worker processes than the job can keep busy, when ``workers`` is not set.

    Each worker process of ``processes`` and ``local`` costs a Python start and the
    imports of the analysis before its first task; a worker without a chunk to compute,
    or with too little work to pay for its start, only adds that (and, on ``local``,
    moves chunks between workers where threads of one would share them). So: at most
    as many workers as the variable with the most chunks has chunks (the widest step),
    and one per :data:`BYTES_PER_WORKER` of the run's variables; a ``local`` worker
    gets the cores of the workers left out as threads.
    """
    if kind not in ("processes", "local") or options.get("workers") is not None:
        return options
    arrays = [v.data for v in ds.data_vars.values() if isinstance(v.data, dask.array.Array)]
    chunks = max((a.npartitions for a in arrays), default=1)
    by_size = -(-sum(a.nbytes for a in arrays) // BYTES_PER_WORKER)
    workers = max(1, min(chunks, by_size))
    if workers >= default_workers(kind):
        return options
    logger.info(
        "%d chunk(s), %.1f MiB: starting %d worker process(es)",
        chunks,
        sum(a.nbytes for a in arrays) / 2**20,
        workers,
    )
    return {**options, "workers": workers}


def _geotiff_frame(ds: xr.Dataset) -> tuple[xr.Dataset, str | None]:
    if "time" in ds.dims and ds.sizes["time"] == 1:
        return ds.isel(time=0, drop=True), None
    return ds, ("time" if "time" in ds.dims else None)


def _writes(spec: Spec, ds: xr.Dataset, mode: str) -> dict[str, Delayed]:
    """Each output's write, from its writer with ``compute=False``: nothing is computed.

    The writers refuse existing outputs (unless ``mode="w"``) and wrong names or shapes
    here. The writes made before one is refused are discarded.
    """
    provenance = {
        "inputs": [redact(spec.source)],
        "parameters": {"steps": [s.describe() for s in spec.steps]},
    }
    writes: dict[str, Delayed] = {}
    try:
        if "zarr" in spec.outputs:
            target = spec.outputs["zarr"]
            writes["zarr"] = write_zarr(
                _selected(ds, target, "zarr"),
                target.path,
                group=target.group,
                mode=mode,
                compute=False,
                **provenance,
            )
        if "geotiff" in spec.outputs:
            target = spec.outputs["geotiff"]
            frame, per = _geotiff_frame(_selected(ds, target, "geotiff"))
            writes["geotiff"] = write_geotiff(
                frame, target.path, mode=mode, per=per, compute=False, **provenance
            )
    except OutputExistsError as err:
        discard_temporaries(*writes.values())
        raise OutputExistsError(
            f"{err} In a spec: output.overwrite: true. Nothing was computed or written."
        ) from None
    except BaseException:
        discard_temporaries(*writes.values())
        raise
    return writes


def _written(
    spec: Spec,
    ds: xr.Dataset,
    items: list[pystac.Item],
    writes: dict[str, Delayed],
    mode: str,
    skipped: dict[str, str],
    client: Any,
    interval: float,
) -> tuple[dict[str, Any], xr.Dataset, list[pystac.Item]]:
    """Compute ``writes`` together; a file that fails to read is named, or skipped.

    With ``on_error: fail`` the error becomes a :class:`ReadError` naming the file.
    With ``skip`` its item is left out and the rest written again: only a file that
    passed the check before the run (damaged in its middle) costs this second pass.
    A worker process of ``processes`` that dies costs one more pass: dask's
    ``processes`` scheduler gives up on the whole computation then
    (``BrokenProcessPool``), where a distributed cluster computes the lost tasks again.
    Whatever a failed pass left is discarded.
    """
    lost = 0
    while True:
        failure = None
        try:
            try:
                together = commit_together(*writes.values())
            except ValueError as err:
                raise SpecError(f"output: {err}. Nothing was computed or written.") from None
            results = compute_writes(together, client, interval)
            return dict(zip(writes, results, strict=True)), ds, items
        except BrokenProcessPool as err:
            lost += 1
            if lost == 2:
                raise WorkerLostError(
                    "a worker process of the 'processes' scheduler died, twice (killed by "
                    f"a signal or by the out-of-memory killer?): {err}. Run with --cluster "
                    "local (cluster: local), whose workers are restarted and whose lost "
                    "tasks are computed again, or give the run more memory."
                ) from None
            logger.warning("a worker process died (%s); computing once more", err)
        except ReadError as err:
            failure = with_item(err, items, spec.load.get("bands"))
            if spec.on_error == "fail" or failure.item is None:
                raise failure from None
        except LazyrasterError:
            raise
        except READ_ERRORS as err:
            failure = unreadable(err, items, spec.load.get("bands"))
            if failure is None:
                raise
            if spec.on_error == "fail":
                raise failure from None
        finally:
            discard_temporaries(*writes.values())
        if failure is not None:
            items = _leave_out(spec, items, {str(failure.item): _noted(failure)}, skipped)
            ds, items = _build_skipping(spec, items, skipped)
        writes = _writes(spec, ds, mode)


def run_pipeline(
    spec: Spec | Mapping[str, Any] | str | os.PathLike[str],
    *,
    overwrite: bool | None = None,
    cluster: str | None = None,
    progress_interval: float = 10.0,
) -> RunReport:
    """Run a pipeline spec: search, load, analyse, and write every output in one compute.

    Parameters
    ----------
    spec : Spec, mapping or path
        A validated :class:`Spec`, a mapping in the spec's schema, or a YAML file.
    overwrite : bool, optional
        Overrides ``output.overwrite``.
    cluster : str, optional
        Overrides the cluster kind (the spec's other cluster options are kept only
        when it names the same kind).
    progress_interval : float
        Seconds between progress lines on the ``lazyraster`` logger.

    Returns
    -------
    RunReport
        ``outputs`` holds what the writes computed to: the paths written.

    Raises
    ------
    SpecError
        For a spec that is not valid (before any cluster starts or data is read).
    OutputExistsError
        If an output exists and overwriting was not asked for (the writer's check,
        before any cluster starts or data is read).
    MissingBandError, EmptyResultError
        If the items lack a band a step needs, or no item passes the filters.
    ReadError
        ``on_error: fail``: a file that cannot be read; no output is written.

    Examples
    --------
    >>> report = run_pipeline("catalogs/sample/ndvi.yaml")  # writes out/pipeline/
    >>> report.items, report.variables
    (1, ['red', 'nir', 'ndvi', 'ndvi_focal_mean'])
    >>> sorted(report.outputs)
    ['geotiff', 'zarr']
    """
    spec = _as_spec(spec)
    overwrite = spec.overwrite if overwrite is None else overwrite
    cluster_options = _with_cluster_override(spec, cluster)
    mode = "w" if overwrite else "w-"
    timings: dict[str, float] = {}
    skipped: dict[str, str] = {}
    with _timed(timings, "build"):
        items = _find_items(spec)
        if spec.on_error == "skip":
            bad = readable(items, spec.load.get("bands"))[1]
            items = _leave_out(spec, items, bad, skipped)
        ds, items = _build_skipping(spec, items, skipped)
        for target in spec.outputs.values():
            _check_writable(target.path)
        writes = _writes(spec, ds, mode)
    logger.info("%s: %s", spec.origin, _grid(ds))
    try:
        kind = cluster_options.get("kind") or dask.config.get("lazyraster.cluster.kind")
        cluster_options = _sized_to_job(cluster_options, kind, ds)
        logger.info("%s: computing on %s", spec.origin, kind)
        with _started(cluster_options) as client, _timed(timings, "write"):
            written, ds, items = _written(
                spec, ds, items, writes, mode, skipped, client, progress_interval
            )
    finally:
        discard_temporaries(*writes.values())
    outputs = {
        kind: [paths] if isinstance(paths, str) else list(paths) for kind, paths in written.items()
    }
    size = sum(_size(path) for paths in outputs.values() for path in paths)
    for kind_, paths in outputs.items():
        logger.info("wrote %s: %s", kind_, ", ".join(paths))
    return RunReport(
        outputs=outputs,
        timings=timings,
        items=len(items),
        bytes_written=size,
        variables=_written_variables(spec, ds),
        skipped=skipped,
    )


def _written_variables(spec: Spec, ds: xr.Dataset) -> list[str]:
    """The variables some output writes (only those are computed), in ``ds``'s order."""
    chosen = [t.variables for t in spec.outputs.values()]
    return [str(v) for v in ds.data_vars if any(c is None or v in c for c in chosen)]


# --------------------------------------------------------------------------- dry run


@dataclass
class Plan:
    """What a run would do: items, grid, steps, outputs, cluster (and SLURM job script).

    Examples
    --------
    >>> from lazyraster.pipeline import plan_pipeline
    >>> plan = plan_pipeline("catalogs/sample/ndvi.yaml")
    >>> plan.items, plan.variables
    (1, ['red', 'nir', 'ndvi', 'ndvi_focal_mean'])
    >>> print(plan.describe().splitlines()[2])
    steps:
    """

    spec: Spec
    items: int
    grid: str
    variables: list[str]
    cluster: dict[str, Any]
    job_script: str | None = None

    def describe(self) -> str:
        """The plan as text, as ``lazyraster run --dry-run`` prints it."""
        lines = [
            f"source:  {redact(self.spec.source)} ({self.items} item(s))",
            f"grid:    {self.grid}",
            "steps:",
        ]
        lines.extend(f"  {i + 1}. {call.describe()}" for i, call in enumerate(self.spec.steps))
        if not self.spec.steps:
            lines.append("  (none: the loaded bands are written as they are)")
        lines.append(f"variables: {', '.join(self.variables)}")
        lines.append("outputs:" + ("  (overwrite)" if self.spec.overwrite else ""))
        if self.spec.on_error == "skip":
            lines[-1] += "  (on_error: skip: scenes whose files cannot be read are left out)"
        for kind, target in self.spec.outputs.items():
            chosen = ", ".join(target.variables) if target.variables else "all variables"
            lines.append(f"  {kind:<8} {target.path} ({chosen})")
        kind = self.cluster.get("kind") or dask.config.get("lazyraster.cluster.kind")
        options = {k: v for k, v in self.cluster.items() if k != "kind"}
        lines.append(f"cluster: {kind}" + (f" {options}" if options else ""))
        if self.job_script:
            lines.append("worker job script:")
            lines.extend(f"  {line}" for line in self.job_script.splitlines())
        return "\n".join(lines)


def _grid(ds: xr.Dataset) -> str:
    crs = ds.rio.crs
    xres, yres = ds.rio.resolution()
    left, bottom, right, top = ds.rio.bounds()
    times = f", {ds.sizes['time']} time step(s)" if "time" in ds.dims else ""
    return (
        f"{crs.to_string() if crs else 'no CRS'}, {ds.rio.height} x {ds.rio.width} pixels "
        f"of {abs(xres):g} x {abs(yres):g}{times}, bounds ({left:g}, {bottom:g}, "
        f"{right:g}, {top:g})"
    )


def plan_pipeline(
    spec: Spec | Mapping[str, Any] | str | os.PathLike[str],
    *,
    overwrite: bool | None = None,
    cluster: str | None = None,
) -> Plan:
    """Validate a spec and describe the run without computing anything.

    Finds the items and builds the lazy result (reading STAC metadata only), so a
    missing band or variable shows here too. For ``slurm`` the worker job script is
    generated (``lazyraster.cluster(..., dry_run=True)``); nothing is submitted.
    Nothing is written either, so existing outputs are not looked for here: the
    writers of the run refuse them, before any cluster starts or pixel is read.

    Parameters
    ----------
    spec, overwrite, cluster
        As in :func:`run_pipeline`.

    Returns
    -------
    Plan

    Examples
    --------
    >>> plan = plan_pipeline("catalogs/sample/ndvi.yaml", overwrite=True)
    >>> plan.items, plan.variables
    (1, ['red', 'nir', 'ndvi', 'ndvi_focal_mean'])
    """
    spec = _as_spec(spec)
    if overwrite is not None:
        spec = dataclasses.replace(spec, overwrite=overwrite)
    options = _with_cluster_override(spec, cluster)
    skipped: dict[str, str] = {}
    ds, items = _build_skipping(spec, _find_items(spec), skipped)
    for target in spec.outputs.values():
        _check_writable(target.path)
    script = None
    kind = options.get("kind") or dask.config.get("lazyraster.cluster.kind")
    if kind == "slurm":
        dry = {k: v for k, v in options.items() if k not in ("jobs", "adapt", "timeout", "kind")}
        try:
            with _cluster("slurm", dry_run=True, **dry) as job_script:
                script = str(job_script)
        except TypeError as err:
            raise SpecError(f"cluster: {err}") from None
    return Plan(
        spec=spec,
        items=len(items),
        grid=_grid(ds),
        variables=[str(v) for v in ds.data_vars],
        cluster=options,
        job_script=script,
    )


def _as_spec(spec: Spec | Mapping[str, Any] | str | os.PathLike[str]) -> Spec:
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, Mapping):
        return Spec.from_mapping(spec)
    if isinstance(spec, str | os.PathLike):
        return load_spec(spec)
    raise TypeError(f"spec must be a Spec, a mapping or a YAML path, not {type(spec).__name__}")


def _with_cluster_override(spec: Spec, kind: str | None) -> dict[str, Any]:
    options = dict(spec.cluster)
    if kind is not None and options.get("kind") != kind:
        options = {"kind": kind}
    return options


def _check_writable(path: str) -> None:
    """Refuse a local output whose folder cannot be written, before anything is computed."""
    if "://" in path and not path.startswith("file://"):
        return  # object stores say so when writing
    folder = Path(path.removeprefix("file://")).absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    if not os.access(folder, os.W_OK):
        code = errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else errno.EACCES
        raise PermissionError(
            code, f"{os.strerror(code)}, so {path} cannot be written", str(folder)
        )
