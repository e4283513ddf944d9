"""Helpers of the writer tests: snapshots of outputs, failing tasks, reference overviews."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import xarray as xr


def snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file under ``path`` (or of the file itself)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def hidden_leftovers(folder: Path) -> list[str]:
    """Temporary or set-aside outputs (``.<name>.tmp-<id>``, ``.<name>.old-<id>``)."""
    names = (p.name for p in folder.iterdir() if p.name.startswith("."))
    return sorted(n for n in names if ".tmp-" in n or ".old-" in n)


def only_temporaries(folder: Path, name: str) -> bool:
    """True if ``folder`` holds nothing but output ``name`` and its hidden temporaries.

    After a task fails, tasks already running on other threads may still write a
    block into the temporary folder after the writer removed it.
    """
    return all(p.name == name or p.name.startswith(f".{name}.tmp-") for p in folder.iterdir())


def failing(da: xr.DataArray, bad_block: int = 1) -> xr.DataArray:
    """Same as ``da`` but the dask task of one block raises, after the others ran."""

    def boom(block, block_info=None):
        if block_info[0]["chunk-location"][-1] == bad_block:
            raise RuntimeError("task failed midway")
        return block

    return da.copy(data=da.data.map_blocks(boom, dtype=da.dtype))


def block_mean(values: np.ndarray, factor: int, nodata: float | None = None) -> np.ndarray:
    """Average of ``factor`` x ``factor`` windows ignoring NaN and nodata, by an explicit loop.

    The windows of the last row and column may be partial (``ceil(size / factor)`` a
    side, as GDAL's overviews): they average the pixels that are there.
    """
    ny, nx = -(-values.shape[0] // factor), -(-values.shape[1] // factor)
    out = np.full((ny, nx), np.nan)
    for i in range(ny):
        for j in range(nx):
            cell = values[i * factor : (i + 1) * factor, j * factor : (j + 1) * factor]
            cell = cell[~np.isnan(cell) & (cell != nodata)]
            if cell.size:
                out[i, j] = cell.astype(np.float64).sum() / cell.size
    return out


def assert_georef(back: xr.DataArray | xr.Dataset, ref: xr.DataArray) -> None:
    assert back.rio.crs == ref.rio.crs
    assert back.rio.transform() == ref.rio.transform(recalc=True)


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def time_series(raster: xr.DataArray, n: int, start: str) -> xr.DataArray:
    times = xr.date_range(start, periods=n, freq="D")
    stack = xr.concat([raster + i for i in range(n)], dim=xr.Variable("time", times))
    return stack.transpose("time", "y", "x")


def overview(path: Path | str, level: int) -> np.ndarray:
    """Band 1 of overview ``level`` (0: the first overview), read by GDAL."""
    with rasterio.open(path, overview_level=level) as src:
        return src.read(1)
