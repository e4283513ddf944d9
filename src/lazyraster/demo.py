"""The main job on a catalog: load, analyse, write Zarr, a COG and a PNG quicklook.

``lazyraster demo`` runs it on the bundled sample catalog; it is also the smallest
complete example of the package's data flow: catalog -> items -> Dataset -> analysis ->
writing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr
from matplotlib.figure import Figure

from lazyraster.errors import OutputExistsError
from lazyraster.load import load
from lazyraster.write import write_geotiff, write_zarr

__all__ = ["DemoResult", "analyse", "run_demo"]

OUTPUT_NAMES = {"zarr": "ndvi.zarr", "geotiff": "ndvi.tif", "quicklook": "ndvi.png"}


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


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@contextmanager
def _timed(timings: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[step] = time.perf_counter() - start


def analyse(ds: xr.Dataset) -> xr.Dataset:
    """The demo's analysis, lazily: NDVI of every time step.

    Parameters
    ----------
    ds : xarray.Dataset
        With ``red`` and ``nir`` reflectance variables.

    Returns
    -------
    xarray.Dataset
        ``ndvi`` (float32), with the input's CRS.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"red": ("x", np.array([1.0])), "nir": ("x", np.array([3.0]))})
    >>> float(analyse(ds).ndvi[0])
    0.5
    """
    return ds.geo.ndvi().to_dataset()


def quicklook(ndvi: xr.DataArray, path: Path, *, title: str) -> None:
    """Write a PNG map of a 2-D NDVI with map coordinates and a colour bar."""
    left, bottom, right, top = ndvi.rio.bounds()
    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")  # no pyplot state
    ax = fig.subplots()
    image = ax.imshow(
        ndvi.values,
        extent=(left, right, bottom, top),
        cmap="RdYlGn",
        vmin=-1,
        vmax=1,
        interpolation="nearest",
    )
    fig.colorbar(image, ax=ax, label="NDVI")
    ax.set_title(title)
    ax.set_xlabel(f"x ({ndvi.rio.crs})")
    ax.set_ylabel("y")
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_facecolor("0.85")  # nodata shows grey
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def run_demo(
    catalog: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    collections: list[str] | None = None,
) -> DemoResult:
    """Load a catalog, compute NDVI, and write Zarr, a COG and a PNG into ``out``.

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
        The output paths and the time each step took.

    Raises
    ------
    OutputExistsError
        If an output exists and ``overwrite`` is False (nothing is written).

    Examples
    --------
    >>> result = run_demo("catalogs/sample/catalog.json", "out")  # doctest: +SKIP
    >>> print(result.report())  # doctest: +SKIP
    """
    out = Path(out)
    outputs = {kind: out / name for kind, name in OUTPUT_NAMES.items()}
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{', '.join(existing)} already exist; pass overwrite=True (CLI: --overwrite) "
            "to replace them, or choose another output folder"
        )
    mode = "w" if overwrite else "w-"
    timings: dict[str, float] = {}
    with _timed(timings, "load"):
        ds = load(catalog, bands=["red", "nir"], collections=collections)
    with _timed(timings, "analyse"):
        result = analyse(ds).persist()
    out.mkdir(parents=True, exist_ok=True)
    with _timed(timings, "zarr"):
        write_zarr(result, outputs["zarr"], mode=mode, inputs=[os.fspath(catalog)])
    with _timed(timings, "geotiff"):
        write_geotiff(result["ndvi"], outputs["geotiff"], mode=mode, inputs=[os.fspath(catalog)])
    with _timed(timings, "quicklook"):
        first = result["ndvi"].isel(time=0)
        day = str(first.time.values)[:10]
        quicklook(first, outputs["quicklook"], title=f"NDVI {first.id.values} ({day})")
    return DemoResult(outputs=outputs, timings=timings)
