"""Projected savings of a business case, computed by pbc rather than typed in (pure).

The proposer's **baseline** is its own priced activity in the case's scope in one financial
year (the count of rows, their tariff value and the sum of the squared tariff values, all in
pence; :class:`Baseline`, read from the warehouse by :mod:`pbc.services.cases`). The case
states the **expected change** (a reduction ``r``, e.g. 0.15 for 15% fewer admissions, with
its standard deviation) and the **investment** for each year of the case.

Point projection, to the penny, for each year ``y`` of the case::

    gross_y = round_half_up(baseline_pence * r)        (the baseline assumed flat)
    net_y   = gross_y - investment_y
    net     = sum of net_y

Interval (Monte Carlo, seeded): the uncertain assumptions are the effect size and the
baseline's year-to-year variation. Activity arrives as a compound Poisson process (rows
independent, prices as observed), so one year's spend varies around its mean with variance
``sum of squared row prices`` (``sigma^2``). The baseline year is itself one such year, so
next year's spend differs from it by the mean's uncertainty (shared by every year of the
case) plus that year's own variation::

    r_draw  ~ Normal(r, sd_r)                           one per draw
    mean    = baseline + Normal(0, sigma)               one per draw
    spend_y = mean + Normal(0, sigma)                   one per year and draw
    net     = sum_y (spend_y * r_draw) - sum_y investment_y

and the interval is the central ``level`` share of the draws (5th and 95th percentiles for
90%). ``tests/test_savings.py`` checks its coverage in a simulation study.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from pbc.budgets.money import format_pounds

#: Monte Carlo draws of the interval
DRAWS = 20_000
#: central share of the draws the interval holds
LEVEL = 0.9


@dataclass(frozen=True)
class Baseline:
    """The proposer's priced activity in scope in one financial year (pence)."""

    financial_year: str
    rows: int
    spend_pence: int
    sum_squares_pence: int  # sum over rows of (tariff value in pence) squared
    description: str = ""

    def __post_init__(self) -> None:
        if self.rows < 0 or self.spend_pence < 0 or self.sum_squares_pence < 0:
            raise ValueError("a baseline's rows and money cannot be negative")

    @property
    def sigma_pence(self) -> float:
        """Standard deviation of one year's spend (compound Poisson)."""
        return math.sqrt(self.sum_squares_pence)


@dataclass(frozen=True)
class YearSaving:
    financial_year: str
    gross_pence: int
    investment_pence: int

    @property
    def net_pence(self) -> int:
        return self.gross_pence - self.investment_pence


@dataclass(frozen=True)
class Projection:
    baseline: Baseline
    reduction: Decimal
    reduction_sd: Decimal
    years: tuple[YearSaving, ...]
    lower_pence: int
    upper_pence: int
    level: float
    draws: int
    seed: int
    assumptions: tuple[str, ...] = field(default=())

    @property
    def gross_pence(self) -> int:
        return sum(y.gross_pence for y in self.years)

    @property
    def investment_pence(self) -> int:
        return sum(y.investment_pence for y in self.years)

    @property
    def net_pence(self) -> int:
        return self.gross_pence - self.investment_pence

    def as_dict(self) -> dict[str, object]:
        """Everything the case stores and shows (money in pence)."""
        b = self.baseline
        return {
            "baseline": {"financial_year": b.financial_year, "rows": b.rows,
                         "spend_pence": b.spend_pence,
                         "sum_squares_pence": b.sum_squares_pence,
                         "description": b.description},
            "reduction": str(self.reduction), "reduction_sd": str(self.reduction_sd),
            "years": [{"financial_year": y.financial_year, "gross_pence": y.gross_pence,
                       "investment_pence": y.investment_pence, "net_pence": y.net_pence}
                      for y in self.years],
            "gross_pence": self.gross_pence, "investment_pence": self.investment_pence,
            "net_pence": self.net_pence, "interval": {
                "level": self.level, "lower_pence": self.lower_pence,
                "upper_pence": self.upper_pence, "draws": self.draws, "seed": self.seed},
            "assumptions": list(self.assumptions),
        }


def gross_saving(spend_pence: int, reduction: Decimal) -> int:
    """``spend x reduction`` rounded half up to the penny (exact decimal arithmetic)."""
    return int((Decimal(spend_pence) * reduction).quantize(Decimal(1), ROUND_HALF_UP))


def project(baseline: Baseline, reduction: Decimal, reduction_sd: Decimal,
            investment_pence: Mapping[str, int], *, seed: int, draws: int = DRAWS,
            level: float = LEVEL) -> Projection:
    """The case's savings by year, net of investment, with a Monte Carlo interval.

    ``investment_pence`` names every financial year of the case (0 where nothing is
    invested that year); savings accrue in each of them."""
    if not investment_pence:
        raise ValueError("a case needs at least one financial year (its investment by year)")
    if reduction_sd < 0:
        raise ValueError("the effect's standard deviation cannot be negative")
    if not 0 < level < 1 or draws < 100:
        raise ValueError("level must be between 0 and 1 and draws at least 100")
    years = tuple(YearSaving(fy, gross_saving(baseline.spend_pence, reduction), int(inv))
                  for fy, inv in sorted(investment_pence.items()))
    lower, upper = interval(baseline, float(reduction), float(reduction_sd), len(years),
                            sum(y.investment_pence for y in years), seed=seed, draws=draws,
                            level=level)
    b = baseline
    cv = b.sigma_pence / b.spend_pence if b.spend_pence else 0.0
    assumptions = (
        f"baseline: {b.rows:,} rows of the proposer's priced activity in {b.financial_year} "
        f"({b.description or 'the case scope'}), tariff value {format_pounds(b.spend_pence)} "
        "(prices as pbc priced that year's activity, before the emergency marginal rate)",
        "the baseline is flat: each year of the case would, without it, cost what the "
        "baseline year cost",
        f"effect: {float(reduction):.1%} of the baseline's tariff value saved each year "
        f"(standard deviation {float(reduction_sd):.1%}, normal)",
        f"year-to-year variation of the baseline: compound Poisson, standard deviation "
        f"{format_pounds(round(b.sigma_pence))} ({cv:.1%} of the baseline), for the "
        "baseline year's own noise and for each later year's",
        "investment: " + ", ".join(f"{y.financial_year} {format_pounds(y.investment_pence)}"
                                   for y in years),
        f"interval: central {level:.0%} of {draws:,} Monte Carlo draws, seed {seed}",
    )
    return Projection(baseline, reduction, reduction_sd, years, lower, upper, level, draws,
                      seed, assumptions)


def interval(baseline: Baseline, reduction: float, reduction_sd: float, n_years: int,
             investment_pence: int, *, seed: int, draws: int = DRAWS,
             level: float = LEVEL) -> tuple[int, int]:
    """The Monte Carlo interval of the net saving over ``n_years`` (pence, rounded)."""
    rng = np.random.default_rng(seed)
    sigma = baseline.sigma_pence
    effect = rng.normal(reduction, reduction_sd, draws) if reduction_sd > 0 else \
        np.full(draws, reduction)
    mean = baseline.spend_pence + rng.normal(0.0, sigma, draws)
    spend = mean[:, None] + rng.normal(0.0, sigma, (draws, n_years))
    net = (spend * effect[:, None]).sum(axis=1) - investment_pence
    tail = (1 - level) / 2
    lo, hi = np.quantile(net, [tail, 1 - tail])
    return round(float(lo)), round(float(hi))
