"""Start-up costs, each measured in fresh processes beside its baseline.

- ``import lazyraster`` against ``import xarray`` (target: at most 1.2x), and the import
  with the accessor made usable (``import lazyraster, xarray; xarray.Dataset.geo``);
- ``lazyraster --help`` against ``python -c "import click"`` (target: at most 1.5x);
- the first call minus the second of ``ds.geo.ndvi().compute()`` on the bundled sample,
  ``focal_mean`` and ``spring_index`` (``lazyraster.testing.daymet_like``) in a fresh
  process with a warm numba cache (target: at most 0.3 s), each also quoted above a
  reference row: a plain ``@numba.njit(cache=True)`` kernel (``_reference_kernel.py``)
  applied through xarray + dask, what any numba + dask program pays on its first call
  with a warm cache (numba's start, dask's first compute), which is no compilation;
- the sample ``lazyraster run`` spec (``catalogs/sample/ndvi.yaml``) on ``--cluster
  processes`` and ``--cluster local`` against ``--cluster threads`` (target: at most 2x),
  run from a copy of ``catalogs/`` in a temporary folder.

Every figure is the median of ``repeat`` (at least 5) fresh processes, the case and its
baseline interleaved, so a slow moment of the shared machine hits both alike. Beside
the wall time, the CPU time: of the whole process for the first-call rows (every
thread), of the process and the children it waited for in the other rows.

Adding a row: write ``def row_x(repeat: int) -> Row`` and append it to :data:`ROWS`.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE = ROOT / "catalogs" / "sample" / "catalog.json"
PYTHON = sys.executable
LAZYRASTER = str(Path(sys.executable).with_name("lazyraster"))
MIN_REPEAT = 5


@dataclass
class Row:
    """One figure: the case, its baseline, and how the two compare against the target."""

    figure: str
    case: float
    baseline: float | None
    result: str
    target: str
    spread: str = "-"
    cpu: str = "-"


def _children_cpu() -> float:
    """CPU seconds (user + system) of the ended child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: Sequence[str], cwd: Path | None = None) -> tuple[float, float]:
    """Wall and CPU time of ``command`` in a new process, in seconds.

    The CPU time counts the process and the descendants it waited for (a local cluster's
    worker processes).
    """
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=cwd)
    return time.perf_counter() - t0, _children_cpu() - c0


