"""Funnel plot control limits for ratios (O/E), crude rates and DSRs (Poisson, PHE method).

Method: PHEindicatormethods ``calculate_funnel_limits``, ``assign_funnel_significance``,
``poisson_funnel``, ``poisson_cis`` and ``funnel_ratio_significance`` (``R/Funnels.R``,
``R/utils.R``), after the PHE Fingertips technical guidance. pbc docs/sources.md §4.8.

* **Limits.** For O observed events the 95% (99.8%) lower limit sits at the expected count
  E at which P(K ≤ O | E) = 0.025 (0.001), and the upper limit at the E at which
  P(K ≥ O | E) = 0.025 (0.001); the limit is O/E. :func:`poisson_funnel` finds E by PHE's
  bisection on v = E/(1 + O + E), halving the step until it is ≤ 1e-7, vectorised over all
  points at once. (These E are the exact Poisson limits of O, §4.2.) To place limits at a
  point's own expected count E, the same equations are solved for a continuous O by
  vectorised bisection on the regularised incomplete gamma function.
* **Ratio types.** ``"ratio"`` gives O/E, ``"count"`` subtracts 1 (PHE ratio_type "count"),
  ``"isr"`` multiplies by 100. Values are transformed the same way as limits.
* **Rates.** Crude rates: baseline r̄ = Σx/Σn, expected E = r̄·n, limits r̄·(O/E)·multiplier.
  DSRs: the denominator is derived as multiplier·O/DSR (undefined when O = 0), and points
  with O < 10 get "Not applicable for events less than 10 for dsrs".
* **Significance** as ``funnel_ratio_significance``: the 99.8% / 95% exact (O < 10) or
  Byar's (O ≥ 10) limits of O, divided by E, compared with 1 (rates: with r̄).

Optional Spiegelhalter overdispersion adjustment on the log scale (SHMI method,
:mod:`pbc.stats.overdispersion`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import gammainc, gammaincc

from pbc.stats._common import Z95, Z998, FloatArray, as_float, check_non_negative
from pbc.stats.exact_poisson import poisson_ci
from pbc.stats.funnel_proportion import (
    HIGH_001,
    HIGH_025,
    LIMIT_COLUMNS,
    LOW_001,
    LOW_025,
    NOT_SIGNIFICANT,
    classify,
)
from pbc.stats.overdispersion import spiegelhalter_tau2

RatioType = Literal["ratio", "count", "isr"]
DSR_NOT_APPLICABLE = "Not applicable for events less than 10 for dsrs"
TOLERANCE = 1e-7
_P = {"95": 0.025, "998": 0.001}


def _p_at_least(o: FloatArray, mean: FloatArray) -> FloatArray:
    """P(K ≥ o | mean) for Poisson K (1 when o ≤ 0); continuous in o."""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.where(o > 0, gammainc(np.maximum(o, 1e-300), mean), 1.0))


def _p_at_most(o: FloatArray, mean: FloatArray) -> FloatArray:
    """P(K ≤ o | mean) for Poisson K; continuous in o."""
    return np.asarray(gammaincc(o + 1, mean))


def poisson_funnel(observed: ArrayLike, p: float, side: Literal["low", "high"]) -> FloatArray:
    """The expected count E at which ``observed`` events sit on a Poisson funnel limit.

    ``side="low"``: E with P(K ≥ O | E) = p (O is then on the upper limit);
    ``side="high"``: E with P(K ≤ O | E) = p (O on the lower limit). PHE's bisection on
    v = E/(1 + O + E) with step halving to 1e-7, vectorised.
    """
    o = np.atleast_1d(as_float(observed))
    v = np.full(o.shape, 0.5)
    dv = 0.5
    while dv > TOLERANCE:
        dv /= 2
        mean = (1 + o) * v / (1 - v)
        if side == "low":
            step_down = _p_at_least(o, mean) > p
        elif side == "high":
            step_down = _p_at_most(o, mean) < p
        else:
            raise ValueError(f"side must be 'low' or 'high', got {side!r}")
        v = np.where(step_down, v - dv, v + dv)
    return np.asarray((1 + o) * v / (1 - v), dtype=np.float64)


def _observed_on_limit(
    expected: FloatArray, p: float, side: Literal["lower", "upper"]
) -> FloatArray:
    """The (continuous) observed count on the lower/upper limit at expected count E."""
    e = expected
    lo = np.zeros(e.shape)
    hi = e + 20 * np.sqrt(np.maximum(e, 0)) + 40
    nan = np.isnan(e) | (e <= 0)
    e_safe = np.where(nan, 1.0, e)
    for _ in range(200):  # stop when every bracket is within 1e-9 (relative above O = 1)
        if not np.any(hi - lo > TOLERANCE * 1e-2 * np.maximum(1.0, hi)):
            break
        mid = (lo + hi) / 2
        # P(K ≤ O | E) increases with O; P(K ≥ O | E) decreases with O
        too_high = (
            _p_at_most(mid, e_safe) > p if side == "lower" else _p_at_least(mid, e_safe) < p
        )
        hi = np.where(too_high, mid, hi)
        lo = np.where(too_high, lo, mid)
    result = (lo + hi) / 2
    if side == "lower":
        result = np.where(_p_at_most(np.zeros(e.shape), e_safe) >= p, 0.0, result)
    return np.asarray(np.where(nan, np.nan, result), dtype=np.float64)


def _ratio_limits(expected: FloatArray) -> dict[str, FloatArray]:
    """Ratio (O/E) funnel limits at expected counts E."""
    out: dict[str, FloatArray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, p in _P.items():
            out[f"lower_{name}"] = _observed_on_limit(expected, p, "lower") / expected
            out[f"upper_{name}"] = _observed_on_limit(expected, p, "upper") / expected
    return out


def _od_ratio_limits(observed: FloatArray, expected: FloatArray) -> tuple[dict[str, FloatArray],
                                                                        tuple[float, float, int]]:
    """Overdispersion-adjusted ratio limits exp(±z√(1/E + τ²)) (SHMI log method)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        s = 1 / np.sqrt(expected)
        z = np.log(observed / expected) / s
    od = spiegelhalter_tau2(z, s)
    out: dict[str, FloatArray] = {}
    for name, zq in (("95", Z95), ("998", Z998)):
        half = zq * np.sqrt(s**2 + od.tau2)
        out[f"lower_{name}"] = np.exp(-half)
        out[f"upper_{name}"] = np.exp(half)
    return out, (od.phi, od.tau2, od.k)


