"""Review of the lazy start-up: inputs its authors did not try.

Each check runs in a fresh interpreter, where ``import lazyraster`` is the first import.
"""

from __future__ import annotations

import subprocess
import sys

CLI = "from lazyraster.cli import main; main()"


def fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_accessor_registers_although_xarray_was_looked_up_before_its_import() -> None:
    # "is xarray installed?" checks (importlib.util.find_spec) ask the meta path finders
    # without importing; the hook must still run when xarray is imported later
    out = fresh(
        "import importlib.util, lazyraster\n"
        "assert importlib.util.find_spec('xarray') is not None\n"
        "import xarray as xr\n"
        "print(hasattr(xr.Dataset, 'geo'), hasattr(xr.DataArray, 'geo'))"
    )
    assert out.split() == ["True", "True"]


def test_warmup_with_a_dtype_it_cannot_prepare_fails_in_one_line() -> None:
    for dtype in ("foo", "complex128"):
        done = subprocess.run(
            [sys.executable, "-c", CLI, "warmup", "--dtype", dtype],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode != 0
        assert "Traceback" not in done.stderr, done.stderr
        assert f"{dtype!r}" in done.stderr and "float32" in done.stderr
