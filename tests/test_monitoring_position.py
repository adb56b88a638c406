"""The monthly position (pure core): hand-worked figures and additivity."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbc.monitoring.forecast import ForecastError
from pbc.monitoring.position import in_pounds, position


def _frame(rows: list[tuple[str, str, int, int]], value: str) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["code", "service_line", "month", value])


def test_position_hand_worked() -> None:
    # A81001's budget: £1,200 a month of non-elective, £600 a month of outpatients.
    budget = _frame([("A81001", "non_elective", m, 120_000) for m in range(1, 13)]
                    + [("A81001", "outpatient_first", m, 60_000) for m in range(1, 13)],
                    "budget")
    # Spend April-June: non-elective £1,300 a month, outpatients £500 a month; July's
    # rows already loaded are not "to date" at month 3.
    spend = _frame([("A81001", "non_elective", m, 130_000) for m in (1, 2, 3, 4)]
                   + [("A81001", "outpatient_first", m, 50_000) for m in (1, 2, 3)], "spend")
    p = position(spend, budget, level="practice", financial_year="2025-26", month=3,
                 budget_version=4, method="run_rate")
    rows = {r.service_line: r for r in p.itertuples()}
    ne = rows["non_elective"]
    assert (ne.annual_budget, ne.budget_to_date, ne.spend_to_date, ne.variance) == (
        1_440_000, 360_000, 390_000, 30_000)
    assert ne.forecast_outturn == 1_560_000  # £3,900 x 12 / 3
    total = rows["all"]
    assert (total.budget_to_date, total.spend_to_date, total.variance) == (540_000, 540_000, 0)
    assert total.forecast_outturn == 2_160_000
    assert list(p.service_line) == ["non_elective", "outpatient_first", "all"]
    assert set(p.budget_version) == {"4"} and set(p.forecast_method) == {"run_rate"}
    pounds = in_pounds(p)
    assert str(pounds.loc[0, "variance"]) == "300.00"


def test_methods_that_need_last_year_refuse_without_it() -> None:
    budget = _frame([("P", "ae", 1, 100)], "budget")
    with pytest.raises(ForecastError, match="needs last year's spend"):
        position(_frame([("P", "ae", 1, 90)], "spend"), budget, level="practice",
                 financial_year="2025-26", month=1, budget_version=1)


def test_a_practice_new_this_year_is_said_not_guessed() -> None:
    budget = _frame([(c, "ae", m, 100) for c in ("OLD", "NEW") for m in range(1, 13)],
                    "budget")
    spend = _frame([(c, "ae", m, 110) for c in ("OLD", "NEW") for m in (1, 2, 3)], "spend")
    prior = _frame([("OLD", "ae", m, 100) for m in range(1, 13)], "spend")
    p = position(spend, budget, level="practice", financial_year="2025-26", month=3,
                 budget_version=1, method="seasonal_run_rate", prior_spend=prior)
    new = p[(p.code == "NEW") & (p.service_line == "ae")].iloc[0]
    assert pd.isna(new.forecast_outturn)
    assert "no spend last year" in new.forecast_note
    old = p[(p.code == "OLD") & (p.service_line == "ae")].iloc[0]
    assert old.forecast_outturn == 1320


lines = st.sampled_from(["ae", "non_elective", "day_case", "prescribing"])


@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), lines, st.integers(1, 12),
                          st.integers(0, 10**9)), max_size=40),
       st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), lines, st.integers(1, 12),
                          st.integers(0, 10**9)), max_size=40),
       st.integers(1, 12))
@settings(max_examples=150, deadline=None)
def test_total_line_is_the_sum_of_the_lines(spend_rows: list, budget_rows: list,
                                            month: int) -> None:
    p = position(_frame(spend_rows, "spend"), _frame(budget_rows, "budget"),
                 level="practice", financial_year="2025-26", month=month, budget_version=1,
                 method="run_rate")
    for _code, g in p.groupby("code"):
        lines_ = g[g.service_line != "all"]
        total = g[g.service_line == "all"].iloc[0]
        for col in ("annual_budget", "budget_to_date", "spend_to_date", "variance"):
            assert lines_[col].sum() == total[col]
    expected = sum(v for _c, _l, m, v in spend_rows if m <= month)
    assert p[p.service_line == "all"].spend_to_date.sum() == expected
