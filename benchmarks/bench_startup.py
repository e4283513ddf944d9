"""Start-up costs, each measured in fresh processes beside its baseline.

- ``import lazyraster`` against ``import xarray`` (target: at most 1.2x), and the import
  with the accessor made usable (``import lazyraster, xarray; xarray.Dataset.geo``);
- ``lazyraster --help`` against ``python -c "import click"`` (target: at most 1.5x);
- the first call minus the second of ``ds.geo.ndvi().compute()`` on the bundled sample,
  ``focal_mean`` and ``spring_index`` (``lazyraster.testing.daymet_like``) in a fresh
  process with a warm numba cache (target: at most 0.3 s); a reference row shows what
  any numba + dask program pays on its first call (numba's start, dask's first compute
  importing distributed), which is no compilation.

Every figure is the median of ``repeat`` (at least 5) fresh processes, the case and its
baseline interleaved, so a slow moment of the shared machine hits both alike.

Adding a row: write ``def row_x(repeat: int) -> Row`` and append it to :data:`ROWS`
(e.g. the sample ``lazyraster run`` spec on ``--cluster processes`` / ``local`` against
``threads``, timed with :func:`timed` around the command).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
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


def timed(command: Sequence[str]) -> float:
    """Wall time of ``command`` in a new process, in seconds."""
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - t0


def interleaved(case: Sequence[str], baseline: Sequence[str], repeat: int) -> tuple[float, float]:
    """Medians of ``case`` and ``baseline``, run alternately ``repeat`` times each."""
    timed(case), timed(baseline)  # warm the file-system cache
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(max(repeat, MIN_REPEAT)):
        times[0].append(timed(case))
        times[1].append(timed(baseline))
    return statistics.median(times[0]), statistics.median(times[1])


def ratio_row(figure: str, case: list[str], baseline: list[str], target: float, repeat: int) -> Row:
    c, b = interleaved(case, baseline, repeat)
    return Row(figure, c, b, f"{c / b:.2f}x", f"<= {target}x")


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
        "import numpy as np, dask.array\nfrom lazyraster.focal import _has_inf\n"
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
        )

    row.__name__ = f"row_first_call_{name}"
    return row


#: The rows, in order. Append new ones here.
ROWS: list[Callable[[int], Row]] = [
    row_import,
    row_import_accessor,
    row_help,
    *(first_call_row(name) for name in FIRST_CALLS),
]


def report(repeat: int = MIN_REPEAT) -> str:
    """Measure every row of :data:`ROWS`; a markdown table."""
    lines = [
        "| figure | median s | baseline median s | result | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row_func in ROWS:
        row = row_func(repeat)
        base = f"{row.baseline:.3f}" if row.baseline is not None else "-"
        lines.append(f"| {row.figure} | {row.case:.3f} | {base} | {row.result} | {row.target} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
