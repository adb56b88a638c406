"""Variance drivers: volume and price effects that add up to the variance, to the penny."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbc.monitoring.drivers import (
    DIMENSIONS,
    HOLDER_BASIS,
    NO_PLAN,
    PEER_BASIS,
    DriversError,
    drivers,
    hrg_chapter,
    segment_label,
)

MONEY = ["budget_to_date", "spend_to_date", "variance", "volume_effect", "price_effect"]
COLS = ["code", "service_line", "segment", "month", "spend", "activity"]


def _frame(rows: list[tuple[str, str, str, int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLS)


def test_twice_the_activity_at_last_years_price_is_all_volume() -> None:
    prior = _frame([("A", "el", "F", 1, 10_000, 10), ("A", "el", "H", 1, 30_000, 10)])
    spend = _frame([("A", "el", "F", 1, 20_000, 20), ("A", "el", "H", 1, 30_000, 10)])
    budget = pd.DataFrame({"code": ["A"], "service_line": ["el"], "month": [1],
                           "budget": [40_000]})
    d = drivers(spend, budget, prior, month=1, dimension="hrg_chapter").set_index("segment")
    # the budget is shared by last year's mix: F a quarter, H three quarters
    assert d.loc["F", "budget_to_date"] == 10_000 and d.loc["H", "budget_to_date"] == 30_000
    assert d.loc["F", ["variance", "volume_effect", "price_effect"]].tolist() == [
        10_000, 10_000, 0]
    assert d.loc["H", ["variance", "volume_effect", "price_effect"]].tolist() == [0, 0, 0]
    assert d.loc["F", "planned_activity"] == pytest.approx(10)
    assert d.iloc[0].name == "F"  # the largest variance first


def test_the_same_activity_at_a_higher_price_is_all_price() -> None:
    prior = _frame([("A", "el", "F", 1, 10_000, 10)])
    spend = _frame([("A", "el", "F", 1, 12_500, 10)])
    budget = pd.DataFrame({"code": ["A"], "service_line": ["el"], "month": [1],
                           "budget": [10_000]})
    d = drivers(spend, budget, prior, month=1, dimension="hrg_chapter").iloc[0]
    assert (d.volume_effect, d.price_effect, d.price_basis) == (0, 2_500, HOLDER_BASIS)


def test_a_new_practice_uses_the_commissioners_mix_and_prices() -> None:
    prior = _frame([("A", "el", "F", 1, 10_000, 10), ("A", "el", "H", 1, 30_000, 10)])
    spend = _frame([("B", "el", "H", 1, 9_000, 3)])
    budget = pd.DataFrame({"code": ["B"], "service_line": ["el"], "month": [1],
                           "budget": [8_000]})
    d = drivers(spend, budget, prior, month=1, dimension="hrg_chapter",
                codes=["B"]).set_index("segment")
    assert d.loc["F", "budget_to_date"] == 2_000 and d.loc["H", "budget_to_date"] == 6_000
    # H at the commissioner's £30 a row: 3 rows planned 2 -> volume £30, price 0
    assert d.loc["H", ["volume_effect", "price_effect"]].tolist() == [3_000, 0]
    assert d.loc["H", "price_basis"] == PEER_BASIS
    assert set(d.index) == {"F", "H"}


def test_a_line_nobody_had_last_year_keeps_its_budget_whole() -> None:
    spend = _frame([("A", "ae", "V", 1, 500, 1)])
    budget = pd.DataFrame({"code": ["A"], "service_line": ["ae"], "month": [1],
                           "budget": [300]})
    d = drivers(spend, budget, None, month=1, dimension="hrg_chapter").set_index("segment")
    assert d.loc[NO_PLAN, "budget_to_date"] == 300
    assert d.loc["V", ["variance", "volume_effect", "price_effect"]].tolist() == [500, 500, 0]


def test_months_after_the_position_are_not_to_date() -> None:
    spend = _frame([("A", "el", "el", 1, 100, 1), ("A", "el", "el", 2, 900, 9)])
    budget = pd.DataFrame({"code": ["A", "A"], "service_line": ["el", "el"], "month": [1, 2],
                           "budget": [100, 100]})
    d = drivers(spend, budget, spend, month=1, dimension="service_line").iloc[0]
    assert (d.budget_to_date, d.spend_to_date, d.activity) == (100, 100, 1)


def test_refuses_an_unknown_dimension_or_month() -> None:
    empty = _frame([])
    budget = pd.DataFrame(columns=["code", "service_line", "month", "budget"])
    with pytest.raises(DriversError, match="dimension"):
        drivers(empty, budget, None, month=1, dimension="ward")  # type: ignore[arg-type]
    with pytest.raises(DriversError, match="month"):
        drivers(empty, budget, None, month=13, dimension="provider")


def test_labels() -> None:
    assert hrg_chapter("fz37a") == "F" and hrg_chapter(None) == "(no HRG)"
    assert segment_label("hrg_chapter", "F") == "F Digestive system"
    assert segment_label("provider", "RTR", {"RTR": "South Tees"}) == "RTR South Tees"


CODES = st.sampled_from(["A", "B", "C"])
LINES = st.sampled_from(["el", "nel", "ae"])
SEGMENTS = st.sampled_from(["F", "H", "V", "W"])
ROW = st.tuples(CODES, LINES, SEGMENTS, st.integers(1, 12),
                st.integers(-5_000, 10**11), st.integers(0, 500))
BUDGET_ROW = st.tuples(CODES, LINES, st.integers(1, 12), st.integers(0, 10**11))


@settings(max_examples=150, deadline=None)
@given(st.lists(ROW, max_size=25), st.lists(ROW, max_size=25),
       st.lists(BUDGET_ROW, max_size=15), st.integers(1, 12),
       st.sampled_from(DIMENSIONS))
def test_effects_add_up_to_the_variance_exactly(
        this: list[tuple[str, str, str, int, int, int]],
        last: list[tuple[str, str, str, int, int, int]],
        budget_rows: list[tuple[str, str, int, int]], month: int, dimension: str) -> None:
    spend, prior = _frame(this), _frame(last)
    if dimension == "service_line":  # the segment of this dimension is the line itself
        spend, prior = spend.assign(segment=spend.service_line), prior.assign(
            segment=prior.service_line)
    budget = pd.DataFrame(budget_rows, columns=["code", "service_line", "month", "budget"])
    d = drivers(spend, budget, prior, month=month, dimension=dimension)  # type: ignore[arg-type]
    # every segment: the two effects make the variance; the variance is spend - budget
    assert (d.volume_effect + d.price_effect == d.variance).all()
    assert (d.spend_to_date - d.budget_to_date == d.variance).all()
    # every holder: the segments add up to the holder's own budget and spend to date
    to_date_spend = spend[spend.month <= month].groupby("code").spend.sum()
    to_date_budget = budget[budget.month <= month].groupby("code").budget.sum()
    by_code = d.groupby("code")[MONEY].sum()
    for code in set(to_date_spend.index) | set(to_date_budget.index) | set(by_code.index):
        s, b = int(to_date_spend.get(code, 0)), int(to_date_budget.get(code, 0))
        got = by_code.loc[code] if code in by_code.index else pd.Series(0, index=MONEY)
        assert int(got.spend_to_date) == s
        assert int(got.budget_to_date) == b
        assert int(got.volume_effect) + int(got.price_effect) == s - b
