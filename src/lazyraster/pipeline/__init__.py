"""Pipelines: a YAML spec names the catalog, the steps and the outputs of a batch run.

::

    from lazyraster.pipeline import load_spec, run_pipeline
    report = run_pipeline(load_spec("catalogs/sample/ndvi.yaml"))
"""

from __future__ import annotations

from lazyraster.pipeline._demo import DemoResult, analyse, run_demo
from lazyraster.pipeline._pipeline import (
    MAX_SPEC_BYTES,
    MAX_SPEC_DEPTH,
    MAX_SPEC_NODES,
    STEPS,
    Plan,
    RunReport,
    Spec,
    Step,
    load_spec,
    plan_pipeline,
    run_pipeline,
)

__all__ = [
    "MAX_SPEC_BYTES",
    "MAX_SPEC_DEPTH",
    "MAX_SPEC_NODES",
    "STEPS",
    "DemoResult",
    "Plan",
    "RunReport",
    "Spec",
    "Step",
    "analyse",
    "load_spec",
    "plan_pipeline",
    "run_demo",
    "run_pipeline",
]
