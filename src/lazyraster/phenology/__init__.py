"""The Extended Spring Indices (SI-x): first leaf and first bloom from daily temperatures.

The model of Schwartz et al. (2013) and Ault et al. (2015) turns daily minimum and
maximum temperature and day length into the day of year of first leaf and first
bloom of three indicator plants: lilac (*Syringa chinensis* 'Red Rothomagensis'),
Arnold Red honeysuckle (*Lonicera tatarica* 'Arnold Red') and Zabelii honeysuckle
(*Lonicera korolkowii* 'Zabelii'). One numba kernel walks each pixel's time series
once; :func:`xarray.apply_ufunc` applies it to numpy blocks or, lazily, to every
dask chunk.

The model, as computed here
---------------------------
All arithmetic is in degrees Fahrenheit, in float64.

- **Hourly temperatures.** For a day of length ``L`` hours (clipped to [1, 23]),
  hour 0 is Tmin; hours ``h = 1 .. floor(L)`` follow ``Tmin + (Tmax - Tmin) *
  sin(pi * h / (L + 4))``; from the sunset temperature ``Ts`` (the same sine at
  ``h = L``) the night hours ``n = 1, 2, ...`` decay as ``Ts - (Ts - Tmin) /
  ln(24 - L) * ln(n)``.
- **Growing degree hours** (GDH) of a day: the sum of ``T - 31`` over the 24 hours
  where ``T > 31`` F.
- **Leaf.** Day ``d`` (0 on 1 January) has predictors MDS0 = ``d``, DDE2 = GDH of
  the day and the two before, DD57 = GDH of the 5th, 6th and 7th days before, and
  SYNOP = the number of days so far with DDE2 >= 637. Before 1 January the two
  previous days count as 1 January itself and earlier days as zero. A plant leafs
  on the first day where ``a * MDS0 + b * SYNOP + c * DDE2 + e * DD57 >= 999.5``;
  the day of year reported is ``d + 1``, and ``d + 2`` for Arnold Red.
- **Bloom.** From each plant's own leaf day (day of year ``l``, index ``s = l - 1``)
  on, AGDH accumulates GDH (day ``s`` included) and the plant blooms on the first
  day where ``A * (d - s) + B * AGDH >= 999.5``; reported as ``d + 1``.
- **Average.** The rounded mean of the three plants, NaN unless all three exist.
- **Day length** comes from ``dayl`` or, given only latitude, from the SI-x formula:
  ``12.14 + 3.34 tan(lat) cos(0.0172 D - 1.95)`` below 40 degrees N and ``12.25 +
  (1.6164 + 1.7643 tan(lat)**2) cos(0.0172 D - 1.95)`` from 40 degrees N, with ``D``
  counted from 1 March (1 January is 307), clipped to [1, 23] hours.

Coefficients (Schwartz et al. 2013, as in the ML_SI toolbox):

=========  ======  ======  =====  =====  =======  =====
plant      a       b       c      e      A        B
=========  ======  ======  =====  =====  =======  =====
lilac      3.306   13.878  0.201  0.153  -23.934  0.116
arnoldred  4.266   20.899  0.000  0.248  -24.825  0.127
zabelii    2.802   21.433  0.266  0.000  -11.368  0.096
=========  ======  ======  =====  =====  =======  =====

Conventions
-----------
``"six"`` (default) is the model above and nothing else. ``"ml_si"`` reproduces the
published ML_SI toolbox (Ault et al. 2015) exactly, quirks included (its day length
always comes from latitude): days whose
Tmax is below 31 F are skipped (no lag shift, no synoptic count, no threshold
check); from the second day on, Tmax(t) is raised to Tmin(t-1) and then Tmin(t)
lowered to Tmax(t-1) (for bloom, afresh from each plant's leaf day); a Tmin of
exactly 0 F becomes 0.01 F, a Tmax equal to Tmin is raised by 0.01 F and a sunset
temperature at or below 0 F becomes 0.01 F; missing days are filled with the mean
of their 30-day block, and a year is NaN when a block has fewer than 20 valid
values or more than 10 values equal to zero (in F).

Time axis, years and missing days
---------------------------------
Days are placed by their calendar day of year (1 January = 1; 29 February is day
60 of a leap year, so 1 March is day 61 there, as in ML_SI and Daymet). Only days
1 to ``max_doy`` are read. A time axis spanning several years gives a ``year``
dimension, one model run per calendar year. A day that is absent from the time
axis, or NaN in any input, is *missing*: with ``convention="six"`` the model
stops at the first missing day, so events not reached before it are NaN (events
reached earlier are kept); with ``"ml_si"`` the 30-day block rule above applies.

References
----------
Schwartz, M. D., Ault, T. R. and Betancourt, J. L. (2013). Spring onset variations
and trends in the continental United States: past and regional assessment using
temperature-based indices. International Journal of Climatology 33: 2917-2922.

Ault, T. R., Schwartz, M. D., Zurita-Milla, R., Weltzin, J. F. and Betancourt, J. L.
(2015). Trends and natural variability of spring onset in the coterminous United
States as evaluated by a new gridded dataset of spring indices. Journal of Climate
28: 8363-8378.

Ault, T. R., Zurita-Milla, R. and Schwartz, M. D. (2015). A Matlab toolbox for
calculating spring indices from daily meteorological data. Computers & Geosciences
83: 46-53 (ML_SI).
"""

from lazyraster.phenology._dataset import spring_index_dataset
from lazyraster.phenology._kernels import PLANTS
from lazyraster.phenology._spring_index import spring_index

__all__ = ["KERNELS", "PLANTS", "spring_index", "spring_index_dataset"]

#: Modules of this package that define numba kernels (read by :func:`lazyraster.warmup`).
KERNELS = ("lazyraster.phenology._kernels",)
