"""Projected savings of a business case: a hand-worked case to the penny, exact money
(property), a seeded interval, and a simulation study of the interval's coverage."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbc.decisions.savings import Baseline, gross_saving, interval, project


def baseline_of(prices_pence: list[int], year: str = "2025-26") -> Baseline:
    return Baseline(year, len(prices_pence), sum(prices_pence),
                    sum(p * p for p in prices_pence))


def test_hand_worked_case_to_the_penny() -> None:
    # Baseline: 80 spells at £1,234.56, 40 at £2,469.13 and one at £333.33 (tariff value):
    #   80 x 1,234.56 = 98,764.80; 40 x 2,469.13 = 98,765.20; + 333.33 = £197,863.33.
    # Effect 15%: 197,863.33 x 0.15 = 29,679.4995 -> £29,679.50 a year (half up, penny).
    # Investment: 2026-27 £20,000.00, 2027-28 £5,000.50.
    #   2026-27 net = 29,679.50 - 20,000.00 = £9,679.50
    #   2027-28 net = 29,679.50 -  5,000.50 = £24,679.00
    #   total net   = £34,358.50 (gross £59,359.00 less investment £25,000.50)
    prices = [123_456] * 80 + [246_913] * 40 + [33_333]
    b = baseline_of(prices)
    assert b.spend_pence == 19_786_333
    p = project(b, Decimal("0.15"), Decimal("0.05"),
                {"2027-28": 500_050, "2026-27": 2_000_000}, seed=7)
    assert [(y.financial_year, y.gross_pence, y.investment_pence, y.net_pence)
            for y in p.years] == [("2026-27", 2_967_950, 2_000_000, 967_950),
                                  ("2027-28", 2_967_950, 500_050, 2_467_900)]
    assert (p.gross_pence, p.investment_pence, p.net_pence) == (5_935_900, 2_500_050,
                                                                3_435_850)
    assert p.lower_pence < p.net_pence < p.upper_pence
    text = "\n".join(p.assumptions)
    for shown in ("121 rows", "£197,863.33", "15.0%", "standard deviation 5.0%",
                  "2026-27 £20,000.00", "2027-28 £5,000.50", "seed 7", "compound Poisson"):
        assert shown in text
    d = p.as_dict()
    assert d["net_pence"] == 3_435_850 and d["interval"]["seed"] == 7


def test_rounding_is_half_up_on_the_exact_product() -> None:
    assert gross_saving(10, Decimal("0.15")) == 2  # 1.5 -> 2
    assert gross_saving(30, Decimal("0.15")) == 5  # 4.5 -> 5
    assert gross_saving(29, Decimal("0.15")) == 4  # 4.35 -> 4
    # float arithmetic would give 0.15 * 19786333 = 2967949.9499999997 -> ...950 only by luck
    assert gross_saving(3, Decimal("0.5")) == 2


@given(st.lists(st.integers(0, 10_000_000), max_size=50),
       st.decimals(Decimal("-0.5"), Decimal("1"), places=3),
       st.dictionaries(st.sampled_from(["2026-27", "2027-28", "2028-29"]),
                       st.integers(0, 10**9), min_size=1))
def test_net_is_gross_less_investment_to_the_penny(prices: list[int], reduction: Decimal,
                                                   investment: dict[str, int]) -> None:
    b = baseline_of(prices)
    p = project(b, reduction, Decimal("0.02"), investment, seed=1, draws=200)
    assert p.investment_pence == sum(investment.values())
    assert p.net_pence == p.gross_pence - p.investment_pence
    assert p.net_pence == sum(y.net_pence for y in p.years)
    exact = Decimal(b.spend_pence) * reduction
    for y in p.years:
        assert abs(Decimal(y.gross_pence) - exact) <= Decimal("0.5")


def test_interval_is_seeded() -> None:
    b = baseline_of([150_000] * 200)
    a = interval(b, 0.15, 0.05, 2, 1_000_000, seed=11)
    assert a == interval(b, 0.15, 0.05, 2, 1_000_000, seed=11)
    assert a != interval(b, 0.15, 0.05, 2, 1_000_000, seed=12)


def test_refuses_what_it_cannot_do() -> None:
    b = baseline_of([100])
    with pytest.raises(ValueError, match="at least one financial year"):
        project(b, Decimal("0.1"), Decimal("0"), {}, seed=1)
    with pytest.raises(ValueError, match="cannot be negative"):
        project(b, Decimal("0.1"), Decimal("-0.1"), {"2026-27": 0}, seed=1)


def _study(rng: np.random.Generator, *, reps: int, rate: float, reduction: float,
           reduction_sd: float, years: int, level: float) -> float:
    """Share of replications whose realised net saving lies in pbc's interval.

    Each replication is a practice whose in-scope activity arrives as a Poisson process
    (``rate`` spells a year) with skewed prices (log-normal, median £1,800); pbc sees one
    baseline year. The true effect is drawn from the distribution the case states; the
    realised saving is that effect times the spend the later years would have had."""
    covered = 0
    investment = 3_000_000
    for i in range(reps):
        def year() -> np.ndarray:
            n = rng.poisson(rate)
            return np.round(rng.lognormal(np.log(180_000), 0.8, n)).astype(np.int64)

        seen = year()
        b = Baseline("2025-26", len(seen), int(seen.sum()), int((seen * seen).sum()))
        effect = rng.normal(reduction, reduction_sd) if reduction_sd else reduction
        later = sum(int(year().sum()) for _ in range(years))
        truth = effect * later - investment
        lo, hi = interval(b, reduction, reduction_sd, years, investment, seed=i,
                          draws=4000, level=level)
        covered += lo <= truth <= hi
    return covered / reps


@pytest.mark.parametrize("reduction_sd", [0.0, 0.05])
def test_interval_covers_the_realised_saving_at_its_nominal_rate(reduction_sd: float) -> None:
    """Simulation study (docs/decisions.md): 600 practices, 90% intervals. With a known
    effect the baseline's variation is all the uncertainty, so the variance model is tested
    on its own (an interval that forgot the baseline year's own noise covers about 66%)."""
    rng = np.random.default_rng(2026)
    coverage = _study(rng, reps=600, rate=150, reduction=0.15, reduction_sd=reduction_sd,
                      years=2, level=0.9)
    # binomial standard error at 600 replications is 1.2 points: 0.86 .. 0.94 is +-3.3 SE
    assert 0.86 <= coverage <= 0.94, coverage
