"""The public packages: callable packages pickle by reference; documented names stay reachable."""

from __future__ import annotations

import pickle
from pathlib import Path

import cloudpickle
import dask
import pytest
import xarray as xr

import lazyraster

SAMPLE = Path(__file__).resolve().parents[1] / "catalogs" / "sample" / "catalog.json"


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
@pytest.mark.parametrize("name", ["load", "cluster"])
def test_callable_package_pickles_by_reference(name, dumps):
    package = getattr(lazyraster, name)
    assert pickle.loads(dumps(package)) is package


def test_delayed_load_runs_in_a_worker_process():
    task = dask.delayed(lazyraster.load)(str(SAMPLE), bands=["red"])
    (ds,) = dask.compute(task, scheduler="processes", num_workers=1)
    assert isinstance(ds, xr.Dataset)
    assert list(ds.data_vars) == ["red"]


@pytest.mark.parametrize("name", ["MAX_SPEC_BYTES", "MAX_SPEC_NODES", "MAX_SPEC_DEPTH"])
def test_spec_limits_named_in_docs_are_reachable(name):
    # docs/pipeline.md cites lazyraster.pipeline.MAX_SPEC_*; main exported them
    import lazyraster.pipeline

    assert f"lazyraster.pipeline.{name}" in (SAMPLE.parents[2] / "docs" / "pipeline.md").read_text()
    assert isinstance(getattr(lazyraster.pipeline, name), int)


@pytest.mark.parametrize("name", ["load", "cluster"])
def test_callable_package_tokenizes_deterministically(name):
    # dask.delayed(lazyraster.load) keys and pure=True caching depend on it
    from dask.base import tokenize

    package = getattr(lazyraster, name)
    with dask.config.set({"tokenize.ensure-deterministic": True}):
        assert tokenize(package) == tokenize(package)
