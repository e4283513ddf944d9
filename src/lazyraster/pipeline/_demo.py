"""The main job on a catalog: load, analyse, write Zarr, a COG and a PNG quicklook.

The analysis is NDVI and its 3 x 3 focal mean; the Zarr store holds both, the COG the
NDVI (one band per time step), the PNG both side by side for the first time step.

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

from lazyraster.catalog import search
from lazyraster.errors import LazyrasterError, OutputExistsError, ReadError
from lazyraster.io import write_geotiff, write_zarr
from lazyraster.load import READ_ERRORS, load, unreadable, with_item

__all__ = ["DemoResult", "analyse", "run_demo"]

OUTPUT_NAMES = {"zarr": "ndvi.zarr", "geotiff": "ndvi.tif", "quicklook": "ndvi.png"}
BANDS = ("red", "nir")


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


FOCAL_SIZE = 3


def analyse(ds: xr.Dataset) -> xr.Dataset:
    """The demo's analysis, lazily: NDVI and its 3 x 3 focal mean for every time step.

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
    ndvi = ds.geo.ndvi()
    focal = ndvi.geo.focal_mean(size=FOCAL_SIZE, edge="nodata")
    focal.attrs = {
        **ndvi.attrs,
        "long_name": f"NDVI, {FOCAL_SIZE} x {FOCAL_SIZE} focal mean (NaN-aware)",
    }
    return xr.Dataset({"ndvi": ndvi, "ndvi_focal_mean": focal})


def quicklook(panels: dict[str, xr.DataArray], path: Path, *, title: str) -> None:
    """Write a PNG of 2-D NDVI-like maps side by side, in map coordinates, one colour bar."""
    fig = Figure(figsize=(5 * len(panels) + 1, 4.5), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (label, data) in zip(axes, panels.items(), strict=True):
        left, bottom, right, top = data.rio.bounds()
        image = ax.imshow(
            data.values,
            extent=(left, right, bottom, top),
            cmap="RdYlGn",
            vmin=-1,
            vmax=1,
            interpolation="nearest",
        )
        ax.set_title(label)
        ax.set_xlabel(f"x ({data.rio.crs})")
        ax.ticklabel_format(style="plain", useOffset=False)
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_facecolor("0.85")  # nodata shows grey
    axes[0].set_ylabel("y")
    fig.colorbar(image, ax=list(axes), label="NDVI")
    fig.suptitle(title)
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
    """Load a catalog, compute NDVI and its focal mean, write Zarr, a COG and a PNG to ``out``.

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
    ReadError
        If a scene's file cannot be read; the message names it.

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
    try:
        with _timed(timings, "load"):
            ds = load(catalog, bands=list(BANDS), collections=collections)
        with _timed(timings, "analyse"):
            result = analyse(ds).persist()
    except ReadError as err:
        raise with_item(err, list(search(catalog, collections=collections)), BANDS) from None
    except LazyrasterError:
        raise
    except READ_ERRORS as err:
        items = list(search(catalog, collections=collections))
        failure = unreadable(err, items, BANDS)
        if failure is None:
            raise
        raise failure from None
    out.mkdir(parents=True, exist_ok=True)
    with _timed(timings, "zarr"):
        write_zarr(result, outputs["zarr"], mode=mode, inputs=[os.fspath(catalog)])
    with _timed(timings, "geotiff"):
        write_geotiff(result["ndvi"], outputs["geotiff"], mode=mode, inputs=[os.fspath(catalog)])
    with _timed(timings, "quicklook"):
        first = result.isel(time=0)
        day = str(first.time.values)[:10]
        panels = {
            "NDVI": first["ndvi"],
            f"{FOCAL_SIZE} x {FOCAL_SIZE} focal mean": first["ndvi_focal_mean"],
        }
        quicklook(panels, outputs["quicklook"], title=f"{first.id.values} ({day})")
    return DemoResult(outputs=outputs, timings=timings)
