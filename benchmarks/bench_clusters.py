"""Small jobs on process-based clusters: ``processes`` and ``local`` against ``threads``.

Every figure is one fresh Python process, started the way a user starts it, so worker
start-up, imports and the cluster's shut-down all count. The numba cache is warm (the
harness's warm-up round fills it).

- ``sample`` rows: ``lazyraster run catalogs/sample/ndvi.yaml`` (NDVI and its 3 x 3
  focal mean of the bundled sample catalog, to Zarr and a COG), through the CLI, with
  ``--cluster threads`` (the rows' baseline), ``processes`` and ``local``.
- ``scenes`` rows: the same spec on the three-scene catalog of ``bench_load``, ``size``
  x ``size`` pixels each (default 240), with ``load``'s default chunks (the spec's
  ``chunks: 64`` removed: one chunk per band for the default size).
- ``write`` rows: ``write_zarr`` and ``write_geotiff`` of data already persisted inside
  ``with lazyraster.cluster(kind)`` (the NDVI and focal mean of the three scenes), timed
  inside the process around the write only; ``threads`` is each pair's baseline.

With ``LAZYRASTER_BENCH_BEFORE=<src folder of another version>`` every row is run a
second time with that version first on ``PYTHONPATH``, interleaved with the others, for
before/after figures in one run.

The table gives the median and best of the wall times, the ratio of the median to the
row group's ``threads`` median (lower is better; the issue's targets are 2x for runs
and 1.5x for writes), and the peak resident set of the largest process of the run
(``wait4``: the client or a worker, whichever was larger).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from bench_load import HERE, make_catalog
from harness import Case

DEFAULT_SIZE = 240
ROOT = HERE.parent
KINDS = ("threads", "processes", "local")

_WRITE = """
import sys, time
import lazyraster
from lazyraster.pipeline._run import _as_spec
from lazyraster.pipeline._steps import _build_skipping, _find_items

def main():
    spec_path, kind, fmt, out = sys.argv[1:]
    spec = _as_spec(spec_path)
    ds = _build_skipping(spec, _find_items(spec), {})[0]
    names = {str(v) for t in spec.outputs.values() for v in (t.variables or ds.data_vars)}
    ds = ds[[v for v in ds.data_vars if v in names]]
    with lazyraster.cluster(kind):
        ds = ds.persist()
        start = time.perf_counter()
        if fmt == "zarr":
            lazyraster.write_zarr(ds, out, mode="w")
        else:
            lazyraster.write_geotiff(ds, out, mode="w", per="time")
        print(time.perf_counter() - start)

if __name__ == "__main__":
    main()
"""


class _Fresh:
    """Run a command in a fresh process; keep its wall time (or the time it prints)."""

    def __init__(
        self,
        group: str,
        args: Sequence[str],
        *,
        cwd: Path,
        reports_time: bool = False,
        src: str | None = None,
    ) -> None:
        self.group = group
        self.args = list(args)
        self.cwd = cwd
        self.reports_time = reports_time
        # absolute: the processes run in another folder
        inherited = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        path = os.pathsep.join(os.path.abspath(p) for p in inherited if p)
        self.env = {**os.environ, "PYTHONPATH": src or path}
        self.seconds: list[float] = []
        self.peaks: list[int] = []

    def __call__(self) -> None:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdout=out, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)  # usage: this process and its children
            elapsed = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            if proc.returncode:
                raise RuntimeError(f"{' '.join(self.args)} failed:\n{err.read()[-2000:]}")
            self.seconds.append(float(out.read().split()[-1]) if self.reports_time else elapsed)
        self.peaks.append(usage.ru_maxrss * 1024)


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("lazyraster")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lazyraster.cli"]


def _scenes_spec(size: int, folder: Path) -> Path:
    spec = yaml.safe_load((ROOT / "catalogs" / "sample" / "ndvi.yaml").read_text())
    spec["source"] = str(make_catalog(size))
    spec.pop("search")
    spec["load"].pop("chunks")
    spec["output"] = {
        "zarr": str(folder / "scenes.zarr"),
        "geotiff": {"path": str(folder / "scenes.tif"), "variables": ["ndvi", "ndvi_focal_mean"]},
    }
    path = folder / "scenes.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def setup(size: int) -> list[Case]:
    work = Path(tempfile.mkdtemp(prefix="bench_clusters-"))
    shutil.copytree(ROOT / "catalogs", work / "catalogs")
    scenes = _scenes_spec(size, work)
    writer = work / "write.py"
    writer.write_text(_WRITE)
    versions = [("", None)]
    before = os.environ.get("LAZYRASTER_BENCH_BEFORE")
    if before:
        versions.append((" (before)", before))
    cases = []
    for label, src in versions:
        for group, spec in (("sample", "catalogs/sample/ndvi.yaml"), ("scenes", str(scenes))):
            for kind in KINDS:
                run = [*_cli(), "run", spec, "--overwrite", "--cluster", kind]
                fresh = _Fresh(group + label, run, cwd=work, src=src)
                cases.append(Case(f"{group}{label}: run --cluster {kind}", fresh))
        for fmt in ("zarr", "geotiff"):
            for kind in ("threads", "processes"):
                out = str(work / f"written-{kind}.{'zarr' if fmt == 'zarr' else 'tif'}")
                args = [sys.executable, str(writer), str(scenes), kind, fmt, out]
                fresh = _Fresh(f"write {fmt}{label}", args, cwd=work, reports_time=True, src=src)
                cases.append(Case(f"write{label}: {fmt} of persisted data, {kind}", fresh))
    cases[0].baseline = True
    return cases


def table(cases: list[Case]) -> str:
    """Median and best seconds, the ratio to the group's ``threads`` row, peak memory."""
    rows = [
        "| case | median s | best s | ratio to threads | peak MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    base: dict[str, float] = {}
    for case in cases:
        fresh = case.func
        assert isinstance(fresh, _Fresh)
        seconds = fresh.seconds[1:] or fresh.seconds  # the first is the warm-up round
        median = statistics.median(seconds)
        base.setdefault(fresh.group, median)  # the group's first row runs on threads
        rows.append(
            f"| {case.name} | {median:.3f} | {min(seconds):.3f} | "
            f"{median / base[fresh.group]:.2f}x | {max(fresh.peaks) / 2**20:.0f} |"
        )
    return "\n".join(rows)
