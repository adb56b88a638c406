"""Byar's approximation to the exact Poisson confidence interval for a count.

Method: Breslow NE, Day NE. *Statistical methods in cancer research, volume II: the design
and analysis of cohort studies*. Lyon: IARC; 1987. As implemented by PHEindicatormethods
(``R/utils.R`` ``byars_lower``/``byars_upper``). pbc docs/sources.md §4.1::

    lower = O (1 − 1/(9O) − z/(3√O))³          (NaN where negative, as PHE sets NA)
    upper = (O+1) (1 − 1/(9(O+1)) + z/(3√(O+1)))³

For O = 0 the lower formula is undefined; pbc returns 0 there (the natural lower bound).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from pbc.stats._common import (
    FloatArray,
    as_float,
    check_non_negative,
    finish,
    is_scalar,
    z_value,
)
from pbc.stats.intervals import Interval


def byars_lower(o: FloatArray, z: float) -> FloatArray:
    """Byar's lower limit for counts ``o`` at a given z; NaN where negative, 0 where o = 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = o * (1 - 1 / (9 * o) - z / (3 * np.sqrt(o))) ** 3
    lower = np.where(lower < 0, np.nan, lower)
    return np.asarray(np.where(o == 0, 0.0, lower), dtype=np.float64)


def byars_upper(o: FloatArray, z: float) -> FloatArray:
    """Byar's upper limit for counts ``o`` at a given z."""
    o1 = o + 1
    with np.errstate(invalid="ignore"):
        return np.asarray(o1 * (1 - 1 / (9 * o1) + z / (3 * np.sqrt(o1))) ** 3, dtype=np.float64)


def byars_ci(x: ArrayLike, confidence: float = 0.95) -> Interval:
    """Byar's confidence interval for Poisson counts ``x``.

    Args:
        x: observed counts (≥ 0).
        confidence: 0.95 or 95 for 95%; allowed 0.9-1 (or 90-100).

    Returns:
        ``Interval(lower, upper)`` on the count scale; the lower limit is NaN where Byar's
        formula goes negative (small counts at high confidence), as in PHEindicatormethods.
    """
    z = z_value(confidence)
    xa = as_float(x)
    check_non_negative("x", xa)
    scalar = is_scalar(x)
    return Interval(finish(byars_lower(xa, z), scalar), finish(byars_upper(xa, z), scalar))