def _ratio_significance(observed: FloatArray, expected: FloatArray) -> np.ndarray:
    """PHE ``funnel_ratio_significance``: CI of O (exact < 10, Byar ≥ 10) / E against 1."""
    lo998, hi998 = poisson_ci(observed, 0.998)
    lo95, hi95 = poisson_ci(observed, 0.95)
    with np.errstate(invalid="ignore", divide="ignore"):
        label = np.select(
            [lo998 / expected > 1, lo95 / expected > 1, hi998 / expected < 1, hi95 / expected < 1],
            [HIGH_001, HIGH_025, LOW_001, LOW_025],
            default=NOT_SIGNIFICANT,
        ).astype(object)
    label[np.isnan(observed) | np.isnan(expected)] = None
    return label


def _transform(r: FloatArray, ratio_type: str) -> FloatArray:
    if ratio_type == "ratio":
        return r
    if ratio_type == "count":
        return r - 1
    if ratio_type == "isr":
        return r * 100
    raise ValueError(f"ratio_type must be 'ratio', 'count' or 'isr', got {ratio_type!r}")


def funnel_ratio_limits(
    observed_events: ArrayLike, ratio_type: RatioType = "ratio"
) -> pd.DataFrame:
    """PHE's ratio funnel table: for each observed count O, the E on each limit and O/E.

    Returns columns ``observed``, and for each of ``lower_95``, ``upper_95``, ``lower_998``,
    ``upper_998`` the expected count (``<limit>_expected``) and the limit (``<limit>``),
    transformed by ``ratio_type``. Plot the limit against its expected count.
    """
    o = np.atleast_1d(as_float(observed_events))
    check_non_negative("observed_events", o)
    out = pd.DataFrame({"observed": o})
    for name, p in _P.items():
        for col, side in ((f"lower_{name}", "high"), (f"upper_{name}", "low")):
            e = poisson_funnel(o, p, side)  # type: ignore[arg-type]
            out[f"{col}_expected"] = e
            with np.errstate(invalid="ignore", divide="ignore"):
                out[col] = _transform(o / e, ratio_type)
    return out


def funnel_rate_limits(
    events: ArrayLike, baseline_rate: float, multiplier: float = 100_000,
    years_of_data: float = 1,
) -> pd.DataFrame:
    """PHE's rate funnel table: for each event count, the population on each limit and rate.

    Args:
        events: event counts at which to evaluate the limits.
        baseline_rate: the baseline rate as a fraction (Σx/Σn, not × multiplier).
        multiplier: e.g. 100_000 for a rate per 100,000.
        years_of_data: the populations are divided by this ("population per year").

    Returns columns ``events``, ``baseline`` and for each limit ``<limit>_population``
    and ``<limit>`` (× multiplier).
    """
    o = np.atleast_1d(as_float(events))
    check_non_negative("events", o)
    out = pd.DataFrame({"events": o})
    for name, p in _P.items():
        for col, side in ((f"lower_{name}", "high"), (f"upper_{name}", "low")):
            pop = poisson_funnel(o, p, side) / baseline_rate  # type: ignore[arg-type]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[col] = o / pop * multiplier
            out[f"{col}_population"] = pop / years_of_data
    out["baseline"] = baseline_rate * multiplier
    return out


def _assemble(
    base: dict[str, FloatArray],
    value: FloatArray,
    limits: dict[str, FloatArray],
    significance: np.ndarray,
    od: tuple[float, float, int] | None,
) -> pd.DataFrame:
    out = pd.DataFrame(base)
    out["value"] = value
    for col in LIMIT_COLUMNS:
        out[col] = limits[col]
    out["significance"] = significance
    if od is not None:
        out.attrs.update(phi=od[0], tau2=od[1], k=od[2])
    return out


