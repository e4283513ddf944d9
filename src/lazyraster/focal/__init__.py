"""Focal (moving-window) statistics over the last two dims, lazy on dask, exact at chunk edges.

Six statistics share one set of options:

- ``size``: odd window side in pixels (3, 5, 9, 31, ...).
- ``shape``: ``"square"`` (``size x size`` pixels) or ``"circle"`` (the pixels whose
  centre lies within ``r = size // 2`` pixels of the window centre, ``dy**2 + dx**2 <= r**2``;
  for ``size=3`` that is a plus sign of 5 pixels).
- ``min_count``: NaN-aware. The statistic is taken over the valid (non-NaN) pixels of the
  window; where fewer than ``min_count`` of them are valid, the result is NaN. The centre
  pixel itself may be NaN: with the default ``min_count=1`` it gets the statistic of its
  valid neighbours (gap filling). ``min_count="all"`` asks for every pixel of the window.
  Infinities are valid pixels and follow numpy's ``nansum``/``nanmean``/``nanstd``: a
  window holding ``+inf`` sums to ``+inf``, one holding both signs gives NaN, and the
  standard deviation of a window holding an infinity is NaN.
- ``edge``: what lies beyond the image border.

  ``"nodata"``
      Outside the image is missing, exactly like NaN: it adds nothing to the statistic and
      nothing to the valid count. Near the border the window simply has fewer valid pixels.
      With ``min_count="all"`` every window that touches the border or a NaN is NaN, which is
      the course script's ``scipy.ndimage.convolve(img, k / k.sum(), mode="constant",
      cval=np.nan)``.
  ``"reflect"``
      The image is mirrored about its edge with the edge pixel repeated
      (``d c b a | a b c d | d c b a``): scipy.ndimage's ``mode="reflect"``, numpy's
      ``np.pad(mode="symmetric")``, dask's ``boundary="reflect"``. (scipy's ``"mirror"``,
      which does not repeat the edge pixel, is not this mode.)
  ``"nearest"``
      The edge pixel is repeated (``a a a a | a b c d | d d d d``): scipy's ``"nearest"``.

The spatial dims are ``("y", "x")`` when the object has both, otherwise its last two dims;
every other dim (``time``, ``band``) is looped over. Datasets are filtered variable by
variable (variables with fewer than two dims are kept as they are). The result is float32
(lazy and computed), with the input's dims, coords (``spatial_ref`` included), name and
attributes.

On dask the same numba kernel runs on every block with an exact halo of ``r`` pixels
(``dask.array.map_overlap``), so a chunked result equals the single-chunk one at every
chunk edge (min, max and median exactly, sums to float rounding). Chunks thinner than
``r`` are merged with a neighbour first (so the result may have fewer chunks than the
input); an image thinner than ``r`` along an axis is processed as one chunk along that
axis. The kernels release
the GIL, so dask's threaded scheduler runs blocks in parallel; on numpy input the kernel
runs once over the whole image in the calling thread.

Cost per pixel: ``focal_sum``, ``focal_mean`` and ``focal_std`` on square windows use
running sums (float64, with a count of valid pixels) whose cost does not depend on
``size``: column sums take one row in and one row out per output row, with NaN tests as
selects rather than branches (the loop vectorises, and scattered NaN cost no mispredicted
branches), then a running sum slides along each row. The float64 sums keep the result
within one float32 ulp of the exact window statistic even for values far from zero
(``1e4 + 0.05``-sized variations over thousands of rows). A block holding an infinity is
detected in the same pass and redone with counts that keep infinities out of the sums
(numpy's rules above). On circles they add per-row spans from row prefix sums,
``O(size)`` per pixel.
``focal_min`` and ``focal_max`` are separable on squares (``O(size)``) and ``O(size**2)``
on circles; ``focal_median`` is a quickselect over the window, ``O(size**2)``.
"""

from lazyraster.focal._statistics import (
    focal_max,
    focal_mean,
    focal_median,
    focal_min,
    focal_std,
    focal_sum,
)

__all__ = [
    "KERNELS",
    "focal_max",
    "focal_mean",
    "focal_median",
    "focal_min",
    "focal_std",
    "focal_sum",
]

#: Modules of this package that define numba kernels (read by :func:`lazyraster.warmup`).
KERNELS = ("lazyraster.focal._kernels",)
