"""Phasing: annual budgets into 12 monthly budgets (month 1 = April .. 12 = March).

Each annual budget is split by the prior-year seasonal profile of its service line
(each month's share of that line's prior-year priced spend). The split is done in
integer pence by largest remainder (:mod:`pbc.budgets.money`), so the 12 months add up
to the annual budget exactly. A service line with no prior-year spend is phased flat.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from pbc.budgets.money import series_pounds_to_pence

MONTHS = tuple(range(1, 13))


class PhasingError(ValueError):
    """A seasonal profile or the budgets to phase are unusable."""


def fy_month(dates: pd.Series) -> pd.Series:
    """Calendar dates -> financial-year month number (April = 1 .. March = 12)."""
    m = pd.to_datetime(dates).dt.month
    return ((m - 4) % 12 + 1).astype("int64")


def seasonal_profile(priced_activity: pd.DataFrame) -> pd.DataFrame:
    """Monthly shares per service line from prior-year priced activity or spend.

    Input: ``service_line``; ``month`` (1 = April) or ``activity_date``; and money as
    ``spend_pence`` or pounds in ``price``/``spend``. Returns ``service_line``, ``month``,
    ``share`` with the 12 shares of each line summing to 1 (flat if the line has no spend).
    """
    if "service_line" not in priced_activity.columns:
        raise PhasingError("priced activity is missing column 'service_line'")
    if "month" in priced_activity.columns:
        month = pd.to_numeric(priced_activity["month"]).astype("int64")
    elif "activity_date" in priced_activity.columns:
        month = fy_month(priced_activity["activity_date"])
    else:
        raise PhasingError("priced activity needs a 'month' (1 = April) or 'activity_date'")
    if not month.between(1, 12).all():
        raise PhasingError("month must be 1 (April) to 12 (March)")
    if "spend_pence" in priced_activity.columns:
        pence = priced_activity["spend_pence"].to_numpy(dtype=np.int64)
    else:
        col = "price" if "price" in priced_activity.columns else "spend"
        if col not in priced_activity.columns:
            raise PhasingError("priced activity needs spend_pence, price or spend")
        pence = series_pounds_to_pence(priced_activity[col])
    frame = pd.DataFrame({"service_line": priced_activity["service_line"].astype(str),
                          "month": month.to_numpy(), "pence": pence})
    grid = (frame.groupby(["service_line", "month"])["pence"].sum()
            .unstack(fill_value=0).reindex(columns=list(MONTHS), fill_value=0))
    values = np.clip(grid.to_numpy(dtype=float), 0, None)
    tot = values.sum(axis=1, keepdims=True)
    shares = np.where(tot > 0, values / np.where(tot > 0, tot, 1), 1 / 12)
    return pd.DataFrame({
        "service_line": np.repeat(grid.index.astype(str).to_numpy(), 12),
        "month": np.tile(np.arange(1, 13), len(grid)),
        "share": shares.reshape(-1),
    })


def split_rows(totals: npt.ArrayLike, shares: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Split each total (int pence, >= 0) by the same shares, largest remainder per row.

    Returns an int64 array ``len(totals) x len(shares)`` whose rows sum to the totals.
    Ties go to the earlier month.
    """
    t = np.asarray(totals, dtype=np.int64)
    s = np.asarray(shares, dtype=np.float64)
    if (t < 0).any():
        raise PhasingError("cannot phase a negative budget")
    if (s < 0).any() or s.sum() <= 0:
        raise PhasingError("shares must be non-negative and not all zero")
    s = s / s.sum()
    quota = t[:, None].astype(np.float64) * s[None, :]
    base = np.floor(quota).astype(np.int64)
    frac = quota - base
    left = t - base.sum(axis=1)
    # Guard against float error: any excess beyond 0..k-1 goes to the largest share.
    k = s.size
    over = (left < 0) | (left > k)
    if over.any():
        base[over, int(np.argmax(s))] += left[over]
        left[over] = 0
    order = np.argsort(-frac, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(k)[None, :].repeat(len(t), axis=0), axis=1)
    return base + (rank < left[:, None]).astype(np.int64)


def phase_budgets(budgets: pd.DataFrame, profile: pd.DataFrame | None = None) -> pd.DataFrame:
    """Phase annual budgets into months.

    ``budgets``: ``practice_code``, ``service_line``, ``budget`` (int pence), optionally
    ``financial_year`` (e.g. ``BudgetResult.frame``). ``profile``: from
    :func:`seasonal_profile`; lines missing from it (or ``None``) are phased flat.
    Returns ``[financial_year,] practice_code, service_line, month, budget`` (int pence),
    12 rows per input row, in input order then month.
    """
    for col in ("practice_code", "service_line", "budget"):
        if col not in budgets.columns:
            raise PhasingError(f"budgets are missing column {col!r}")
    keys = [c for c in ("financial_year", "practice_code", "service_line")
            if c in budgets.columns]
    out = np.zeros((len(budgets), 12), dtype=np.int64)
    lines = budgets["service_line"].astype(str).to_numpy()
    total = budgets["budget"].to_numpy(dtype=np.int64)
    shares_by_line: dict[str, np.ndarray] = {}
    if profile is not None:
        for line, g in profile.groupby("service_line"):
            s = g.set_index("month")["share"].reindex(list(MONTHS), fill_value=0.0)
            shares_by_line[str(line)] = s.to_numpy(dtype=float)
    for line in np.unique(lines):
        rows = lines == line
        shares = shares_by_line.get(str(line), np.full(12, 1 / 12))
        if shares.sum() <= 0:
            shares = np.full(12, 1 / 12)
        out[rows] = split_rows(total[rows], shares)
    frame = budgets[keys].loc[budgets.index.repeat(12)].reset_index(drop=True)
    frame["month"] = np.tile(np.arange(1, 13), len(budgets))
    frame["budget"] = out.reshape(-1)
    return frame
