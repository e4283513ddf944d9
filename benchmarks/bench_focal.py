"""Focal mean 9 x 9 (NaN-aware): lazyraster against a running-sum kernel, scipy, xarray-spatial.

Two float32 bands, fixed seeds; dask cases use 2048 x 2048 chunks and the threaded
scheduler:

- ``scattered``: uniform values in [0, 1) with 20 % NaN scattered pixel by pixel (the
  input of earlier runs; the worst case for branchy NaN tests).
- ``realistic``: an NDVI-like field (sums of sinusoids at several scales plus pixel
  noise), a slanted nodata swath over one corner (a Sentinel-2 orbit edge) and 60 NaN
  cloud discs of 40 to 400 pixels radius.

Every peer computes the same statistic as ``focal_mean(size=9)``: the mean of the valid
pixels of each 9 x 9 window, outside the image counting as missing. Each is checked
against ours on the valid pixels (``allclose``, rtol and atol 1e-5) during the warm-up
round, so nobody wins by doing less:

- ``running-sum reference``: a plain numba kernel written here (float64 column sums and
  counts updated by one row in and one row out, a running sum along each row), on the
  NaN-padded numpy band in one thread, and on dask with ``map_overlap(boundary=nan)``.
  Ratios are to this reference on the same input and backend.
- ``scipy.ndimage normalised uniform_filter``: scipy's separable box filter of the values
  with NaN -> 0 divided by that of the valid mask (``mode="constant"``), NaN where the
  window holds no valid pixel; one thread.
- ``xarray-spatial focal.apply``: its documented focal statistic with a 9 x 9 kernel of
  ones; its default function is ``np.nanmean`` per window and ``map_overlap`` pads with
  NaN, so NaN pixels and the outside are ignored exactly as ours.
- ``naive: scipy.ndimage.convolve``: the course script's normalised kernel with
  ``mode="constant", cval=nan``; NaN spreads over every window it touches, so it is not
  the same statistic (not checked). Scattered input only.

Needs the ``bench`` extra (``pip install -e .[bench]``) for xarray-spatial.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import dask.array as dsa
import numba
import numpy as np
import scipy.ndimage as ndi
import xarray as xr
from xrspatial.convolution import custom_kernel
from xrspatial.focal import apply as xrs_apply

import lazyraster  # noqa: F401  (registers .geo)
from harness import Case

DEFAULT_SIZE = 10980
CHUNKS = 2048
SIZE = 9
R = SIZE // 2

#: Verdict of the check against ours, by case name (filled during the warm-up round).
AGREEMENT: dict[str, str] = {}
#: Process CPU time (all threads) of each timed call, by case name.
CPU: dict[str, list[float]] = {}


def scattered_band(size: int, seed: int = 0) -> np.ndarray:
    """``size`` x ``size`` float32, uniform in [0, 1), 20 % NaN scattered."""
    rng = np.random.default_rng(seed)
    band = rng.random((size, size), dtype=np.float32)
    band[rng.random((size, size), dtype=np.float32) < 0.2] = np.nan
    return band


def realistic_band(size: int, seed: int = 1) -> np.ndarray:
    """``size`` x ``size`` float32 NDVI-like field with a nodata swath and NaN clouds."""
    rng = np.random.default_rng(seed)
    t = np.arange(size, dtype=np.float32) / size
    band = np.full((size, size), 0.45, dtype=np.float32)
    for period, amp in ((1.0, 0.2), (0.13, 0.1), (0.021, 0.05), (0.004, 0.03)):
        ph = rng.random(4) * 2 * np.pi
        band += amp * np.sin(2 * np.pi * t / period + ph[0]).astype(np.float32)[:, None]
        band += amp * np.sin(2 * np.pi * t / (1.3 * period) + ph[1]).astype(np.float32)[None, :]
    band += np.float32(0.03) * rng.standard_normal((size, size), dtype=np.float32)
    rows = np.arange(size)[:, None]
    cols = np.arange(size)[None, :]
    band[cols > 1.4 * size - 0.8 * rows] = np.nan  # slanted orbit edge over one corner
    for _ in range(60):
        y, x = rng.integers(0, size, 2)
        rad = int(rng.integers(40, 401) * size / DEFAULT_SIZE) + 1
        ys, xs = slice(max(y - rad, 0), y + rad), slice(max(x - rad, 0), x + rad)
        disc = (rows[ys] - y) ** 2 + (cols[:, xs] - x) ** 2 <= rad * rad
        band[ys, xs][disc] = np.nan
    return band


@numba.njit(nogil=True, cache=True)
def running_sum_mean(p, r, out):  # pragma: no cover - compiled
    """NaN-aware box mean of the NaN-padded ``p`` into ``out``: plain running sums."""
    hp, wp = p.shape
    h, w = hp - 2 * r, wp - 2 * r
    cs = np.zeros(wp)
    cc = np.zeros(wp, np.int64)
    for i in range(2 * r + 1):
        for j in range(wp):
            v = p[i, j]
            if v == v:
                cs[j] += v
                cc[j] += 1
    for i in range(h):
        if i > 0:
            for j in range(wp):
                v = p[i - 1, j]
                if v == v:
                    cs[j] -= v
                    cc[j] -= 1
                v = p[i + 2 * r, j]
                if v == v:
                    cs[j] += v
                    cc[j] += 1
        s = 0.0
        c = 0
        for j in range(2 * r):
            s += cs[j]
            c += cc[j]
        for j in range(w):
            s += cs[j + 2 * r]
            c += cc[j + 2 * r]
            out[i, j] = s / c if c > 0 else np.nan
            s -= cs[j]
            c -= cc[j]


def _running_sum_block(block: np.ndarray) -> np.ndarray:
    out = np.empty((block.shape[0] - 2 * R, block.shape[1] - 2 * R), np.float32)
    running_sum_mean(block, R, out)
    return out


def _scipy_normalised(band: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(band)
    num = ndi.uniform_filter(np.where(valid, band, 0), SIZE, mode="constant", cval=0.0)
    den = ndi.uniform_filter(valid.astype(np.float32), SIZE, mode="constant", cval=0.0)
    empty = den < 0.5 / SIZE**2  # no valid pixel (den is a multiple of 1/81 up to rounding)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(empty, np.float32(np.nan), num / den)


def _recorded(name: str, func: Callable[[], object], check=None) -> Callable[[], None]:
    """``func`` with its process CPU time recorded; its first (warm-up) result checked.

    ``check(result)`` returns the verdict against ours, stored in :data:`AGREEMENT`.
    """

    def run() -> None:
        c0 = time.process_time()
        result = func()
        cpu = time.process_time() - c0
        if name in AGREEMENT:
            CPU.setdefault(name, []).append(cpu)
        else:
            AGREEMENT[name] = check(np.asarray(result)) if check else "-"

    return run


def _agreement(band: np.ndarray, ours: np.ndarray) -> Callable[[np.ndarray], str]:
    valid = ~np.isnan(band)

    def check(result: np.ndarray) -> str:
        ok = np.allclose(result[valid], ours[valid], rtol=1e-5, atol=1e-5)
        err = float(np.nanmax(np.abs(result[valid] - ours[valid])))
        return f"yes ({err:.1e})" if ok else f"NO ({err:.1e})"

    return check


def _cases(label: str, band: np.ndarray, *, baseline: bool, extra: bool) -> list[Case]:
    eager = xr.DataArray(band, dims=("y", "x"))
    lazy = eager.chunk({"y": CHUNKS, "x": CHUNKS})
    ours = eager.geo.focal_mean(size=SIZE).values
    kernel = custom_kernel(np.ones((SIZE, SIZE)))

    def ref_numpy() -> np.ndarray:
        out = np.empty(band.shape, np.float32)
        running_sum_mean(np.pad(band, R, constant_values=np.nan), R, out)
        return out

    def ref_dask() -> np.ndarray:
        data = lazy.data  # the dask array every dask case gets
        return dsa.map_overlap(
            _running_sum_block,
            data,
            depth=R,
            boundary=np.nan,
            trim=False,
            chunks=data.chunks,
            dtype=np.float32,
            meta=np.array((), np.float32),
        ).compute()

    peers = {
        "running-sum reference (numpy, 1 thread)": ref_numpy,
        "running-sum reference (dask)": ref_dask,
        "scipy.ndimage normalised uniform_filter (numpy, 1 thread)": lambda: _scipy_normalised(
            band
        ),
        "xarray-spatial focal.apply (dask)": lambda: xrs_apply(lazy, kernel).compute(),
        "lazyraster focal_mean (numpy, 1 thread)": lambda: eager.geo.focal_mean(size=SIZE),
        "lazyraster focal_mean (dask)": lambda: lazy.geo.focal_mean(size=SIZE).compute(),
    }
    check = _agreement(band, ours)
    cases = [
        Case(
            f"[{label}] {name}",
            _recorded(f"[{label}] {name}", func, check),
            baseline=baseline and name.startswith("running-sum reference (numpy"),
        )
        for name, func in peers.items()
    ]
    if extra:
        kernel9 = np.ones((SIZE, SIZE), dtype=np.float32) / SIZE**2
        more = {
            "naive: scipy.ndimage.convolve, NaN spreads (numpy, 1 thread)": lambda: ndi.convolve(
                band, kernel9, mode="constant", cval=np.nan
            ),
        }
        for n, shape in ((3, "square"), (31, "square"), (9, "circle")):
            more[f"lazyraster focal_mean {n}x{n} {shape} (dask)"] = lambda n=n, shape=shape: (
                lazy.geo.focal_mean(size=n, shape=shape).compute()
            )
        cases += [Case(f"[{label}] {k}", _recorded(f"[{label}] {k}", f)) for k, f in more.items()]
    return cases


def setup(size: int) -> list[Case]:
    return _cases("scattered", scattered_band(size), baseline=True, extra=True) + _cases(
        "realistic", realistic_band(size), baseline=False, extra=False
    )


def table(cases: list[Case]) -> str:
    """Wall median and range, CPU median, ratios to the running-sum reference, peak.

    The reference is the running-sum kernel on the same input and backend (numpy or
    dask). On a machine shared with other work the CPU time (all threads of the process)
    is the steadier of the two.
    """
    wall = {c.name: statistics.median(c.times) for c in cases}
    cpu = {c.name: statistics.median(CPU[c.name]) for c in cases}

    def reference(name: str) -> str:
        label = name.split("]")[0] + "]"
        backend = "(dask)" if name.endswith("(dask)") else "(numpy, 1 thread)"
        return f"{label} running-sum reference {backend}"

    rows = [
        "| case | wall median s (range) | wall / ref | CPU median s | CPU / ref | peak MiB "
        "| agrees with ours (max abs diff) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in cases:
        ref = reference(c.name)
        rows.append(
            f"| {c.name} | {wall[c.name]:.3f} ({min(c.times):.3f}-{max(c.times):.3f}) | "
            f"{wall[c.name] / wall[ref]:.2f}x | {cpu[c.name]:.3f} | "
            f"{cpu[c.name] / cpu[ref]:.2f}x | {max(c.peaks) / 2**20:.0f} | "
            f"{AGREEMENT.get(c.name, '-')} |"
        )
    return "\n".join(rows)
