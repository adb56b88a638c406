"""Group budgets: a group's budget is the sum of its member practices' budgets.

When a practice changes group during the year its budget moves pro rata by month: each
month (1 = April .. 12 = March) belongs to the group the practice is a member of on the
**first day** of that month. The practice's monthly money is its phased budget (from
:func:`pbc.budgets.phasing.phase_budgets`) when given, else its annual budget split
into 12 equal months by largest remainder, so every penny lands in exactly one group.
Months in which a practice belongs to no group go to :data:`UNASSIGNED`.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from pbc.budgets.phasing import phase_budgets

UNASSIGNED = "(no group)"


class GroupError(ValueError):
    """The membership table is unusable (missing columns, overlapping memberships)."""


def month_starts(financial_year: str) -> list[dt.date]:
    """First day of each month of ``'2025/26'``: 2025-04-01 .. 2026-03-01."""
    y = int(financial_year[:4])
    return [dt.date(y + (m >= 10), (m + 2) % 12 + 1, 1) for m in range(1, 13)]


def membership_by_month(membership: pd.DataFrame, financial_year: str) -> pd.DataFrame:
    """``practice_code``, ``group_code``, ``valid_from``, ``valid_to`` (ISO dates; blank =
    open) -> ``practice_code``, ``month``, ``group_code`` (membership on each month's 1st).

    Raises :class:`GroupError` if a practice is in two groups on the same day.
    """
    for col in ("practice_code", "group_code"):
        if col not in membership.columns:
            raise GroupError(f"membership is missing column {col!r}")
    m = membership.copy()
    m["practice_code"] = m["practice_code"].astype(str)
    m["group_code"] = m["group_code"].astype(str)
    lo = pd.Timestamp("1900-01-01")
    hi = pd.Timestamp("2200-01-01")
    vf = (pd.to_datetime(m["valid_from"]) if "valid_from" in m.columns
          else pd.Series(pd.NaT, index=m.index)).fillna(lo)
    vt = (pd.to_datetime(m["valid_to"]) if "valid_to" in m.columns
          else pd.Series(pd.NaT, index=m.index)).fillna(hi)
    bad = vt < vf
    if bad.any():
        raise GroupError(f"membership row {int(np.flatnonzero(bad.to_numpy())[0]) + 1}: "
                         "valid_to is before valid_from")
    rows = []
    for month, day in enumerate(month_starts(financial_year), start=1):
        ts = pd.Timestamp(day)
        on = m[(vf <= ts) & (vt >= ts)]
        dup = on["practice_code"].duplicated()
        if dup.any():
            p = on.loc[dup, "practice_code"].iloc[0]
            raise GroupError(f"practice {p!r} is in more than one group on {day}")
        rows.append(on[["practice_code", "group_code"]].assign(month=month))
    return pd.concat(rows, ignore_index=True)[["practice_code", "month", "group_code"]]


def group_budgets(
    budgets: pd.DataFrame,
    membership: pd.DataFrame,
    *,
    financial_year: str | None = None,
    monthly: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Group budgets per service line, moving practices' money pro rata by month.

    ``budgets``: ``practice_code``, ``service_line``, ``budget`` (int pence) and
    ``financial_year`` (or pass ``financial_year``), e.g. ``BudgetResult.frame``.
    ``membership``: ``practice_code``, ``group_code``, optional ``valid_from``/``valid_to``.
    ``monthly``: phased budgets (``practice_code``, ``service_line``, ``month``,
    ``budget``); if omitted each annual budget is split into 12 equal months.
    Returns ``group_code``, ``service_line``, ``budget`` (int pence), ``practices``
    (number of distinct member practices contributing), sorted by group and line.
    """
    fy = financial_year or str(budgets["financial_year"].iloc[0])
    if monthly is None:
        flat = budgets[["practice_code", "service_line", "budget"]]
        monthly = phase_budgets(flat, None)
    months = membership_by_month(membership, fy)
    mon = monthly[["practice_code", "service_line", "month", "budget"]].copy()
    mon["practice_code"] = mon["practice_code"].astype(str)
    merged = mon.merge(months, on=["practice_code", "month"], how="left")
    merged["group_code"] = merged["group_code"].fillna(UNASSIGNED)
    out = (merged.groupby(["group_code", "service_line"], sort=True)
           .agg(budget=("budget", "sum"), practices=("practice_code", "nunique"))
           .reset_index())
    out["budget"] = out["budget"].astype(np.int64)
    return out
