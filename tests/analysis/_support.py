"""Reading pictures back: a PNG's pixels, and where in it a panel's image lies.

The colours a test expects come from matplotlib's own colour maps applied by hand
(``colormaps[name]((value - vmin) / (vmax - vmin))``), not from the code under test.
"""

from __future__ import annotations

import io
import os

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.image import imread

#: Rounding to 8 bits per channel, and a little more for anti-aliased neighbours.
TOLERANCE = 1.5 / 255


def png_pixels(source: str | os.PathLike[str] | io.BytesIO) -> np.ndarray:
    """The RGB pixels of a PNG, rows top down, as floats in [0, 1]."""
    return imread(source)[..., :3]


def render(fig: Figure) -> np.ndarray:
    """``fig`` saved as PNG at its own dpi and read back."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    buffer.seek(0)
    return png_pixels(buffer)


def image_box(fig: Figure, panel: int = 0) -> tuple[float, float, float, float]:
    """Where panel ``panel``'s image lies in the PNG: (left, top, right, bottom) pixels.

    Read from the image artist's extent on the canvas after the figure was saved
    (display coordinates count up from the bottom; PNG rows count down from the top).
    """
    height = fig.bbox.height
    box = fig.axes[panel].images[0].get_window_extent()
    return box.x0, height - box.y1, box.x1, height - box.y0


def pixel(img: np.ndarray, box: tuple[float, float, float, float], fx: float, fy: float):
    """The PNG's colour at fraction ``fx`` from the image's left and ``fy`` from its top."""
    left, top, right, bottom = box
    col = int(left + fx * (right - left))
    row = int(top + fy * (bottom - top))
    return img[row, col]


def expected(cmap: str, value: float, vmin: float, vmax: float) -> np.ndarray:
    """The RGB of ``value`` on ``cmap`` between ``vmin`` and ``vmax``, by hand."""
    return np.asarray(colormaps[cmap](float(np.clip((value - vmin) / (vmax - vmin), 0, 1))))[:3]


def assert_colour(actual: np.ndarray, wanted: np.ndarray, what: str = "") -> None:
    assert np.abs(actual - wanted).max() <= TOLERANCE, f"{what}: {actual} != {wanted}"
