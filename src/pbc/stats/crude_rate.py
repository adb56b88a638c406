"""Crude rate x/n × multiplier with PHE confidence limits.

Method: PHEindicatormethods ``phe_rate`` / ``calculate_rate`` (``R/Rates.R``): exact Poisson
limits (Garwood, §4.2) when x < 10, Byar's method (§4.1) otherwise, divided by n and scaled
by the multiplier. pbc docs/sources.md §4.5. The numerator may exceed the denominator (a rate).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pbc.stats._common import (
    FloatOrArray,
    as_float,
    check_non_negative,
    check_positive,
    finish,
    is_scalar,
    normalise_confidence,
)
from pbc.stats.exact_poisson import poisson_ci

EXACT = "Exact"
BYARS = "Byars"


class RateResult(NamedTuple):
    """A rate with its confidence limits and the method used for each (``Exact``/``Byars``).

    ``method`` is a string for scalar input, otherwise an object array (None where x is NaN).
    """

    value: FloatOrArray
    lower: FloatOrArray
    upper: FloatOrArray
    method: str | NDArray[np.object_] | None


def crude_rate(
    x: ArrayLike, n: ArrayLike, multiplier: float = 100_000, confidence: float = 0.95
) -> RateResult:
    """Crude rate ``x / n × multiplier`` with exact (x < 10) or Byar's (x ≥ 10) limits.

    Args:
        x: event counts (≥ 0).
        n: populations or person-time (> 0).
        multiplier: e.g. 100_000 for a rate per 100,000, 100 for a percentage.
        confidence: 0.95 or 95 for 95%; allowed 0.9-1 (or 90-100).
    """
    c = normalise_confidence(confidence)
    xa, na = as_float(x), as_float(n)
    check_non_negative("x", xa)
    check_positive("n", na)
    xa, na = np.broadcast_arrays(xa, na)
    lo, hi = poisson_ci(xa, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = xa / na * multiplier
        lower = lo / na * multiplier
        upper = hi / na * multiplier
    method = np.where(xa < 10, EXACT, BYARS).astype(object)
    method[np.isnan(xa)] = None
    scalar = is_scalar(x, n)
    return RateResult(
        finish(value, scalar),
        finish(lower, scalar),
        finish(upper, scalar),
        method.reshape(()).item() if scalar else method,
    )
