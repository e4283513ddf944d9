"""Pipelines: a YAML spec names the catalog, the steps and the outputs of a batch run.

The spec's schema and limits are in ``_spec``, the step table and the lazy build in
``_steps``, the run and its dry run in ``_run``, the progress of the write in
``_progress``; ``_demo`` is the bundled demo spec run with a quicklook.

::

    from lazyraster.pipeline import load_spec, run_pipeline
    report = run_pipeline(load_spec("catalogs/sample/ndvi.yaml"))
"""

from __future__ import annotations

from lazyraster.pipeline._demo import DemoResult, analyse, run_demo
from lazyraster.pipeline._run import Plan, RunReport, plan_pipeline, run_pipeline
from lazyraster.pipeline._spec import (
    MAX_SPEC_BYTES,
    MAX_SPEC_DEPTH,
    MAX_SPEC_NODES,
    Spec,
    load_spec,
)
from lazyraster.pipeline._steps import STEPS, Step

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
