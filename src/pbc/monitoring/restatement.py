"""Restatements: what current data change in a frozen monthly position, and why.

A frozen position (``pbc monitor freeze``) is never altered. When later deliveries bring
activity of a frozen month (late rows) or replace rows it counted (revised rows), the same
position computed afresh differs; each difference is a *restatement*, one row per (frozen
month, level, code, service line):

``old`` (the frozen spend to date), ``new`` (the spend to date on current data, against
the same budget version), ``difference = new - old`` and ``why``:

* ``late rows``: the cell holds activity first loaded after the freeze's warehouse version;
* ``revised rows``: the cell holds rows that a revision loaded after the freeze replaced;
* ``late rows; revised rows``: both;
* ``other (no late or revised row here: repriced, reattributed or a revision moved a row
  out)``: the figure changed with neither in the cell, e.g. a new tariff, a new
  practices file, or a revision that moved a row to another practice or month. pbc says
  so rather than guess.

By construction ``old + difference = new`` for every cell, to the penny (integer pence):
the frozen position plus its restatements is the fresh position (property-tested).
"""

from __future__ import annotations

import pandas as pd

KEYS = ["level", "code", "service_line"]
#: columns of a restatement table (money in pence here; pounds in the CSV)
COLUMNS = ["financial_year", "frozen_month", "period", "level", "code", "service_line",
           "old", "new", "difference", "why", "frozen_warehouse_version",
           "budget_version"]
MONEY_COLUMNS = ["old", "new", "difference"]
LATE, REVISED = "late rows", "revised rows"
OTHER = ("other (no late or revised row here: repriced, reattributed or a revision moved "
         "a row out)")


def why(late: bool, revised: bool) -> str:
    """The reason text for a cell with late and/or revised rows (or neither)."""
    if late and revised:
        return f"{LATE}; {REVISED}"
    if late:
        return LATE
    if revised:
        return REVISED
    return OTHER


def restate(frozen: pd.DataFrame, current: pd.DataFrame,
            reasons: pd.DataFrame | None = None) -> pd.DataFrame:
    """The cells whose spend to date differs between a frozen position and the same
    position on current data.

    ``frozen`` and ``current``: ``level, code, service_line, spend_to_date`` (pence). A cell
    in one and not the other counts as 0 there. ``reasons``: ``level, code, service_line,
    late, revised`` (booleans) for the cells holding late or revised rows. Returns ``level,
    code, service_line, old, new, difference, why`` sorted by the keys."""
    old = frozen[[*KEYS, "spend_to_date"]].rename(columns={"spend_to_date": "old"})
    new = current[[*KEYS, "spend_to_date"]].rename(columns={"spend_to_date": "new"})
    both = old.merge(new, on=KEYS, how="outer")
    both["old"] = both["old"].fillna(0).astype("int64")
    both["new"] = both["new"].fillna(0).astype("int64")
    both["difference"] = both["new"] - both["old"]
    changed = both[both["difference"] != 0].copy()
    if reasons is not None and not reasons.empty and not changed.empty:
        changed = changed.merge(reasons[[*KEYS, "late", "revised"]], on=KEYS, how="left")
    else:
        changed["late"] = False
        changed["revised"] = False
    changed["why"] = [why(bool(la) if pd.notna(la) else False,
                          bool(re) if pd.notna(re) else False)
                      for la, re in zip(changed["late"], changed["revised"], strict=True)]
    return (changed.drop(columns=["late", "revised"]).sort_values(KEYS)
            .reset_index(drop=True)[[*KEYS, "old", "new", "difference", "why"]])
