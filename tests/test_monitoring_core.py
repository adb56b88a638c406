"""The pure monitoring core: forecasts, freed resources, risk sharing (hand-worked)."""

from __future__ import annotations

import re
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbc.monitoring.forecast import (
    ForecastError,
    backtest,
    forecast,
    ratio_model,
    run_rate,
    seasonal_run_rate,
)
from pbc.monitoring.freed import (
    Draw,
    ReinvestmentError,
    ReinvestmentRule,
    freed_resources,
    reinvestment_ledger,
)
from pbc.monitoring.risk_sharing import (
    RealBudgetTerms,
    RiskPoolPolicy,
    SettlementError,
    settle_overspend,
    settle_real_budget,
    settle_risk_pool,
)

POUND = 100


# --- forecasts ----------------------------------------------------------------------------

def test_run_rate_hand_worked() -> None:
    # £30,000 in April-June -> £120,000 for the year
    actual = [[10_000 * POUND] * 3 + [0] * 9]
    f = run_rate(actual, 3)
    assert f.outturn.tolist() == [120_000 * POUND]
    # rounding half up: 1 penny over 7 months -> 12/7 = 1.714 -> 2 pence
    assert run_rate([[1] + [0] * 11], 7).outturn.tolist() == [2]


def test_seasonal_run_rate_follows_last_years_profile() -> None:
    # last year: £80 a month April-September, £120 October-March (total £1,200);
    # months 1-6 held 480/1200 = 40% of the year. This year £600 by September -> £1,500.
    prior = [[80 * POUND] * 6 + [120 * POUND] * 6]
    actual = [[100 * POUND] * 6 + [0] * 6]
    f = seasonal_run_rate(actual, prior, 6)
    assert f.outturn.tolist() == [1_500 * POUND]
    # the straight run rate misses the winter: £1,200
    assert run_rate(actual, 6).outturn.tolist() == [1_200 * POUND]


def test_seasonal_run_rate_says_when_there_is_no_profile() -> None:
    prior = [[0] * 12, [50] * 12]
    actual = [[10] * 12, [10] * 12]
    f = seasonal_run_rate(actual, prior, 4)
    assert f.available.tolist() == [False, True]
    assert "no spend last year" in f.reason[0]
    with pytest.raises(ForecastError, match="needs last year"):
        forecast("seasonal_run_rate", actual, 4, None)
    with pytest.raises(ForecastError, match="month must be"):
        run_rate(actual, 13)


def test_ratio_model_single_unit_hand_worked() -> None:
    # one unit (no peers to pool with): ratio Y/X = 330/300 = 1.1;
    # residuals e_m = y - 1.1 x over x = 100 each month: (-10, 0, 10) -> sum e^2/x = 2,
    # sigma2 = 2 / (3 - 1) = 1; v = sigma2 / X = 1/300.
    # rest of year F = 900 -> point 330 + 1.1 x 900 = 1320.
    # var = sigma2 F + F^2 v = 900 + 810000/300 = 900 + 2700 = 3600 -> sd 60.
    # 80% t with 2 df = 1.885618 -> half width 113.137 -> [1206.86, 1433.14] -> 1207, 1433
    prior = [[100] * 12]
    actual = [[100, 110, 120] + [0] * 9]
    f = ratio_model(actual, prior, 3)
    assert f.outturn.tolist() == [1320]
    assert f.lower is not None and f.upper is not None
    assert f.lower.tolist() == [1207]
    assert f.upper.tolist() == [1433]


def test_ratio_model_borrows_strength_from_peers() -> None:
    rng = np.random.default_rng(3)
    prior = rng.integers(8_000, 12_000, size=(40, 12)) * POUND
    actual = (prior * 1.05 + rng.normal(0, 300 * POUND, size=prior.shape)).astype(np.int64)
    actual[0, :4] = (prior[0, :4] * [2.5, 1.4, 2.6, 1.5]).astype(np.int64)  # erratic
    own = seasonal_run_rate(actual, prior, 4)
    model = ratio_model(actual, prior, 4)
    # the erratic unit's ratio is pulled towards its peers', so it is forecast lower
    assert model.outturn[0] < own.outturn[0]
    assert model.method == "ratio_model" and model.available.all()
    assert (model.lower <= model.outturn).all() and (model.outturn <= model.upper).all()


