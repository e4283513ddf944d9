"""Helpers of the pipeline tests: a three-scene catalog of small COGs, damaged files, a spec."""

from __future__ import annotations

import datetime as dt
import functools
import os
import signal
from pathlib import Path

import numpy as np
import pystac
import rasterio
import xarray as xr

from lazyraster.testing import raster_item, write_cog

DATES = [dt.datetime(2021, 5, d, 10, tzinfo=dt.UTC) for d in (1, 11, 21)]
SHAPE = (300, 260)  # 3 x 3 tiles of 128 at full resolution, one overview


def _scene(folder: Path, seed: int) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    return {
        band: write_cog(folder / f"{band}.tif", rng.integers(1, 10000, SHAPE, dtype="uint16"))
        for band in ("red", "nir")
    }


def _catalog(root: Path) -> tuple[Path, dict[str, dict[str, Path]]]:
    """Three scenes s0, s1, s2 of red and nir COGs in a self-contained catalog."""
    catalog = pystac.Catalog("scenes", "three scenes")
    files = {}
    for k, when in enumerate(DATES):
        files[f"s{k}"] = _scene(root / "files" / f"s{k}", seed=k)
        assets = {b: {"href": str(p), "common_name": b} for b, p in files[f"s{k}"].items()}
        catalog.add_item(raster_item(f"s{k}", when, assets))
    catalog.normalize_hrefs(str(root / "catalog"))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog" / "catalog.json", files


def _truncate(path: Path, keep: float = 0.6) -> None:
    """Cut a file short, as an interrupted download or copy leaves it."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


def _damage_first_tile(path: Path) -> None:
    """Overwrite the middle of the first full-resolution tile: the header and the last
    tile stay intact, so the file opens and its end reads."""
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset + 2)
        f.write(b"\xff" * (size - 4))


def _ndvi(files: dict[str, Path]) -> np.ndarray:
    with rasterio.open(files["red"]) as r, rasterio.open(files["nir"]) as n:
        red = r.read(1).astype(np.float32)
        nir = n.read(1).astype(np.float32)
    return (nir - red) / (nir + red)


def _spec(source: Path, out: Path, **extra) -> dict:
    return {
        "source": str(source),
        "load": {"bands": ["red", "nir"], "chunks": 128},
        "steps": ["ndvi"],
        "output": {"zarr": {"path": str(out / "ndvi.zarr"), "variables": ["ndvi"]}},
        **extra,
    }


def _kill_once(block: np.ndarray, *, marker: str, times: int) -> np.ndarray:
    """SIGKILL this worker process the first ``times`` times any worker gets here."""
    for n in range(times):
        try:
            os.close(os.open(f"{marker}.{n}", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        os.kill(os.getpid(), signal.SIGKILL)
    return block


def _killing_ndvi(ds: xr.Dataset, *, marker: str, times: int = 1) -> xr.DataArray:
    ndvi = ds.geo.ndvi()
    kill = functools.partial(_kill_once, marker=marker, times=times)
    meta = np.array((), dtype=ndvi.dtype)  # no trial call here: it would kill the test
    return ndvi.copy(data=ndvi.data.map_blocks(kill, dtype=ndvi.dtype, meta=meta))
