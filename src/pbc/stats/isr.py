"""Indirectly standardised ratios (ISR/SMR) and rates.

Method: PHEindicatormethods ``calculate_ISRatio`` / ``calculate_ISRate`` (``R/ISRatio.R``,
``R/ISRate.R``; formerly ``phe_isr``/``phe_smr``). pbc docs/sources.md §4.7::

    E       = Σ_i n_i × (X_ref,i / N_ref,i)          (a missing reference count is 0)
    ISRatio = O / E × refvalue ;  limits = exact (O < 10) or Byar's (O ≥ 10) limits of O, / E
    ISRate  = O / E × (Σ X_ref / Σ N_ref) × multiplier, limits scaled the same way

Confidence limits for O: exact Poisson (Garwood 1936) below 10 events, Byar's method
(Breslow & Day 1987) otherwise.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from pbc.stats._common import (
    FloatArray,
    FloatOrArray,
    as_float,
    check_non_negative,
    check_positive,
    finish,
    normalise_confidence,
)
from pbc.stats.exact_poisson import poisson_ci


class ISRResult(NamedTuple):
    """Observed and expected counts, the ratio (or rate) and its confidence limits."""

    observed: FloatOrArray
    expected: FloatOrArray
    value: FloatOrArray
    lower: FloatOrArray
    upper: FloatOrArray


def _observed_expected(
    x: ArrayLike, n: ArrayLike, ref_x: ArrayLike, ref_n: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, bool]:
    na = as_float(n)
    xa = as_float(x)
    rx = as_float(ref_x)
    rn = as_float(ref_n)
    if na.ndim == 0:
        raise ValueError("n must be an array of band populations (bands on the last axis)")
    k = na.shape[-1]
    if rx.shape[-1:] != (k,) or rn.shape[-1:] != (k,):
        raise ValueError(f"ref_x and ref_n need {k} bands to match n; got {rx.shape}, {rn.shape}")
    check_non_negative("x", xa)
    check_non_negative("n", na)
    check_non_negative("ref_x", rx)
    check_positive("ref_n", rn)
    rx = np.where(np.isnan(rx), 0.0, rx)
    expected = (na * (rx / rn)).sum(axis=-1)
    # x is either band counts (same shape as n) or totals already (shape n.shape[:-1])
    observed = xa.sum(axis=-1) if xa.shape == na.shape else np.broadcast_to(xa, expected.shape)
    scalar = na.ndim == 1
    return np.asarray(observed, np.float64), expected, rx, rn, scalar


def isratio(
    x: ArrayLike,
    n: ArrayLike,
    ref_x: ArrayLike,
    ref_n: ArrayLike,
    confidence: float = 0.95,
    refvalue: float = 1,
) -> ISRResult:
    """Indirectly standardised ratio O/E × refvalue with exact/Byar limits.

    Args:
        x: observed counts per band (same shape as ``n``) or the total observed count(s)
            (shape ``n.shape[:-1]``).
        n: local populations per band, bands on the last axis; 2-D ``(areas, bands)`` works.
        ref_x, ref_n: reference counts and populations per band (length k).
        confidence: 0.95 or 95 for 95%; allowed 0.9-1 (or 90-100).
        refvalue: 1 for a ratio, 100 for an SMR expressed per 100.
    """
    c = normalise_confidence(confidence)
    observed, expected, _, _, scalar = _observed_expected(x, n, ref_x, ref_n)
    lo, hi = poisson_ci(observed, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = observed / expected * refvalue
        lower = lo / expected * refvalue
        upper = hi / expected * refvalue
    return ISRResult(
        finish(observed, scalar),
        finish(expected, scalar),
        finish(value, scalar),
        finish(lower, scalar),
        finish(upper, scalar),
    )


def israte(
    x: ArrayLike,
    n: ArrayLike,
    ref_x: ArrayLike,
    ref_n: ArrayLike,
    multiplier: float = 100_000,
    confidence: float = 0.95,
) -> ISRResult:
    """Indirectly standardised rate: the ISR × the reference crude rate × multiplier.

    Arguments as :func:`isratio`; ``multiplier`` e.g. 100_000 for a rate per 100,000.
    """
    c = normalise_confidence(confidence)
    observed, expected, rx, rn, scalar = _observed_expected(x, n, ref_x, ref_n)
    ref_rate = rx.sum(axis=-1) / rn.sum(axis=-1)
    lo, hi = poisson_ci(observed, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = ref_rate * multiplier / expected
        value = observed * factor
        lower = lo * factor
        upper = hi * factor
    return ISRResult(
        finish(observed, scalar),
        finish(expected, scalar),
        finish(value, scalar),
        finish(lower, scalar),
        finish(upper, scalar),
    )