def test_ratio_model_interval_covers_at_about_80_percent() -> None:
    """Simulation study under the model: the 80% interval covers the outturn in about 80%
    of units (the interval is for one unit's outturn, so coverage is over units)."""
    rng = np.random.default_rng(20261201)
    units, hits, total = 400, 0, 0
    for rep in range(5):
        prior = rng.integers(50_000, 150_000, size=(units, 12)).astype(np.float64)
        beta = rng.normal(1.03, 0.04, size=(units, 1))
        sigma2 = 30.0
        y = beta * prior + rng.normal(0, 1, size=prior.shape) * np.sqrt(sigma2 * prior)
        actual = np.rint(y).astype(np.int64)
        f = ratio_model(actual, prior.astype(np.int64), 4 + rep)
        truth = actual.sum(axis=1)
        assert f.lower is not None and f.upper is not None
        hits += int(((f.lower <= truth) & (truth <= f.upper)).sum())
        total += units
    coverage = hits / total
    assert 0.74 <= coverage <= 0.86, coverage


def test_ratio_model_needs_two_months() -> None:
    f = ratio_model([[5] * 12], [[5] * 12], 1)
    assert not f.available.any()
    assert "two months" in f.reason[0]


def test_backtest_reports_each_method() -> None:
    rng = np.random.default_rng(1)
    before = rng.integers(80, 120, size=(30, 12)) * 1000
    year = (before * 1.02).astype(np.int64)
    rows = backtest(year, before, range(3, 5))
    assert {(r.method, r.month) for r in rows} == {
        (m, k) for m in ("run_rate", "seasonal_run_rate", "ratio_model") for k in (3, 4)}
    seasonal = [r for r in rows if r.method == "seasonal_run_rate"]
    # the year is exactly last year x 1.02: the profiled run rate is right to the penny
    assert all(r.mean_absolute_percentage_error < 1e-3 for r in seasonal)


# --- freed resources -----------------------------------------------------------------------

def test_freed_resources_worked_example() -> None:
    # budget £1,000,000, outturn £940,000 -> freed £60,000 -> £42,000 reinvestable
    f = freed_resources("A81001", "2025/26", 1_000_000 * POUND, 940_000 * POUND)
    assert f.freed == 60_000 * POUND
    assert f.reinvestable == 42_000 * POUND
    assert f.financial_year == "2025-26"


def test_reinvestable_is_never_below_the_share() -> None:
    # 70% of 1 penny is 0.7p: the holder is entitled to at least that, so 1p
    f = freed_resources("P", "2025-26", 101, 100)
    assert f.reinvestable == 1
    assert freed_resources("P", "2025-26", 100, 130).freed == 0


def test_share_below_seventy_percent_needs_guidance() -> None:
    with pytest.raises(ReinvestmentError, match="name the guidance"):
        ReinvestmentRule(share=Decimal("0.5"))
    rule = ReinvestmentRule(share=Decimal("0.5"), guidance="Local scheme 2008, para 4")
    assert freed_resources("P", "2025-26", 1000, 900, rule).reinvestable == 50


