"""Hypothesis strategies the tests share: seeds, dask chunkings, rasters, index formulas.

Test files import them from here (``from tests.strategies import chunking``) rather than
defining their own; the ranges are those the tests had, so no test searches less.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import strategies as st

from lazyraster.testing import synthetic_raster

#: Seeds of :func:`lazyraster.testing.synthetic_raster` and numpy generators.
seeds = st.integers(0, 2**16)


@st.composite
def chunking(draw: st.DrawFn, n: int, max_cuts: int = 5) -> tuple[int, ...]:
    """Dask chunk sizes along an axis of length ``n``: up to ``max_cuts`` distinct cuts.

    Any chunking of ``n`` with at most ``max_cuts + 1`` chunks, uneven ones included;
    one chunk when ``n == 1``.
    """
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=max_cuts))) if n > 1 else []
    return tuple(b - a for a, b in itertools.pairwise([0, *cuts, n]))


@st.composite
def chunked_plane(
    draw: st.DrawFn,
) -> tuple[tuple[int, int], tuple[tuple[int, ...], tuple[int, ...]], int, float]:
    """``((ny, nx), (y chunks, x chunks), seed, nan_fraction)`` of a plane up to 26 x 26."""
    ny = draw(st.integers(1, 26))
    nx = draw(st.integers(1, 26))
    seed = draw(seeds)
    nan_fraction = draw(st.sampled_from([0.0, 0.1, 0.5, 0.95]))
    return (ny, nx), (draw(chunking(ny)), draw(chunking(nx))), seed, nan_fraction


@st.composite
def chunked_stack(draw: st.DrawFn) -> object:
    """A dask (band, y, x) raster with random size (1-3 x 2-70 x 2-70), dtype and chunks."""
    nb, ny, nx = draw(st.integers(1, 3)), draw(st.integers(2, 70)), draw(st.integers(2, 70))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.uint8, np.int16]))
    values = np.random.default_rng(nb * ny * nx).random((nb, ny, nx)) * 100
    da = synthetic_raster((ny, nx), name="value").expand_dims(band=nb)
    da = da.copy(data=values.astype(dtype))
    chunks = {"band": chunking(nb, 3), "y": chunking(ny, 3), "x": chunking(nx, 3)}
    return da.chunk({dim: draw(strategy) for dim, strategy in chunks.items()})


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(st.sampled_from(["+", "-", "*"]), children, children).map(
        lambda t: f"({t[1]} {t[0]} {t[2]})"
    )
    calls = st.tuples(st.sampled_from(["min", "max"]), children, children).map(
        lambda t: f"{t[0]}({t[1]}, {t[2]})"
    )
    unary = children.map(lambda c: f"(-{c})") | children.map(lambda c: f"abs({c})")
    return binary | calls | unary


#: Formulas over bands ``N``, ``R``, ``G`` and the integers -2..2 with ``+ - *``, unary
#: minus, ``abs``, ``min`` and ``max``, up to 12 leaves: exact in float32 on small integers.
index_formulas = st.recursive(
    st.one_of(st.sampled_from(["N", "R", "G"]), st.integers(-2, 2).map(lambda i: f"({i})")),
    _combine,
    max_leaves=12,
)
