"""A batch run from a YAML spec against the same work written by hand in Python.

Input: the three-scene catalog of ``bench_load`` (``size`` x ``size`` uint16 red and
nir COGs per scene, made once under ``benchmarks/.data/``). Every case computes NDVI
and its 3 x 3 focal mean for the three scenes on the threaded scheduler and writes both
to a Zarr store.

- ``hand-written`` (baseline): ``lazyraster.load`` + ``ds.geo.ndvi()`` +
  ``focal_mean`` + ``write_zarr``, straight from the lazy graph.
- ``hand-written, persist``: the same with ``persist()`` before writing, as batch
  scripts do (and as ``lazyraster run`` does).
- ``lazyraster run (spec)``: ``run_pipeline`` on the equivalent spec, which validates
  it, builds the same graph, persists with progress logging, and writes.

The ratio of the spec run to ``hand-written, persist`` is the cost of the spec layer
(validation, step table, progress callback); against the baseline it adds the cost of
holding the result in memory before writing. The machine's load (other jobs on shared
cores) makes absolute times noisy: compare the ratios measured in the same run.
"""

from __future__ import annotations

import shutil

import xarray as xr

import lazyraster
from bench_load import HERE, make_catalog
from harness import Case
from lazyraster.pipeline import run_pipeline

DEFAULT_SIZE = 10980
CHUNK = 2048


def setup(size: int) -> list[Case]:
    catalog = str(make_catalog(size))
    out = HERE / ".data" / "out_pipeline"

    def fresh(name: str) -> str:
        shutil.rmtree(out / name, ignore_errors=True)
        (out / name).mkdir(parents=True)
        return str(out / name)

    def analysis() -> xr.Dataset:
        ds = lazyraster.load(catalog, bands=["red", "nir"], chunks=CHUNK)
        ndvi = ds.geo.ndvi()
        return xr.Dataset({"ndvi": ndvi, "ndvi_focal_mean": ndvi.geo.focal_mean(size=3)})

    def by_hand(persist: bool) -> None:
        folder = fresh("hand")
        with lazyraster.cluster("threads"):
            result = analysis()
            if persist:
                result = result.persist()
            lazyraster.write_zarr(result, f"{folder}/result.zarr")

    def spec_run() -> None:
        folder = fresh("spec")
        spec = {
            "source": catalog,
            "load": {"bands": ["red", "nir"], "chunks": CHUNK},
            "steps": ["ndvi", {"focal_mean": {"variable": "ndvi", "size": 3}}],
            "output": {
                "zarr": f"{folder}/result.zarr",
                "variables": ["ndvi", "ndvi_focal_mean"],
            },
            "cluster": "threads",
        }
        run_pipeline(spec)

    return [
        Case("hand-written", lambda: by_hand(False), baseline=True),
        Case("hand-written, persist", lambda: by_hand(True)),
        Case("lazyraster run (spec)", spec_run),
    ]
