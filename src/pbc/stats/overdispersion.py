"""Spiegelhalter overdispersion adjustment for funnel plots (random-effects τ²).

Method: Spiegelhalter DJ. Funnel plots for comparing institutional performance. Stat Med
2005;24:1185-1202; and Spiegelhalter DJ. Handling over-dispersion of performance indicators.
Qual Saf Health Care 2005;14:347-51. Transformations and winsorisation as in FunnelPlotR
(nhs-r-community/FunnelPlotR ``R/od_adjustment.R``). pbc docs/sources.md §4.8::

    ratio (SHMI method): Y = ln(O/E), s = 1/√E, target 0   → z = √E·ln(O/E)
    proportion:          Y = asin√(x/n), s = 1/(2√n), target = asin√(Σx/Σn)
    z = (Y − target)/s, winsorised at the 10th/90th percentiles (trim = 0.1)
    φ = (1/k) Σ z_w²
    τ² = 0 if kφ < k − 1, else max(0, (kφ − (k − 1)) / (Σw − Σw²/Σw)),  w = 1/s²
    limits: target ± z_α √(s² + τ²), back-transformed

Units with O = 0 have z = −∞ on the log scale; winsorising pulls them in to the 10th
percentile like any other extreme unit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from pbc.stats._common import as_float

TRIM = 0.1


class Overdispersion(NamedTuple):
    """The dispersion ratio φ, the between-unit variance τ² and the number of units k."""

    phi: float
    tau2: float
    k: int


def winsorise(z: ArrayLike, trim: float = TRIM) -> np.ndarray:
    """Clip z to its ``trim`` and ``1 − trim`` quantiles (linear interpolation); NaN kept."""
    za = as_float(z)
    ok = ~np.isnan(za)
    if not ok.any():
        return za
    finite = za[ok & np.isfinite(za)]
    if finite.size == 0:
        return np.where(ok, np.nan, za)
    # infinities (O = 0 on the log scale) are placed just beyond the finite range so the
    # quantiles stay finite; they are clipped to the quantile like any extreme value
    pad = np.where(za == -np.inf, finite.min() - 1, np.where(za == np.inf, finite.max() + 1, za))
    lo, hi = np.quantile(pad[ok], [trim, 1 - trim])
    return np.where(ok, np.clip(pad, lo, hi), np.nan)


def spiegelhalter_tau2(z: ArrayLike, s: ArrayLike, trim: float = TRIM) -> Overdispersion:
    """Overdispersion φ and τ² from units' z-scores and standard errors (NaN units skipped).

    Args:
        z: z-scores ``(Y − target)/s`` on the transformed scale.
        s: standard errors on that scale (``w = 1/s²``).
        trim: winsorising fraction at each end (FunnelPlotR default 0.1).
    """
    za, sa = np.broadcast_arrays(as_float(z), as_float(s))
    ok = ~np.isnan(za) & ~np.isnan(sa) & (sa > 0)
    k = int(ok.sum())
    if k < 2:
        return Overdispersion(np.nan, np.nan, k)
    zw = winsorise(za[ok], trim)
    phi = float(np.mean(zw**2))
    w = 1 / sa[ok] ** 2
    if k * phi < k - 1:
        return Overdispersion(phi, 0.0, k)
    tau2 = max(0.0, float((k * phi - (k - 1)) / (w.sum() - (w**2).sum() / w.sum())))
    return Overdispersion(phi, tau2, k)
