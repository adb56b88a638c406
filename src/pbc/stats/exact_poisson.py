"""Exact (Garwood) Poisson confidence interval for a count, via the chi-squared distribution.

Method: Garwood F. Fiducial limits for the Poisson distribution. Biometrika 1936;28:437-42;
as used by PHEindicatormethods for counts below 10 (``R/Rates.R``, ``R/ISRatio.R``).
pbc docs/sources.md §4.2::

    lower = χ²_{(1−c)/2}(2O) / 2 ;  upper = χ²_{c+(1−c)/2}(2O+2) / 2

For O = 0 the lower limit is 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import chi2

from pbc.stats._common import (
    FloatArray,
    as_float,
    check_non_negative,
    finish,
    is_scalar,
    normalise_confidence,
    z_value,
)
from pbc.stats.byars import byars_lower, byars_upper
from pbc.stats.intervals import Interval


def exact_lower(o: FloatArray, c: float) -> FloatArray:
    """Exact Poisson lower limit for counts ``o`` at normalised confidence ``c``."""
    with np.errstate(invalid="ignore"):
        lower = chi2.ppf((1 - c) / 2, 2 * np.where(o > 0, o, 1.0)) / 2
    return np.asarray(np.where(o == 0, 0.0, np.where(np.isnan(o), np.nan, lower)), np.float64)


def exact_upper(o: FloatArray, c: float) -> FloatArray:
    """Exact Poisson upper limit for counts ``o`` at normalised confidence ``c``."""
    with np.errstate(invalid="ignore"):
        return np.asarray(chi2.ppf(c + (1 - c) / 2, 2 * o + 2) / 2, dtype=np.float64)


def exact_poisson_ci(x: ArrayLike, confidence: float = 0.95) -> Interval:
    """Exact Poisson confidence interval for counts ``x``.

    Args:
        x: observed counts (≥ 0).
        confidence: 0.95 or 95 for 95%; allowed 0.9-1 (or 90-100).

    Returns:
        ``Interval(lower, upper)`` on the count scale.
    """
    c = normalise_confidence(confidence)
    xa = as_float(x)
    check_non_negative("x", xa)
    scalar = is_scalar(x)
    return Interval(finish(exact_lower(xa, c), scalar), finish(exact_upper(xa, c), scalar))


def poisson_ci(o: FloatArray, c: float) -> tuple[FloatArray, FloatArray]:
    """PHE's mixed rule: exact limits when O < 10, Byar's otherwise (count scale)."""
    z = z_value(c)
    small = o < 10
    lower = np.where(small, exact_lower(o, c), byars_lower(o, z))
    upper = np.where(small, exact_upper(o, c), byars_upper(o, z))
    return np.asarray(lower, np.float64), np.asarray(upper, np.float64)
