"""Start-up costs, each measured in fresh processes beside its baseline.

- ``import lazyraster`` against ``import xarray`` (target: at most 1.2x), and the import
  with the accessor made usable (``import lazyraster, xarray; xarray.Dataset.geo``);
- ``lazyraster --help`` against ``python -c "import click"`` (target: at most 1.5x);
- the first call minus the second of ``ds.geo.ndvi().compute()`` on the bundled sample,
  ``focal_mean`` and ``spring_index`` (``lazyraster.testing.daymet_like``) in a fresh
  process with a warm numba cache (target: at most 0.3 s); a reference row shows what
  any numba + dask program pays on its first call (numba's start, dask's first compute
  importing distributed), which is no compilation.

- the sample ``lazyraster run`` spec (``catalogs/sample/ndvi.yaml``) on ``--cluster
  processes`` and ``--cluster local`` against ``--cluster threads`` (target: at most 2x),
  run from a copy of ``catalogs/`` in a temporary folder.

Every figure is the median of ``repeat`` (at least 5) fresh processes, the case and its
baseline interleaved, so a slow moment of the shared machine hits both alike.

Adding a row: write ``def row_x(repeat: int) -> Row`` and append it to :data:`ROWS`.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def timed(command: Sequence[str], cwd: Path | None = None) -> float:
    """Wall time of ``command`` in a new process, in seconds."""
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=cwd)
    return time.perf_counter() - t0


def interleaved(
    case: Sequence[str], baseline: Sequence[str], repeat: int, cwd: Path | None = None
) -> tuple[list[float], list[float]]:
    """Times of ``case`` and ``baseline``, run alternately ``repeat`` times each."""
    timed(case, cwd), timed(baseline, cwd)  # warm the file-system cache
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(max(repeat, MIN_REPEAT)):
        times[0].append(timed(case, cwd))
        times[1].append(timed(baseline, cwd))
    return times[0], times[1]


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
    c, b = statistics.median(cases), statistics.median(bases)
    return Row(figure, c, b, f"{c / b:.2f}x", f"<= {target}x", _spread(cases, bases))


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


#: Set-up (not timed) and the call timed twice, per first-call figure.
FIRST_CALLS = {
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
    "numba + dask start (reference)": (
        "import numpy as np, dask.array\nfrom lazyraster.focal._kernels import _has_inf\n"
        "x = dask.array.ones(4, chunks=2)",
        "_has_inf(np.zeros((2, 2), np.float32)); x.sum().compute()",
    ),
}


def first_minus_second(setup: str, call: str) -> float:
    """In a fresh process: (first call) - (second call) of ``call``, after ``setup``."""
    code = (
        f"{setup}\nimport time\nt0 = time.perf_counter()\n{call}\nt1 = time.perf_counter()\n"
        f"{call}\nt2 = time.perf_counter()\nprint((t1 - t0) - (t2 - t1))"
    )
    done = subprocess.run([PYTHON, "-c", code], check=True, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def first_call_row(name: str) -> Callable[[int], Row]:
    def row(repeat: int) -> Row:
        setup, call = FIRST_CALLS[name]
        first_minus_second(setup, call)  # fills the numba cache if it is cold
        diffs = [first_minus_second(setup, call) for _ in range(max(repeat, MIN_REPEAT))]
        median = statistics.median(diffs)
        reference = name.endswith("(reference)")
        return Row(
            f"first - second call: {name}",
            median,
            None,
            f"{median:.2f} s",
            "-" if reference else "<= 0.3 s",
            _spread(diffs),
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
        "| figure | median s | baseline median s | result | target | range s (case / baseline) |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row_func in ROWS:
        row = row_func(repeat)
        print(f"{row.figure}: {row.result} ({row.spread})", file=sys.stderr, flush=True)
        base = f"{row.baseline:.3f}" if row.baseline is not None else "-"
        lines.append(
            f"| {row.figure} | {row.case:.3f} | {base} | {row.result} | {row.target} "
            f"| {row.spread} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
