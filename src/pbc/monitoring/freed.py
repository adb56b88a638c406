"""Freed resources and their reinvestment under practice-based commissioning.

Rule (Department of Health, 2006/07 onward; Hansard, Commons written answer, 6 November
2006): "individual practices should be entitled to access and redirect **at least 70 per
cent** of any freed-up resource". pbc therefore computes, per budget holder (practice or
group) and financial year:

* ``freed = budget - outturn`` where positive, else 0 (an overspend frees nothing: it is
  settled by :mod:`pbc.monitoring.risk_sharing`);
* ``reinvestable = freed x share``, rounded **up** to the penny so the holder is never
  entitled to less than the share (``share`` defaults to 0.70; a lower share is refused
  unless the policy names the guidance it follows).

Worked example (the rule above): budget £1,000,000, outturn £940,000 -> freed £60,000 ->
£42,000 reinvestable.

The reinvestment ledger keeps what is reinvestable by the year it was freed (its
*vintage*). A vintage freed at the end of year Y can be drawn, against approved plans only,
in the ``carry_years`` years that follow (default 1, i.e. during Y+1); what is not drawn by
then lapses to the commissioner. Draws use the oldest vintage first. A draw larger than the
balance is refused with the figures, never partly made.

All money is integer pence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from pbc.calendar import format_financial_year, parse_financial_year

#: the share of freed resources a budget holder may reinvest, at least (DH 2006)
MINIMUM_SHARE = Decimal("0.70")


class ReinvestmentError(ValueError):
    """A reinvestment that the rules do not allow (the message gives the figures)."""


@dataclass(frozen=True)
class ReinvestmentRule:
    """How much of freed resources a holder may reinvest, and for how long.

    ``share`` below :data:`MINIMUM_SHARE` is allowed only with ``guidance`` naming the
    local or national guidance that sets it."""

    share: Decimal = MINIMUM_SHARE
    carry_years: int = 1
    guidance: str | None = None

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.share <= Decimal(1):
            raise ReinvestmentError(f"reinvestable share must be 0 to 1, not {self.share}")
        if self.share < MINIMUM_SHARE and not (self.guidance or "").strip():
            raise ReinvestmentError(
                f"reinvestable share {self.share} is below the {MINIMUM_SHARE} that "
                "practice-based commissioning guarantees; name the guidance that sets it "
                "(reinvestment.guidance in the policy)")
        if self.carry_years < 1:
            raise ReinvestmentError("carry_years must be at least 1")


@dataclass(frozen=True)
class FreedResources:
    """Freed resources of one holder for one year (pence)."""

    code: str
    financial_year: str
    budget: int
    outturn: int
    freed: int
    reinvestable: int


def reinvestable_share(freed: int, share: Decimal) -> int:
    """``freed x share`` rounded up to the penny (never less than the share)."""
    if freed < 0:
        raise ReinvestmentError(f"freed resources cannot be negative ({freed} pence)")
    return int((Decimal(freed) * share).to_integral_value(rounding=ROUND_CEILING))


def freed_resources(code: str, financial_year: str, budget: int, outturn: int,
                    rule: ReinvestmentRule | None = None) -> FreedResources:
    """Freed resources and the reinvestable part for one holder and year."""
    rule = rule or ReinvestmentRule()
    freed = max(int(budget) - int(outturn), 0)
    fy = format_financial_year(parse_financial_year(financial_year), "-")
    return FreedResources(code, fy, int(budget), int(outturn), freed,
                          reinvestable_share(freed, rule.share))


@dataclass(frozen=True)
class Draw:
    """A drawdown against an approved plan (pence), in a financial year."""

    code: str
    financial_year: str
    plan: str
    amount: int
    approved: bool = True


@dataclass(frozen=True)
class LedgerRow:
    """One holder's reinvestment account for one year (pence):
    ``closing = opening + freed - drawn - lapsed``."""

    code: str
    financial_year: str
    opening: int
    freed: int
    drawn: int
    lapsed: int
    closing: int


@dataclass(frozen=True)
class PlanDraw:
    """How one draw was funded: from which vintage (year freed)."""

    code: str
    financial_year: str
    plan: str
    vintage: str
    amount: int


@dataclass(frozen=True)
class Ledger:
    rows: list[LedgerRow]
    draws: list[PlanDraw]


def reinvestment_ledger(freed: Iterable[FreedResources], draws: Sequence[Draw],
                        rule: ReinvestmentRule | None = None) -> Ledger:
    """The reinvestment ledger by holder and year (see the module docstring).

    Raises :class:`ReinvestmentError` for a draw against a plan that is not approved, or
    larger than the holder's balance at the start of that year."""
    rule = rule or ReinvestmentRule()
    by_code: dict[str, dict[int, int]] = {}
    for f in freed:
        by_code.setdefault(f.code, {})
        y = parse_financial_year(f.financial_year)
        by_code[f.code][y] = by_code[f.code].get(y, 0) + f.reinvestable
    draws_by: dict[tuple[str, int], list[Draw]] = {}
    for d in draws:
        if d.amount <= 0:
            raise ReinvestmentError(f"plan {d.plan}: a draw must be a positive amount")
        draws_by.setdefault((d.code, parse_financial_year(d.financial_year)), []).append(d)
        by_code.setdefault(d.code, {})
    rows: list[LedgerRow] = []
    funded: list[PlanDraw] = []
    for code in sorted(by_code):
        years = set(by_code[code]) | {y for (c, y) in draws_by if c == code}
        if not years:
            continue
        first, last = min(years), max(years) + rule.carry_years
        vintages: dict[int, int] = {}  # year freed -> balance left
        for y in range(first, last + 1):
            fy = format_financial_year(y, "-")
            opening = sum(vintages.values())
            drawn = 0
            for d in draws_by.get((code, y), []):
                if not d.approved:
                    raise ReinvestmentError(
                        f"{code} {fy}: plan {d.plan} is not approved; reinvestment is "
                        "drawn only against plans the commissioner has approved")
                available = sum(vintages.values())
                if d.amount > available:
                    raise ReinvestmentError(
                        f"{code} {fy}: plan {d.plan} asks for £{d.amount / 100:,.2f} but "
                        f"only £{available / 100:,.2f} is reinvestable")
                left = d.amount
                for v in sorted(vintages):
                    take = min(left, vintages[v])
                    if take:
                        vintages[v] -= take
                        left -= take
                        funded.append(PlanDraw(code, fy, d.plan,
                                               format_financial_year(v, "-"), take))
                drawn += d.amount
            lapsed = sum(b for v, b in vintages.items() if v + rule.carry_years <= y)
            vintages = {v: b for v, b in vintages.items()
                        if v + rule.carry_years > y and b > 0}
            new = by_code[code].get(y, 0)
            if new:
                vintages[y] = vintages.get(y, 0) + new
            closing = opening + new - drawn - lapsed
            assert closing == sum(vintages.values())
            rows.append(LedgerRow(code, fy, opening, new, drawn, lapsed, closing))
    return Ledger(rows, funded)
