"""The chunks ``load`` chooses when it is given none: few for small jobs, bounded for big ones.

The references are made outside the loader: the COGs' own block shapes and pixels read
back with rasterio, and dask's ``array.chunk-size`` as the byte bound.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dask
import numpy as np
import pystac
import pytest
import rasterio
from dask.utils import parse_bytes

import lazyraster
from lazyraster.testing import raster_item, write_cog

DATES = [dt.datetime(2021, 5, d, 10, tzinfo=dt.UTC) for d in (1, 11, 21)]


def _catalog(root: Path, shape: tuple[int, int], blocksize: int) -> tuple[Path, list[Path]]:
    """Three scenes of one uint16 ``red`` COG each, of ``shape`` in blocks of ``blocksize``."""
    catalog = pystac.Catalog("scenes", "three scenes")
    files = []
    for k, when in enumerate(DATES):
        data = np.random.default_rng(k).integers(1, 10000, shape, dtype="uint16")
        path = write_cog(root / "files" / f"s{k}.tif", data, blocksize=blocksize)
        files.append(path)
        catalog.add_item(raster_item(f"s{k}", when, {"red": {"href": str(path)}}))
    catalog.normalize_hrefs(str(root / "catalog"))
    catalog.save(pystac.CatalogType.ABSOLUTE_PUBLISHED)
    return root / "catalog" / "catalog.json", files


def _read(files: list[Path]) -> np.ndarray:
    """The scenes as rasterio reads them, nodata 0 as NaN, in float32."""
    stack = []
    for path in files:
        with rasterio.open(path) as src:
            data = src.read(1).astype("float32")
        stack.append(np.where(data == 0, np.nan, data))
    return np.stack(stack)


def test_three_small_scenes_load_as_one_chunk_and_a_few_tasks(tmp_path):
    catalog, files = _catalog(tmp_path, (240, 240), blocksize=512)
    ds = lazyraster.load(catalog, bands=["red"])
    assert ds.red.chunks == ((3,), (240,), (240,))
    assert len(dict(ds.red.__dask_graph__())) <= 4  # was 3 reads + their assembly, x 1
    np.testing.assert_array_equal(ds.red.values, _read(files))


@pytest.mark.parametrize("blocksize", [256, 384])
def test_a_big_scene_is_chunked_on_its_blocks_and_within_the_chunk_size(tmp_path, blocksize):
    catalog, files = _catalog(tmp_path, (1500, 1300), blocksize=blocksize)
    with rasterio.open(files[0]) as src:
        rows, cols = src.block_shapes[0]
    assert (rows, cols) == (blocksize, blocksize)
    limit = "8MiB"  # smaller than three scenes of full chunks: time is split
    with dask.config.set({"array.chunk-size": limit}):
        ds = lazyraster.load(catalog, bands=["red"])
    times, ys, xs = ds.red.chunks
    for sizes, block in ((ys, rows), (xs, cols)):
        assert all(size % block == 0 for size in sizes[:-1])  # every chunk starts on a block
        assert sizes[0] > 1  # not one block row per chunk
    largest = max(times) * max(ys) * max(xs) * ds.red.dtype.itemsize
    assert largest <= parse_bytes(limit)
    assert sum(times) == 3 and len(ys) * len(xs) > 1
    np.testing.assert_array_equal(ds.red.values, _read(files))


def test_the_default_and_given_chunks_give_the_same_values(tmp_path):
    catalog, files = _catalog(tmp_path, (300, 260), blocksize=128)
    default = lazyraster.load(catalog, bands=["red"])
    assert default.red.chunks == ((3,), (300,), (260,))
    expected = _read(files)
    for chunks in (64, {"time": 2, "y": 100, "x": 77}, -1):
        given = lazyraster.load(catalog, bands=["red"], chunks=chunks)
        np.testing.assert_array_equal(given.red.values, expected)
    np.testing.assert_array_equal(default.red.values, expected)
