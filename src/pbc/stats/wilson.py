"""Wilson score confidence interval for a proportion x/n.

Method: Wilson EB. Probable inference, the law of succession, and statistical inference.
J Am Stat Assoc 1927;22:209-12; as given by Newcombe RG, Altman DG, *Statistics with
confidence* (2nd edn, 2000) pp 46-48, and implemented by PHEindicatormethods
(``R/utils.R`` ``wilson_lower``/``wilson_upper``). pbc docs/sources.md §4.3::

    lower/upper = (2x + z² ∓ z·√(z² + 4x(1 − x/n))) / (2(n + z²)),  z = Φ⁻¹(c + (1 − c)/2)

At confidence 1 the interval is [0, 1].
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
    normalise_confidence,
    z_value,
)
from pbc.stats.intervals import Interval


def wilson_limits(x: FloatArray, n: FloatArray, z: float) -> tuple[FloatArray, FloatArray]:
    """Wilson lower and upper limits for arrays x, n at a given z (no validation)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        root = z * np.sqrt(z**2 + 4 * x * (1 - x / n))
        denom = 2 * (n + z**2)
        lower = (2 * x + z**2 - root) / denom
        upper = (2 * x + z**2 + root) / denom
    return lower, upper


def wilson_ci(x: ArrayLike, n: ArrayLike, confidence: float = 0.95) -> Interval:
    """Wilson score interval for the proportion ``x / n`` (as a fraction, not a percentage).

    Args:
        x: numbers of cases meeting the condition (0 ≤ x ≤ n; need not be whole).
        n: sample sizes (> 0).
        confidence: 0.95 or 95 for 95%; allowed 0.9-1 (or 90-100).

    Returns:
        ``Interval(lower, upper)``; floats when x and n are scalars. NaN inputs give NaN.

    Raises:
        ValueError: negative x or n, x > n, or confidence out of range.
    """
    c = normalise_confidence(confidence)
    xa, na = as_float(x), as_float(n)
    check_non_negative("x", xa)
    check_non_negative("n", na)
    if np.any(xa > na):
        raise ValueError("x must be less than or equal to n for a Wilson score interval")
    xa, na = np.broadcast_arrays(xa, na)
    scalar = is_scalar(x, n)
    if c == 1:
        nan = np.isnan(xa) | np.isnan(na)
        lower = np.where(nan, np.nan, 0.0)
        upper = np.where(nan, np.nan, 1.0)
    else:
        lower, upper = wilson_limits(xa, na, z_value(c))
    return Interval(finish(lower, scalar), finish(upper, scalar))
