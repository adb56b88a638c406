"""Funnel plot control limits for proportions (PHE/Fingertips method).

Method: PHEindicatormethods ``sigma_adjustment``, ``calculate_funnel_limits`` and
``assign_funnel_significance`` (``R/Funnels.R``), following the PHE Fingertips technical
guidance. The limits at population N are the proportions whose Wilson score interval has
the baseline p̄ = Σx/Σn as an end point ("inverse Wilson"), with z = Φ⁻¹(0.975) for the
95% (2σ) limits and Φ⁻¹(0.999) for the 99.8% (3σ) limits. pbc docs/sources.md §4.8::

    A = p̄(N/z² + 1)
    B = √((−8p̄(N/z²+1))² − 64(1/z² + 1/N)·p̄·(N(p̄(N/z²+2) − 1) + z²(p̄ − 1)))
    limit = ((A ∓ B/8) / (1/z² + 1/N)) / N × multiplier, clamped to [0, multiplier]

Optional Spiegelhalter overdispersion adjustment on the arcsine-square-root scale
(:mod:`pbc.stats.overdispersion`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from pbc.stats._common import Z95, Z998, FloatArray, as_float, check_non_negative, check_positive
from pbc.stats.overdispersion import spiegelhalter_tau2

HIGH_001 = "High (0.001)"
HIGH_025 = "High (0.025)"
LOW_001 = "Low (0.001)"
LOW_025 = "Low (0.025)"
NOT_SIGNIFICANT = "Not significant"
SIGNIFICANCE_LEVELS = (HIGH_001, HIGH_025, LOW_001, LOW_025, NOT_SIGNIFICANT)
LIMIT_COLUMNS = ("lower_95", "upper_95", "lower_998", "upper_998")


def inverse_wilson(z: float, n: FloatArray, baseline: float | FloatArray, side: str) -> FloatArray:
    """The proportion (fraction, unclamped) at population n whose Wilson limit is the baseline.

    ``side`` is "low" or "high". PHE's ``sigma_adjustment`` with the multiplier left at 1.
    """
    p = baseline
    z2 = z**2
    with np.errstate(invalid="ignore", divide="ignore"):
        first = p * (n / z2 + 1)
        adj = np.sqrt(
            (-8 * p * (n / z2 + 1)) ** 2
            - 64 * (1 / z2 + 1 / n) * p * (n * (p * (n / z2 + 2) - 1) + z2 * (p - 1))
        )
        last = 1 / z2 + 1 / n
        sign = -1 if side == "low" else 1
        return np.asarray((first + sign * adj / 8) / last / n, dtype=np.float64)


def classify(
    value: FloatArray,
    lower_95: FloatArray,
    upper_95: FloatArray,
    lower_998: FloatArray,
    upper_998: FloatArray,
) -> np.ndarray:
    """PHE significance labels, checking 99.8% before 95% and low before high (strict)."""
    label = np.select(
        [value < lower_998, value < lower_95, value > upper_998, value > upper_95],
        [LOW_001, LOW_025, HIGH_001, HIGH_025],
        default=NOT_SIGNIFICANT,
    ).astype(object)
    label[np.isnan(value)] = None
    return label


def funnel_proportion_limits(
    baseline: float, n: ArrayLike, multiplier: float = 100
) -> pd.DataFrame:
    """95% and 99.8% funnel limits for a proportion at populations ``n``.

    Args:
        baseline: the baseline proportion p̄ as a fraction (e.g. Σx/Σn).
        n: populations at which to evaluate the limits (e.g. a plotting grid).
        multiplier: 100 for percentages.

    Returns:
        DataFrame with ``n``, ``baseline`` (× multiplier), ``lower_95``, ``upper_95``,
        ``lower_998``, ``upper_998``, clamped to [0, multiplier].
    """
    na = np.atleast_1d(as_float(n))
    check_positive("n", na)
    out = pd.DataFrame({"n": na, "baseline": baseline * multiplier})
    for name, z in (("95", Z95), ("998", Z998)):
        out[f"lower_{name}"] = np.clip(inverse_wilson(z, na, baseline, "low"), 0, 1) * multiplier
        out[f"upper_{name}"] = np.clip(inverse_wilson(z, na, baseline, "high"), 0, 1) * multiplier
    return out


def funnel_proportion(
    x: ArrayLike, n: ArrayLike, multiplier: float = 100, overdispersion: bool = False
) -> pd.DataFrame:
    """Funnel plot of proportions: baseline Σx/Σn, limits at each point's n, significance.

    Args:
        x: numerators (0 ≤ x ≤ n).
        n: denominators (> 0).
        multiplier: 100 for percentages.
        overdispersion: widen the limits by Spiegelhalter's τ² (arcsine-square-root scale);
            φ, τ² and k are then in ``result.attrs``.

    Returns:
        One row per point: ``x``, ``n``, ``value``, ``baseline``, ``lower_95``, ``upper_95``,
        ``lower_998``, ``upper_998``, ``significance`` (None where x or n is NaN).
    """
    xa = np.atleast_1d(as_float(x))
    na = np.atleast_1d(as_float(n))
    xa, na = np.broadcast_arrays(xa, na)
    check_non_negative("x", xa)
    check_positive("n", na)
    if np.any(xa > na):
        raise ValueError("numerators must be less than or equal to denominators for proportions")
    ok = ~np.isnan(xa) & ~np.isnan(na)
    baseline = float(xa[ok].sum() / na[ok].sum()) if ok.any() else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        value = xa / na
    limits: dict[str, FloatArray] = {}
    if overdispersion:
        target = np.arcsin(np.sqrt(baseline))
        s = 1 / (2 * np.sqrt(na))
        od = spiegelhalter_tau2((np.arcsin(np.sqrt(value)) - target) / s, s)
        for name, z in (("95", Z95), ("998", Z998)):
            half = z * np.sqrt(s**2 + od.tau2)
            limits[f"lower_{name}"] = np.sin(np.clip(target - half, 0, np.pi / 2)) ** 2
            limits[f"upper_{name}"] = np.sin(np.clip(target + half, 0, np.pi / 2)) ** 2
    else:
        for name, z in (("95", Z95), ("998", Z998)):
            limits[f"lower_{name}"] = inverse_wilson(z, na, baseline, "low")
            limits[f"upper_{name}"] = inverse_wilson(z, na, baseline, "high")
    significance = classify(value, *(limits[c] for c in LIMIT_COLUMNS))
    out = pd.DataFrame({"x": xa, "n": na, "value": value * multiplier,
                        "baseline": baseline * multiplier})
    for col in LIMIT_COLUMNS:
        out[col] = np.clip(limits[col], 0, 1) * multiplier
    out["significance"] = significance
    if overdispersion:
        out.attrs.update(phi=od.phi, tau2=od.tau2, k=od.k)
    return out