def funnel_ratio(
    observed: ArrayLike,
    expected: ArrayLike,
    ratio_type: RatioType = "ratio",
    overdispersion: bool = False,
) -> pd.DataFrame:
    """Funnel plot of ratios O/E (e.g. SMRs, ISRs): limits at each point's E, significance.

    Args:
        observed: observed counts O (≥ 0).
        expected: expected counts E (> 0).
        ratio_type: ``"ratio"`` (O/E), ``"count"`` (O/E − 1) or ``"isr"`` (O/E × 100);
            applied to the value and the limits.
        overdispersion: use Spiegelhalter-adjusted limits (log scale, SHMI method) and
            classify points against them; φ, τ², k are then in ``result.attrs``.

    Returns:
        One row per point: ``observed``, ``expected``, ``value``, ``lower_95``, ``upper_95``,
        ``lower_998``, ``upper_998``, ``significance``.
    """
    o = np.atleast_1d(as_float(observed))
    e = np.atleast_1d(as_float(expected))
    o, e = np.broadcast_arrays(o, e)
    check_non_negative("observed", o)
    if np.any(e <= 0):
        raise ValueError("expected counts must be greater than zero")
    _transform(np.zeros(1), ratio_type)  # validate early
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = o / e
    od = None
    if overdispersion:
        limits, od = _od_ratio_limits(o, e)
        significance = classify(ratio, *(limits[c] for c in LIMIT_COLUMNS))
    else:
        limits = _ratio_limits(e)
        significance = _ratio_significance(o, e)
    limits = {k: _transform(v, ratio_type) for k, v in limits.items()}
    return _assemble({"observed": o, "expected": e}, _transform(ratio, ratio_type), limits,
                     significance, od)


def _rate_funnel(
    o: FloatArray, n: FloatArray, multiplier: float, overdispersion: bool,
) -> tuple[float, dict[str, FloatArray], np.ndarray, tuple[float, float, int] | None]:
    ok = ~np.isnan(o) & ~np.isnan(n)
    baseline = float(o[ok].sum() / n[ok].sum()) if ok.any() else np.nan
    e = baseline * n
    od = None
    if overdispersion:
        limits, od = _od_ratio_limits(o, e)
        with np.errstate(invalid="ignore", divide="ignore"):
            significance = classify(o / e, *(limits[c] for c in LIMIT_COLUMNS))
    else:
        limits = _ratio_limits(e)
        significance = _ratio_significance(o, e)
    limits = {k: v * baseline * multiplier for k, v in limits.items()}
    return baseline, limits, significance, od


def funnel_rate(
    x: ArrayLike, n: ArrayLike, multiplier: float = 100_000, overdispersion: bool = False
) -> pd.DataFrame:
    """Funnel plot of crude rates x/n × multiplier: baseline Σx/Σn, Poisson limits at each n.

    Returns one row per point: ``x``, ``n``, ``value``, ``baseline``, ``lower_95``,
    ``upper_95``, ``lower_998``, ``upper_998``, ``significance``.
    """
    o = np.atleast_1d(as_float(x))
    na = np.atleast_1d(as_float(n))
    o, na = np.broadcast_arrays(o, na)
    check_non_negative("x", o)
    if np.any(na <= 0):
        raise ValueError("denominators must be greater than zero")
    baseline, limits, significance, od = _rate_funnel(o, na, multiplier, overdispersion)
    out = _assemble({"x": o, "n": na}, o / na * multiplier, limits, significance, od)
    out.insert(3, "baseline", baseline * multiplier)
    return out


def funnel_dsr(
    observed: ArrayLike, dsr: ArrayLike, multiplier: float = 100_000,
    overdispersion: bool = False,
) -> pd.DataFrame:
    """Funnel plot of directly standardised rates (PHE rate_type "dsr").

    The denominator is derived as ``multiplier × O / DSR`` (undefined where O = 0); the
    baseline is ΣO / Σ derived denominators. Points with O < 10 are labelled
    "Not applicable for events less than 10 for dsrs".

    Returns one row per point: ``observed``, ``denominator`` (derived), ``value`` (the DSR),
    ``baseline``, ``lower_95``, ``upper_95``, ``lower_998``, ``upper_998``, ``significance``.
    """
    o = np.atleast_1d(as_float(observed))
    rate = np.atleast_1d(as_float(dsr))
    o, rate = np.broadcast_arrays(o, rate)
    check_non_negative("observed", o)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.where(o > 0, multiplier * o / rate, np.nan)
    o_used = np.where(np.isnan(n), np.nan, o)
    baseline, limits, significance, od = _rate_funnel(o_used, n, multiplier, overdispersion)
    significance = np.where(o < 10, DSR_NOT_APPLICABLE, significance).astype(object)
    significance[np.isnan(o)] = None
    out = _assemble({"observed": o, "denominator": n}, rate.astype(np.float64), limits,
                    significance, od)
    out.insert(3, "baseline", baseline * multiplier)
    return out