def test_ledger_draws_lapses_and_refuses_overdraw() -> None:
    freed = [freed_resources("G1", "2024-25", 1_000_000, 940_000),  # 42,000 reinvestable
             freed_resources("G1", "2025-26", 500_000, 480_000)]  # 14,000
    draws = [Draw("G1", "2025-26", "falls service", 30_000)]
    ledger = reinvestment_ledger(freed, draws)
    rows = {r.financial_year: r for r in ledger.rows}
    assert rows["2024-25"].closing == 42_000
    r = rows["2025-26"]
    assert (r.opening, r.drawn, r.lapsed, r.freed, r.closing) == (42_000, 30_000, 12_000,
                                                                   14_000, 14_000)
    r = rows["2026-27"]  # 2025-26's vintage not drawn in 2026-27 lapses at its end
    assert (r.opening, r.drawn, r.lapsed, r.closing) == (14_000, 0, 14_000, 0)
    assert [(d.plan, d.vintage, d.amount) for d in ledger.draws] == [
        ("falls service", "2024-25", 30_000)]
    with pytest.raises(ReinvestmentError, match=re.escape("only £420.00 is reinvestable")):
        reinvestment_ledger(freed, [Draw("G1", "2025-26", "big plan", 42_001)])
    with pytest.raises(ReinvestmentError, match="not approved"):
        reinvestment_ledger(freed, [Draw("G1", "2025-26", "p", 1, approved=False)])
    # money freed this year cannot be drawn before the year is closed
    with pytest.raises(ReinvestmentError, match=re.escape("only £0.00")):
        reinvestment_ledger(freed[:1], [Draw("G1", "2024-25", "early", 1)])


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**8), st.integers(0, 10**8)),
                min_size=1, max_size=8),
       st.lists(st.tuples(st.integers(0, 4), st.integers(1, 10**7)), max_size=8))
@settings(max_examples=150, deadline=None)
def test_ledger_always_balances(years: list[tuple[int, int, int]],
                                draws: list[tuple[int, int]]) -> None:
    freed = [freed_resources("P", f"{2020 + y}-{(21 + y) % 100:02d}", b, o) for y, b, o in years]
    ok_draws = []
    for y, amount in draws:
        d = Draw("P", f"{2020 + y}-{(21 + y) % 100:02d}", f"plan{len(ok_draws)}", amount)
        try:
            reinvestment_ledger(freed, [*ok_draws, d])
        except ReinvestmentError:
            continue
        ok_draws.append(d)
    ledger = reinvestment_ledger(freed, ok_draws)
    for r in ledger.rows:
        assert r.closing == r.opening + r.freed - r.drawn - r.lapsed
        assert r.closing >= 0
    total_freed = sum(f.reinvestable for f in freed)
    assert total_freed == (sum(r.drawn for r in ledger.rows) + sum(r.lapsed for r in ledger.rows)
                           + ledger.rows[-1].closing)
    assert sum(d.amount for d in ledger.draws) == sum(d.amount for d in ok_draws)


# --- risk sharing ----------------------------------------------------------------------------

def test_carry_forward_and_write_off() -> None:
    c = settle_overspend("A", 1_000, 1_250)
    assert (c.overspend, c.carried_forward, c.written_off) == (250, 250, 0)
    w = settle_overspend("A", 1_000, 1_250, "write_off")
    assert (w.carried_forward, w.written_off) == (0, 250)
    assert settle_overspend("A", 1_000, 900).overspend == 0


def test_risk_pool_that_runs_out() -> None:
    # three members put 2% of their budgets in: 20,000 + 10,000 + 10,000 = 40,000.
    # Overspends 50,000 (A) and 30,000 (B) = 80,000 > pool: the pool covers 40,000 pro rata
    # (25,000 A, 15,000 B); 40,000 uncovered is shared pro rata to budget (2:1:1):
    # A 20,000, B 10,000, C 10,000.
    policy = RiskPoolPolicy(Decimal("0.02"), "pro_rata_budget")
    s = settle_risk_pool(["A", "B", "C"], [1_000_000, 500_000, 500_000],
                         [1_050_000, 530_000, 480_000], policy)
    m = {x.code: x for x in s.members}
    assert (s.pool, s.used, s.uncovered, s.returned) == (40_000, 40_000, 40_000, 0)
    assert (m["A"].covered_by_pool, m["B"].covered_by_pool) == (25_000, 15_000)
    assert (m["A"].fallback, m["B"].fallback, m["C"].fallback) == (20_000, 10_000, 10_000)
    assert s.commissioner == 0
    # C underspent but still lost its contribution and bears a share of the rest
    assert m["C"].net == 20_000


