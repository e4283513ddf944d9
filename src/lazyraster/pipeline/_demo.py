"""The demo: the bundled spec ``demo.yaml`` run by :func:`run_pipeline`, and a quicklook.

The spec computes NDVI and its 3 x 3 focal mean; the Zarr store holds both, the COG the
NDVI (one file per time step when there are several), the PNG both side by side for
the first time step, drawn from the Zarr store written.

``lazyraster demo`` runs it on the bundled sample catalog; it is also the smallest
complete example of the package's data flow: catalog -> items -> Dataset -> analysis ->
writing, as a spec.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from lazyraster.errors import OutputExistsError
from lazyraster.pipeline._run import _size, _timed, run_pipeline
from lazyraster.pipeline._spec import Spec, load_spec
from lazyraster.pipeline._steps import _apply_step
from lazyraster.plot import quicklook

__all__ = ["DemoResult", "analyse", "run_demo"]

QUICKLOOK = "ndvi.png"


def demo_spec() -> Spec:
    """The bundled demo spec (``lazyraster/pipeline/demo.yaml``)."""
    with importlib.resources.as_file(
        importlib.resources.files("lazyraster.pipeline") / "demo.yaml"
    ) as path:
        return load_spec(path)


@dataclass
class DemoResult:
    """What the demo wrote and how long each step took."""

    outputs: dict[str, Path]
    timings: dict[str, float] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Bytes on disk of each output (all files of a Zarr store)."""
        return {kind: _size(path) for kind, path in self.outputs.items()}

    def report(self) -> str:
        """A short human-readable summary: outputs with sizes, then step timings."""
        lines = ["wrote:"]
        for kind, path in self.outputs.items():
            lines.append(f"  {kind:<10} {path}  ({_size(path) / 1024:.1f} KiB)")
        lines.append("timings:")
        lines.extend(f"  {step:<10} {seconds:7.3f} s" for step, seconds in self.timings.items())
        return "\n".join(lines)


def analyse(ds: xr.Dataset) -> xr.Dataset:
    """The demo's analysis, lazily: the steps of the demo spec, NDVI and its focal mean.

    Parameters
    ----------
    ds : xarray.Dataset
        With ``red`` and ``nir`` reflectance variables on (y, x) or (time, y, x).

    Returns
    -------
    xarray.Dataset
        ``ndvi`` and ``ndvi_focal_mean`` (float32), with the input's CRS. The focal
        mean treats nodata and the image edge as missing (at least one valid pixel).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> red = xr.DataArray(np.ones((3, 3)), dims=("y", "x"))
    >>> out = analyse(xr.Dataset({"red": red, "nir": 3 * red}))
    >>> float(out.ndvi[1, 1]), float(out.ndvi_focal_mean[0, 0])
    (0.5, 0.5)
    """
    spec = demo_spec()
    for call in spec.steps:
        ds = _apply_step(ds, call)
    return ds[list(spec.outputs["zarr"].variables or ds.data_vars)]


def _in_folder(spec: Spec, catalog: str, out: Path, collections: list[str] | None) -> Spec:
    """The demo spec with ``catalog`` as its source and its outputs in ``out``."""
    outputs = {
        kind: dataclasses.replace(target, path=os.fspath(out / Path(target.path).name))
        for kind, target in spec.outputs.items()
    }
    search = {**spec.search, **({"collections": collections} if collections else {})}
    return dataclasses.replace(spec, source=catalog, outputs=outputs, search=search)


def run_demo(
    catalog: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    collections: list[str] | None = None,
) -> DemoResult:
    """Run the demo spec on a catalog, writing Zarr, a COG and a PNG quicklook to ``out``.

    Parameters
    ----------
    catalog : str or path
        A static STAC catalog (path or URL) with red and nir bands.
    out : str or path
        Output folder; created if missing.
    overwrite : bool
        Replace outputs that already exist. Without it, nothing is written when any
        output exists.
    collections : list of str, optional
        Only items of these collections.

    Returns
    -------
    DemoResult
        The output paths (those the run reports, and the quicklook) and the time each
        stage took: ``load`` (items, load and steps, lazily), ``write`` (every output,
        in one compute), ``quicklook``.

    Raises
    ------
    OutputExistsError
        If an output exists and ``overwrite`` is False (nothing is written).
    ReadError
        If a scene's file cannot be read; the message names it.

    Examples
    --------
    >>> result = run_demo("catalogs/sample/catalog.json", "out")  # doctest: +SKIP
    >>> print(result.report())  # doctest: +SKIP
    """
    out = Path(out)
    spec = _in_folder(demo_spec(), os.fspath(catalog), out, collections)
    png = out / QUICKLOOK
    if png.exists() and not overwrite:
        raise OutputExistsError(
            f"{png} already exists; pass overwrite=True (CLI: --overwrite) to replace the "
            "demo's outputs, or choose another output folder"
        )
    try:
        report = run_pipeline(spec, overwrite=overwrite)
    except OutputExistsError as err:
        raise OutputExistsError(f"{err} From Python: run_demo(..., overwrite=True).") from None
    outputs = {}
    for kind, paths in report.outputs.items():
        names = [kind] if len(paths) == 1 else [f"{kind} {n + 1}" for n in range(len(paths))]
        outputs.update(zip(names, map(Path, paths), strict=True))
    timings = {"load": report.timings["build"], "write": report.timings["write"]}
    with _timed(timings, "quicklook"):
        with xr.open_zarr(outputs["zarr"]) as written:
            first = written.isel(time=0) if "time" in written.dims else written
            when = first.time.values if "time" in written.dims else None
            label = str(first.id.values) if "id" in first.coords else Path(catalog).name
        outputs["quicklook"] = quicklook(
            outputs["zarr"],
            png,
            variable=["ndvi", "ndvi_focal_mean"],
            time=when,
            overwrite=overwrite,
            title=label,
        )
    return DemoResult(outputs=outputs, timings=timings)
