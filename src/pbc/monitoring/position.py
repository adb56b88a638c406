"""The monthly position: spend to date against the phased budget, and forecast outturn.

For month ``M`` of a financial year, per budget holder (practice, group or commissioner)
and service line, and in total (service line ``all``):

* ``annual_budget`` and ``budget_to_date`` (the budget version's phasing, months 1..M);
* ``spend_to_date``: priced, attributed activity with activity month <= M, valued at the
  tariff before the emergency marginal rate (the same measure the budgets were set on, so
  the comparison is like for like; the marginal rate is the commissioner's contract
  settlement and is shown on the commissioner's own line);
* ``variance = spend_to_date - budget_to_date`` (positive: overspent to date);
* ``forecast_outturn`` by the named method (:mod:`pbc.monitoring.forecast`), with its
  80% interval where the method has one, and ``forecast_note`` where it could not be made.

The total line's forecast is made on the total's own monthly series (the methods other
than the run rate are not additive over lines). Money is integer pence throughout; the
CSV and workbooks show pounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from pbc.monitoring.forecast import Forecast, ForecastError, Method, forecast

Level = Literal["practice", "group", "commissioner"]
LEVELS: tuple[Level, ...] = ("practice", "group", "commissioner")
TOTAL = "all"

#: the position's columns, in order (money in pence here; pounds in the CSV)
COLUMNS = ["level", "code", "service_line", "financial_year", "month", "budget_version",
           "annual_budget", "budget_to_date", "spend_to_date", "variance",
           "forecast_outturn", "forecast_method", "forecast_lower", "forecast_upper",
           "forecast_note"]
MONEY_COLUMNS = ["annual_budget", "budget_to_date", "spend_to_date", "variance",
                 "forecast_outturn", "forecast_lower", "forecast_upper"]


class PositionError(ValueError):
    """A position that cannot be computed as asked."""


def _panel(frame: pd.DataFrame, value: str, keys: Sequence[tuple[str, str]]) -> np.ndarray:
    """``(code, service_line, month, value)`` rows to a ``len(keys) x 12`` int array."""
    out = np.zeros((len(keys), 12), dtype=np.int64)
    if frame.empty:
        return out
    index = pd.MultiIndex.from_tuples(list(keys), names=["code", "service_line"])
    row = index.get_indexer(pd.MultiIndex.from_arrays(
        [frame["code"].astype(str), frame["service_line"].astype(str)]))
    month = frame["month"].to_numpy(dtype=np.int64)
    ok = (row >= 0) & (month >= 1) & (month <= 12)
    np.add.at(out, (row[ok], month[ok] - 1), frame[value].to_numpy(dtype=np.int64)[ok])
    return out


def _with_totals(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    if frame.empty:
        return frame
    total = frame.groupby(["code", "month"], as_index=False)[value].sum()
    return pd.concat([frame, total.assign(service_line=TOTAL)], ignore_index=True)


def position(
    spend: pd.DataFrame,
    budget: pd.DataFrame,
    *,
    level: Level,
    financial_year: str,
    month: int,
    budget_version: int | str,
    method: Method = "seasonal_run_rate",
    prior_spend: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The position at ``month`` (1 = April) for every holder at ``level``.

    ``spend``: this year's ``code, service_line, month, spend`` (pence, all months loaded;
    months after ``month`` are ignored). ``budget``: ``code, service_line, month, budget``
    (pence) of one budget version. ``prior_spend``: last year's spend in the same shape,
    needed by every method but the run rate (without it those methods refuse).
    """
    if level not in LEVELS:
        raise PositionError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    if not 1 <= month <= 12:
        raise PositionError(f"month must be 1 (April) to 12 (March), not {month}")
    if method != "run_rate" and prior_spend is None:
        raise ForecastError(f"the {method} forecast needs last year's spend, and there is "
                            f"none before {financial_year}: choose --method run_rate")
    s = _with_totals(spend[["code", "service_line", "month", "spend"]], "spend")
    b = _with_totals(budget[["code", "service_line", "month", "budget"]], "budget")
    keys = sorted(_keys(s) | _keys(b))
    if not keys:
        return pd.DataFrame(columns=COLUMNS)
    actual = _panel(s, "spend", keys)
    actual[:, month:] = 0  # data for later months (if any) is not yet "to date"
    phased = _panel(b, "budget", keys)
    prior = None
    if prior_spend is not None:
        p = _with_totals(prior_spend[["code", "service_line", "month", "spend"]], "spend")
        prior = _panel(p, "spend", keys)
    f: Forecast = forecast(method, actual, month, prior)
    spend_to_date = actual[:, :month].sum(axis=1)
    budget_to_date = phased[:, :month].sum(axis=1)
    out = pd.DataFrame({
        "level": level,
        "code": [k[0] for k in keys],
        "service_line": [k[1] for k in keys],
        "financial_year": financial_year,
        "month": month,
        "budget_version": str(budget_version),
        "annual_budget": phased.sum(axis=1),
        "budget_to_date": budget_to_date,
        "spend_to_date": spend_to_date,
        "variance": spend_to_date - budget_to_date,
        "forecast_outturn": pd.array(np.where(f.available, f.outturn, 0), dtype="Int64"),
        "forecast_method": f.method,
        "forecast_lower": pd.array(f.lower if f.lower is not None else [None] * len(keys),
                                   dtype="Int64"),
        "forecast_upper": pd.array(f.upper if f.upper is not None else [None] * len(keys),
                                   dtype="Int64"),
        "forecast_note": f.reason,
    })
    for col in ("forecast_outturn", "forecast_lower", "forecast_upper"):
        out.loc[~f.available, col] = pd.NA
    order = out.service_line.eq(TOTAL)
    return (out.assign(_total=order).sort_values(["code", "_total", "service_line"])
            .drop(columns="_total").reset_index(drop=True)[COLUMNS])


def _keys(frame: pd.DataFrame) -> set[tuple[str, str]]:
    """The distinct (code, service line) pairs of a long table."""
    if frame.empty or "code" not in frame.columns:
        return set()
    pairs = frame[["code", "service_line"]].drop_duplicates()
    return set(zip(pairs["code"].astype(str).tolist(),
                   pairs["service_line"].astype(str).tolist(), strict=True))


def in_pounds(frame: pd.DataFrame, columns: Sequence[str] = tuple(MONEY_COLUMNS)
              ) -> pd.DataFrame:
    """A table with money (integer pence) as pounds (Decimal, two places) for CSV and
    workbooks; by default the position's money columns."""
    from decimal import Decimal

    out = frame.copy()
    for col in columns:
        pounds: list[Decimal | None] = [
            None if pd.isna(v) else (Decimal(int(v)) / 100).quantize(Decimal("0.01"))
            for v in out[col]]
        out[col] = pd.Series(pounds, index=out.index, dtype=object)
    return out