def test_risk_pool_with_money_left_returns_it() -> None:
    policy = RiskPoolPolicy(Decimal("0.05"))
    s = settle_risk_pool(["A", "B"], [100_000, 300_000], [104_000, 290_000], policy)
    # pool 5,000 + 15,000 = 20,000; A's 4,000 overspend covered; 16,000 returned 1:3
    m = {x.code: x for x in s.members}
    assert (s.used, s.returned) == (4_000, 16_000)
    assert (m["A"].returned, m["B"].returned) == (4_000, 12_000)
    assert (m["A"].net, m["B"].net) == (1_000, 3_000)


def test_risk_pool_falls_back_to_the_commissioner_or_the_overspenders() -> None:
    com = settle_risk_pool(["A", "B"], [1_000, 1_000], [1_500, 1_100],
                           RiskPoolPolicy(Decimal("0.1")))
    assert (com.used, com.commissioner) == (200, 400)
    ovr = settle_risk_pool(["A", "B"], [1_000, 1_000], [1_500, 1_100],
                           RiskPoolPolicy(Decimal("0.1"), "pro_rata_overspend"))
    # pool covers 200 pro rata to overspend (500:100): A 167, B 33; rest 333 + 67 = 400
    m = {x.code: x for x in ovr.members}
    assert (m["A"].covered_by_pool, m["B"].covered_by_pool) == (167, 33)
    assert (m["A"].fallback, m["B"].fallback) == (333, 67)


@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)), min_size=1,
                max_size=12),
       st.decimals(min_value=0, max_value=1, places=3),
       st.sampled_from(["commissioner", "pro_rata_budget", "pro_rata_overspend"]))
@settings(max_examples=200, deadline=None)
def test_risk_pool_always_reconciles(rows: list[tuple[int, int]], share: Decimal,
                                     fallback: str) -> None:
    budgets = [b for b, _ in rows]
    outturns = [o for _, o in rows]
    policy = RiskPoolPolicy(share, fallback)  # type: ignore[arg-type]
    try:
        s = settle_risk_pool([f"P{i}" for i in range(len(rows))], budgets, outturns, policy)
    except SettlementError as exc:
        assert "every weight is zero" in str(exc)  # pro rata to budget, all budgets zero
        return
    s.check()
    for m in s.members:
        assert 0 <= m.covered_by_pool <= m.overspend
        assert m.returned <= m.contribution


def test_real_budget_with_a_cap_that_binds() -> None:
    terms = RealBudgetTerms(savings_share=Decimal("0.5"), overspend_share=Decimal("0.5"),
                            savings_cap=None, overspend_cap=100_000)
    # overspend 300,000: half is 150,000 but the cap is 100,000; commissioner bears 200,000
    s = settle_real_budget("LCP1", 10_000_000, 10_300_000, terms)
    assert (s.variance, s.group, s.commissioner, s.capped) == (300_000, 100_000, 200_000, True)
    # saving 40,001: the group keeps half, rounded half up (20,001), commissioner 20,000
    k = settle_real_budget("LCP1", 10_000_000, 9_959_999, terms)
    assert (k.variance, k.group, k.commissioner, k.capped) == (-40_001, -20_001, -20_000,
                                                               False)


@given(st.integers(0, 10**10), st.integers(0, 10**10),
       st.decimals(min_value=0, max_value=1, places=4),
       st.decimals(min_value=0, max_value=1, places=4),
       st.one_of(st.none(), st.integers(0, 10**9)))
@settings(max_examples=200, deadline=None)
def test_real_budget_always_reconciles(budget: int, outturn: int, ks: Decimal, ko: Decimal,
                                       cap: int | None) -> None:
    s = settle_real_budget("G", budget, outturn, RealBudgetTerms(ks, ko, cap, cap))
    assert s.group + s.commissioner == outturn - budget
    if cap is not None:
        assert abs(s.group) <= cap