def interleaved(
    case: Sequence[str], baseline: Sequence[str], repeat: int, cwd: Path | None = None
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(wall, CPU) times of ``case`` and ``baseline``, run alternately ``repeat`` times each."""
    timed(case, cwd), timed(baseline, cwd)  # warm the file-system cache
    times: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    for _ in range(max(repeat, MIN_REPEAT)):
        times[0].append(timed(case, cwd))
        times[1].append(timed(baseline, cwd))
    return times[0], times[1]


def _cpu(case: Sequence[float], baseline: Sequence[float] = ()) -> str:
    """Median CPU seconds of the case, and of the baseline if any."""
    return " / ".join(f"{statistics.median(t):.3f}" for t in (case, baseline) if t)


def _spread(case: Sequence[float], baseline: Sequence[float] = ()) -> str:
    """``min-max`` of the case's times, and of the baseline's if any."""
    spreads = [f"{min(t):.2f}-{max(t):.2f}" for t in (case, baseline) if t]
    return " / ".join(spreads)


def ratio_row(
    figure: str,
    case: list[str],
    baseline: list[str],
    target: float,
    repeat: int,
    cwd: Path | None = None,
) -> Row:
    cases, bases = interleaved(case, baseline, repeat, cwd)
    walls, base_walls = [w for w, _ in cases], [w for w, _ in bases]
    c, b = statistics.median(walls), statistics.median(base_walls)
    return Row(
        figure,
        c,
        b,
        f"{c / b:.2f}x",
        f"<= {target}x",
        _spread(walls, base_walls),
        _cpu([u for _, u in cases], [u for _, u in bases]),
    )


def row_import(repeat: int) -> Row:
    return ratio_row(
        "`import lazyraster` vs `import xarray`",
        [PYTHON, "-c", "import lazyraster"],
        [PYTHON, "-c", "import xarray"],
        1.2,
        repeat,
    )


def row_import_accessor(repeat: int) -> Row:
    return ratio_row(
        "`import lazyraster, xarray` + `xarray.Dataset.geo` vs `import xarray`",
        [PYTHON, "-c", "import lazyraster, xarray; xarray.Dataset.geo"],
        [PYTHON, "-c", "import xarray"],
        1.2,
        repeat,
    )


def row_help(repeat: int) -> Row:
    return ratio_row(
        '`lazyraster --help` vs `python -c "import click"`',
        [LAZYRASTER, "--help"],
        [PYTHON, "-c", "import click"],
        1.5,
        repeat,
    )


#: Set-up (not timed) and the call timed twice, per first-call figure; the reference runs
#: first, so that each of ours is also quoted above it.
FIRST_CALLS = {
    "plain `numba.njit(cache=True)` kernel via xarray + dask (reference)": (
        f"import sys\nsys.path.insert(0, {str(HERE)!r})\nimport dask.array, xarray\n"
        "import _reference_kernel as k\n"
        "a = xarray.DataArray(dask.array.ones((240, 240), chunks=120), dims=('y', 'x'))",
        "k.apply(a, a * 2).compute()",
    ),
    "ndvi": (
        f"import lazyraster\nds = lazyraster.load({str(SAMPLE)!r})",
        "ds.geo.ndvi().compute()",
    ),
    "focal_mean": (
        f"import lazyraster\nndvi = lazyraster.load({str(SAMPLE)!r}).geo.ndvi().persist()",
        "ndvi.geo.focal_mean(size=3).compute()",
    ),
    "spring_index": (
        "import lazyraster\nfrom lazyraster.testing import daymet_like\nds = daymet_like(2021)",
        "ds.geo.spring_index_dataset().compute()",
    ),
}

#: The reference row's median, once measured.
REFERENCE: list[float] = []


def first_minus_second(setup: str, call: str) -> tuple[float, float]:
    """In a fresh process: (first call) - (second call) of ``call``, after ``setup``.

    Wall time and CPU time (of the whole process, every thread).
    """
    stamp = "time.perf_counter(), time.process_time()"
    code = (
        f"{setup}\nimport time\nt0 = {stamp}\n{call}\nt1 = {stamp}\n{call}\nt2 = {stamp}\n"
        "print(*((b - a) - (c - b) for a, b, c in zip(t0, t1, t2)))"
    )
    done = subprocess.run([PYTHON, "-c", code], check=True, capture_output=True, text=True)
    wall, cpu = done.stdout.split()[-2:]
    return float(wall), float(cpu)


def first_call_row(name: str) -> Callable[[int], Row]:
    def row(repeat: int) -> Row:
        setup, call = FIRST_CALLS[name]
        first_minus_second(setup, call)  # fills the numba cache if it is cold
        diffs = [first_minus_second(setup, call) for _ in range(max(repeat, MIN_REPEAT))]
        walls = [w for w, _ in diffs]
        median = statistics.median(walls)
        if name.endswith("(reference)"):
            REFERENCE.append(median)
            result, target = f"{median:.2f} s", "-"
        else:
            above = f", {median - REFERENCE[-1]:+.2f} s vs reference" if REFERENCE else ""
            result, target = f"{median:.2f} s{above}", "<= 0.3 s"
        return Row(
            f"first - second call: {name}",
            median,
            None,
            result,
            target,
            _spread(walls),
            _cpu([u for _, u in diffs]),
        )

    row.__name__ = f"row_first_call_{name}"
    return row


def run_row(kind: str) -> Callable[[int], Row]:
    def row(repeat: int) -> Row:
        work = Path(tempfile.mkdtemp(prefix="bench_startup-"))
        try:
            shutil.copytree(ROOT / "catalogs", work / "catalogs")
            spec = [LAZYRASTER, "run", "catalogs/sample/ndvi.yaml", "--overwrite", "--cluster"]
            return ratio_row(
                f"sample `lazyraster run` on `--cluster {kind}` vs `threads`",
                [*spec, kind],
                [*spec, "threads"],
                2,
                repeat,
                cwd=work,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)

    row.__name__ = f"row_run_{kind}"
    return row


#: The rows, in order. Append new ones here.
ROWS: list[Callable[[int], Row]] = [
    row_import,
    row_import_accessor,
    row_help,
    *(first_call_row(name) for name in FIRST_CALLS),
    run_row("processes"),
    run_row("local"),
]


def report(repeat: int = MIN_REPEAT) -> str:
    """Measure every row of :data:`ROWS`; a markdown table."""
    lines = [
        "| figure | median s | baseline median s | result | target | range s (case / baseline) "
        "| CPU median s (case / baseline) |",
        "| --- | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for row_func in ROWS:
        row = row_func(repeat)
        print(f"{row.figure}: {row.result} ({row.spread})", file=sys.stderr, flush=True)
        base = f"{row.baseline:.3f}" if row.baseline is not None else "-"
        lines.append(
            f"| {row.figure} | {row.case:.3f} | {base} | {row.result} | {row.target} "
            f"| {row.spread} | {row.cpu} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
