"""Forecast outturn: where a budget holder's financial year will end, from spend to date.

Every method works on many units at once (practices or groups by service line): arrays of
monthly spend in integer pence, shape ``(units, 12)``, months 1 (April) to 12 (March).
``month`` is the last month with data (1-11); months after it are ignored in ``actual``.

Methods (each names itself in :attr:`Forecast.method`):

``run_rate``
    Straight line: ``outturn = spend to date x 12 / month``. Needs nothing but this year.
    Known weakness: winter months cost more than summer ones, so a run rate taken in
    September under-forecasts a year whose winter is still to come.

``seasonal_run_rate``
    Spend to date grossed up by last year's monthly profile:
    ``outturn = spend to date / s``, where ``s`` is the share of last year's annual spend
    that fell in months 1..``month``. This is the usual NHS finance "profiled run rate".
    Needs last year's spend for the unit; where that is missing or zero in months
    1..``month`` the forecast is not made for the unit (``reason`` says why): pbc never
    quietly falls back to another method.

``ratio_model``
    A statistical model of this year against last year, with an 80% prediction interval:
    for unit *p* and month *m*, ``y[p,m] = beta[p] x[p,m] + e``, ``Var(e) = sigma2[p] x[p,m]``
    (the classical ratio estimator's model: Cochran WG, *Sampling Techniques*, 3rd edn
    1977, §6.7; Royall RM, "On finite population sampling theory under certain linear
    regression models", Biometrika 1970;57:377-87). Each unit's ratio
    ``Y/X`` (spend to date over last year's spend in the same months) is shrunk towards the
    peers' pooled ratio by a random-effects (empirical Bayes) weight, with the between-unit
    variance ``tau2`` estimated by DerSimonian and Laird (Control Clin Trials 1986;7:177-88,
    via :func:`statsmodels.stats.meta_analysis.combine_effects`). A small or noisy unit
    therefore borrows strength from its peers, so its point forecast differs from the
    seasonal run rate where its own months are erratic.
    The forecast of the rest of the year is ``beta* x F`` (``F``: last year's spend in the
    remaining months), with variance ``sigma2 F + F^2 v (1 - B)`` (process noise of the
    months to come plus the uncertainty of the shrunk ratio; ``v`` the variance of ``Y/X``,
    ``B`` the shrinkage weight), and the 80% interval uses Student's t with ``month - 1``
    degrees of freedom. It needs at least two months of data and last year's spend.

All outputs are integer pence, rounded half up (the same rule as every money figure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

Method = Literal["run_rate", "seasonal_run_rate", "ratio_model"]
METHODS: tuple[Method, ...] = ("run_rate", "seasonal_run_rate", "ratio_model")

#: the prediction interval of :func:`ratio_model`
INTERVAL = 0.80

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class ForecastError(ValueError):
    """A forecast that cannot be made as asked (the message says why)."""


@dataclass(frozen=True)
class Forecast:
    """Forecast outturn per unit (pence). ``available[i]`` is False where the method could
    not forecast unit ``i``: ``outturn``/``lower``/``upper`` are then 0 and ``reason[i]`` says
    why. ``lower``/``upper`` are None for methods without an interval."""

    method: Method
    month: int
    outturn: IntArray
    available: npt.NDArray[np.bool_]
    reason: list[str] = field(default_factory=list)
    lower: IntArray | None = None
    upper: IntArray | None = None


def _round_half_up(x: FloatArray) -> IntArray:
    """Round pence half up (away from zero for negatives), as every money figure is."""
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def _check(actual: npt.ArrayLike, month: int, prior: npt.ArrayLike | None = None
           ) -> tuple[IntArray, IntArray | None]:
    if not 1 <= int(month) <= 12:
        raise ForecastError(f"month must be 1 (April) to 12 (March), not {month}")
    a = np.atleast_2d(np.asarray(actual, dtype=np.int64))
    if a.shape[1] != 12:
        raise ForecastError(f"monthly spend needs 12 columns (April..March), not {a.shape[1]}")
    p = None
    if prior is not None:
        p = np.atleast_2d(np.asarray(prior, dtype=np.int64))
        if p.shape != a.shape:
            raise ForecastError(
                f"last year's spend has shape {p.shape}, this year's {a.shape}")
    return a, p


def spend_to_date(actual: npt.ArrayLike, month: int) -> IntArray:
    """Spend in months 1..``month`` per unit (pence)."""
    a, _ = _check(actual, month)
    return a[:, :month].sum(axis=1)


def run_rate(actual: npt.ArrayLike, month: int) -> Forecast:
    """``outturn = spend to date x 12 / month`` for every unit."""
    a, _ = _check(actual, month)
    ytd = a[:, :month].sum(axis=1).astype(np.float64)
    out = _round_half_up(ytd * 12.0 / month)
    n = len(out)
    return Forecast("run_rate", month, out, np.ones(n, dtype=bool), [""] * n)


def seasonal_run_rate(actual: npt.ArrayLike, prior: npt.ArrayLike, month: int) -> Forecast:
    """Spend to date divided by the share of last year's spend that fell in months
    1..``month`` (last year's monthly profile)."""
    a, p = _check(actual, month, prior)
    assert p is not None
    ytd = a[:, :month].sum(axis=1).astype(np.float64)
    p_ytd = p[:, :month].sum(axis=1).astype(np.float64)
    p_year = p.sum(axis=1).astype(np.float64)
    ok = (p_ytd > 0) & (p_year > 0)
    out = np.zeros(len(ytd), dtype=np.int64)
    out[ok] = _round_half_up(ytd[ok] * p_year[ok] / p_ytd[ok])
    reason = ["" if k else f"no spend last year in months 1-{month}: no profile to follow"
              for k in ok]
    return Forecast("seasonal_run_rate", month, out, ok, reason)


def _dl_tau2(beta: FloatArray, var: FloatArray) -> float:
    """DerSimonian-Laird between-unit variance of the ratios (statsmodels)."""
    from statsmodels.stats.meta_analysis import combine_effects

    if len(beta) < 3:
        return 0.0
    # statsmodels also computes standard errors pbc does not use (Hartung-Knapp); with few
    # or near-identical ratios their variance can be negative and numpy warns on its sqrt
    with np.errstate(invalid="ignore", divide="ignore"):
        res = combine_effects(beta, var, method_re="dl")
    return float(max(res.tau2, 0.0))


def ratio_model(actual: npt.ArrayLike, prior: npt.ArrayLike, month: int,
                interval: float = INTERVAL) -> Forecast:
    """Random-effects ratio model with a prediction interval (see the module docstring)."""
    a, p = _check(actual, month, prior)
    assert p is not None
    n = a.shape[0]
    if month >= 12:
        ytd = a.sum(axis=1)
        z = np.zeros(n, dtype=np.int64)
        return Forecast("ratio_model", month, ytd, np.ones(n, dtype=bool), [""] * n,
                        lower=ytd.copy() + z, upper=ytd.copy() + z)
    y = a[:, :month].astype(np.float64)
    x = p[:, :month].astype(np.float64)
    ytd = y.sum(axis=1)
    X = x.sum(axis=1)
    F = p[:, month:].sum(axis=1).astype(np.float64)
    reason = [""] * n
    ok = np.ones(n, dtype=bool)
    if month < 2:
        ok[:] = False
        reason = ["the model needs at least two months of this year's data"] * n
    for i in range(n):
        if ok[i] and X[i] <= 0:
            ok[i] = False
            reason[i] = f"no spend last year in months 1-{month}: nothing to model against"
    beta = np.zeros(n)
    sigma2 = np.zeros(n)
    v = np.zeros(n)
    if ok.any():
        beta[ok] = ytd[ok] / X[ok]
        with np.errstate(divide="ignore", invalid="ignore"):
            resid2 = np.where(x > 0, (y - beta[:, None] * x) ** 2 / np.where(x > 0, x, 1), 0.0)
        used = (x > 0).sum(axis=1)
        df = np.maximum(used - 1, 1)
        sigma2[ok] = resid2[ok].sum(axis=1) / df[ok]
        v[ok] = sigma2[ok] / X[ok]
    # pool the ratios of the units that can be modelled (precision weights need v > 0)
    pool = ok & (v > 0)
    tau2 = _dl_tau2(beta[pool], v[pool]) if pool.sum() >= 3 else 0.0
    if pool.any():
        w = 1.0 / (v[pool] + tau2)
        beta_bar = float((w * beta[pool]).sum() / w.sum())
    else:
        beta_bar = float(beta[ok].mean()) if ok.any() else 0.0
    if tau2 > 0:
        shrink = v / (v + tau2)
    else:
        # no heterogeneity detected: every unit's ratio is estimated by its own data only
        # where peers cannot be pooled (fewer than 3 units), else pooled fully
        shrink = np.where(pool.sum() >= 3, np.where(v > 0, 1.0, 0.0), 0.0)
    beta_star = (1 - shrink) * beta + shrink * beta_bar
    rest = beta_star * F
    var = sigma2 * F + F**2 * v * (1 - shrink)
    dof = max(month - 1, 1)
    t = float(sps.t.ppf(0.5 + interval / 2, dof))
    half = t * np.sqrt(np.maximum(var, 0.0))
    centre = ytd + rest
    out = np.where(ok, _round_half_up(centre), 0)
    lower = np.where(ok, _round_half_up(np.maximum(centre - half, ytd)), 0)
    upper = np.where(ok, _round_half_up(centre + half), 0)
    return Forecast("ratio_model", month, out.astype(np.int64), ok, reason,
                    lower=lower.astype(np.int64), upper=upper.astype(np.int64))


def forecast(method: Method, actual: npt.ArrayLike, month: int,
             prior: npt.ArrayLike | None = None) -> Forecast:
    """Forecast by the named method; a method that needs last year's spend refuses
    without it (it does not silently use another method)."""
    if method == "run_rate":
        return run_rate(actual, month)
    if prior is None:
        raise ForecastError(f"the {method} forecast needs last year's monthly spend, and "
                            "there is none for this year: use run_rate, or load last year")
    if method == "seasonal_run_rate":
        return seasonal_run_rate(actual, prior, month)
    if method == "ratio_model":
        return ratio_model(actual, prior, month)
    raise ForecastError(f"unknown forecast method {method!r}: one of {', '.join(METHODS)}")


@dataclass(frozen=True)
class BacktestRow:
    """Accuracy of one method at one month over all units of a past year."""

    method: Method
    month: int
    units: int
    mean_absolute_percentage_error: float
    median_absolute_percentage_error: float
    interval_coverage: float | None  # share of units whose outturn fell in the interval


def backtest(year: npt.ArrayLike, year_before: npt.ArrayLike,
             months: range = range(1, 12)) -> list[BacktestRow]:
    """Forecast a completed year at each month from what was known then (the year's own
    months to date, and the year before as the profile) and compare with its real outturn.

    Units whose outturn is zero are left out of the percentage errors."""
    a, p = _check(year, 1, year_before)
    assert p is not None
    truth = a.sum(axis=1).astype(np.float64)
    rows: list[BacktestRow] = []
    for m in months:
        for method in METHODS:
            f = forecast(method, a, m, p)
            keep = f.available & (truth > 0)
            if not keep.any():
                continue
            ape = np.abs(f.outturn[keep] - truth[keep]) / truth[keep] * 100
            cover = None
            if f.lower is not None and f.upper is not None:
                inside = (f.lower[keep] <= truth[keep]) & (truth[keep] <= f.upper[keep])
                cover = float(inside.mean())
            rows.append(BacktestRow(method, m, int(keep.sum()), float(ape.mean()),
                                    float(np.median(ape)), cover))
    return rows
