"""Group budgets: a group's budget is the sum of its member practices' budgets.

Membership follows the one rule pbc has for it, the rule attribution applies to activity
(:mod:`pbc.attribution.organisations`, rule 3): on a given day a practice is in the group of
the ``practice_groups`` window that covers that day (the one that started last if several
do), and in its default group (``practices.group_code``) on a day no window covers. Budgets
apply it to the **first day** of each month (1 = April .. 12 = March): when a practice
changes group during the year its budget moves pro rata by month. The practice's monthly
money is its phased budget (from :func:`pbc.budgets.phasing.phase_budgets`) when given,
else its annual budget split into 12 equal months by largest remainder, so every penny
lands in exactly one group. Months in which a practice has no group at all (no default
group and no window) go to :data:`UNASSIGNED`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pbc.budgets.phasing import phase_budgets
from pbc.calendar import parse_financial_year

UNASSIGNED = "(no group)"


class GroupError(ValueError):
    """The membership tables are unusable (missing columns, bad dates)."""


def month_starts(financial_year: str) -> list[dt.date]:
    """First day of each month of ``'2025-26'``: 2025-04-01 .. 2026-03-01."""
    y = parse_financial_year(financial_year)
    return [dt.date(y + (m >= 10), (m + 2) % 12 + 1, 1) for m in range(1, 13)]


def _dates(values: pd.Series, table: str, column: str) -> list[dt.date | None]:
    out: list[dt.date | None] = []
    for i, v in enumerate(values):
        if v is None or (not isinstance(v, str) and pd.isna(v)) or str(v).strip() == "":
            out.append(None)
            continue
        try:
            out.append(pd.Timestamp(v).date())
        except (ValueError, TypeError):
            raise GroupError(f"{table} row {i + 1}, column {column}: not a date: {v!r}") from None
    return out


def groups_on(days: Sequence[dt.date], practices: pd.DataFrame,
              practice_groups: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every practice's group on each of ``days``: ``practice_code``, ``day``,
    ``group_code`` (None: no group that day), by
    :func:`pbc.attribution.organisations.groups_on_days` (the rule attribution uses).

    ``practices``: ``practice_code``, ``group_code`` (default group, may be blank).
    ``practice_groups``: ``practice_code``, ``group_code``, ``valid_from``, ``valid_to``
    (ISO dates or dates; ``valid_to`` blank = open).
    """
    import ibis

    from pbc.attribution.organisations import groups_on_days

    for col in ("practice_code", "group_code"):
        if col not in practices.columns:
            raise GroupError(f"practices are missing column {col!r}")
    text = {"practice_code": "string", "group_code": "string"}
    prac = pd.DataFrame({
        "practice_code": practices["practice_code"].astype(str).to_numpy(),
        "group_code": [None if v is None or (not isinstance(v, str) and pd.isna(v))
                       or str(v).strip() == "" else str(v) for v in practices["group_code"]],
    })
    backend = ibis.duckdb.connect()
    try:
        windows = None
        if practice_groups is not None and len(practice_groups):
            for col in ("practice_code", "group_code", "valid_from"):
                if col not in practice_groups.columns:
                    raise GroupError(f"practice_groups are missing column {col!r}")
            vf = _dates(practice_groups["valid_from"], "practice_groups", "valid_from")
            vt = (_dates(practice_groups["valid_to"], "practice_groups", "valid_to")
                  if "valid_to" in practice_groups.columns else [None] * len(vf))
            for i, (a, b) in enumerate(zip(vf, vt, strict=True)):
                if a is not None and b is not None and b < a:
                    raise GroupError(f"practice_groups row {i + 1}: valid_to is before "
                                     "valid_from")
            pg = pd.DataFrame({
                "practice_code": practice_groups["practice_code"].astype(str).to_numpy(),
                "group_code": practice_groups["group_code"].astype(str).to_numpy(),
                "valid_from": vf, "valid_to": vt})
            windows = ibis.memtable(pg, schema={**text, "valid_from": "date",
                                                "valid_to": "date"})
        expr = groups_on_days(ibis.memtable(prac, schema=text), prac["practice_code"].tolist(),
                              list(days), windows)
        out = backend.execute(expr)
    finally:
        backend.disconnect()
    out["day"] = pd.to_datetime(out["day"]).dt.date
    out["group_code"] = out["group_code"].astype(object).where(out["group_code"].notna(), None)
    return out.sort_values(["practice_code", "day"]).reset_index(drop=True)


def membership_by_month(practices: pd.DataFrame, financial_year: str,
                        practice_groups: pd.DataFrame | None = None) -> pd.DataFrame:
    """``practice_code``, ``month``, ``group_code``: each practice's group on the first day
    of each month of ``financial_year`` (see :func:`groups_on`; None: no group)."""
    starts = month_starts(financial_year)
    out = groups_on(starts, practices, practice_groups)
    month = {d: i for i, d in enumerate(starts, start=1)}
    out["month"] = out["day"].map(month).astype("int64")
    return out[["practice_code", "month", "group_code"]]


def group_budgets(
    budgets: pd.DataFrame,
    practices: pd.DataFrame,
    *,
    practice_groups: pd.DataFrame | None = None,
    financial_year: str | None = None,
    monthly: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Group budgets per service line, moving practices' money pro rata by month.

    ``budgets``: ``practice_code``, ``service_line``, ``budget`` (int pence) and
    ``financial_year`` (or pass ``financial_year``), e.g. ``BudgetResult.frame``.
    ``practices``: ``practice_code``, ``group_code`` (default group);
    ``practice_groups``: the membership windows (see :func:`groups_on`).
    ``monthly``: phased budgets (``practice_code``, ``service_line``, ``month``,
    ``budget``); if omitted each annual budget is split into 12 equal months.
    Returns ``group_code``, ``service_line``, ``budget`` (int pence), ``practices``
    (number of distinct member practices contributing), sorted by group and line.
    """
    fy = financial_year or str(budgets["financial_year"].iloc[0])
    if monthly is None:
        flat = budgets[["practice_code", "service_line", "budget"]]
        monthly = phase_budgets(flat, None)
    known = pd.concat([practices[["practice_code", "group_code"]],
                       pd.DataFrame({"practice_code": sorted(
                           set(budgets["practice_code"].astype(str))
                           - set(practices["practice_code"].astype(str))),
                           "group_code": None})], ignore_index=True)
    months = membership_by_month(known, fy, practice_groups)
    mon = monthly[["practice_code", "service_line", "month", "budget"]].copy()
    mon["practice_code"] = mon["practice_code"].astype(str)
    merged = mon.merge(months, on=["practice_code", "month"], how="left")
    merged["group_code"] = merged["group_code"].fillna(UNASSIGNED)
    out = (merged.groupby(["group_code", "service_line"], sort=True)
           .agg(budget=("budget", "sum"), practices=("practice_code", "nunique"))
           .reset_index())
    out["budget"] = out["budget"].astype(np.int64)
    return out
