"""A contract's plan against actual priced activity, by service line and month.

For each service line of the plan (and any line with actual activity outside it) and each
month from April to the month asked, the plan's activity and money, the actual activity
and money, the variance (actual - plan), and the same three to date (year to date, from
April). A ``total`` line adds the service lines up month by month. Money in pence.

Which money: the plan is priced at tariff, and the actual is the **tariff value**
(:data:`pbc.pricing.schema.TARIFF_VALUE_SQL`), the price before the emergency marginal rate.
The marginal-rate cut is a settlement of the contract against its baseline for the year
(docs/money.md): it falls on the spells discharged after the running value passes the
baseline, so counted month by month it would show the last months of the year under plan
for no change in activity. The position shows the cut to date apart
(:attr:`ContractPosition.marginal_rate_pence`), so that the amount payable is the tariff
value plus the cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

TOTAL = "total"


@dataclass(frozen=True)
class MonthPlan:
    """A service line's plan: activity and money (pence) for each month, April first."""

    activity: tuple[int, ...]
    pence: tuple[int, ...]


@dataclass(frozen=True)
class PositionRow:
    service_line: str
    month: int  # 1 = April
    plan_activity: int
    plan_pence: int
    actual_activity: int
    actual_pence: int
    ytd_plan_activity: int
    ytd_plan_pence: int
    ytd_actual_activity: int
    ytd_actual_pence: int

    @property
    def variance_activity(self) -> int:
        return self.actual_activity - self.plan_activity

    @property
    def variance_pence(self) -> int:
        return self.actual_pence - self.plan_pence

    @property
    def ytd_variance_activity(self) -> int:
        return self.ytd_actual_activity - self.ytd_plan_activity

    @property
    def ytd_variance_pence(self) -> int:
        return self.ytd_actual_pence - self.ytd_plan_pence


@dataclass(frozen=True)
class ContractPosition:
    month: int
    rows: list[PositionRow]
    #: the marginal-rate adjustment of the contract's spells to date (pence, <= 0)
    marginal_rate_pence: int = 0

    def row(self, service_line: str, month: int) -> PositionRow:
        return next(r for r in self.rows if (r.service_line, r.month) == (service_line, month))

    @property
    def year_to_date(self) -> list[PositionRow]:
        """The rows of the last month: each line's year to date, and the total."""
        return [r for r in self.rows if r.month == self.month]


def contract_position(plan: Mapping[str, MonthPlan],
                      actual: Mapping[tuple[str, int], tuple[int, int]], month: int, *,
                      marginal_rate_pence: int = 0) -> ContractPosition:
    """Plan against actual to ``month`` (1 = April ... 12 = March). ``actual``:
    (service line, month) -> (activity, pence)."""
    if not 1 <= month <= 12:
        raise ValueError(f"month {month}: expected 1 (April) to 12 (March)")
    lines = list(plan) + sorted({sl for sl, _ in actual} - set(plan))
    rows: list[PositionRow] = []
    for sl in [*lines, TOTAL]:
        ytd = [0, 0, 0, 0]
        for m in range(1, month + 1):
            if sl == TOTAL:
                pa = sum(plan[x].activity[m - 1] for x in plan)
                pp = sum(plan[x].pence[m - 1] for x in plan)
                aa = sum(actual.get((x, m), (0, 0))[0] for x in lines)
                ap = sum(actual.get((x, m), (0, 0))[1] for x in lines)
            else:
                p = plan.get(sl)
                pa, pp = (p.activity[m - 1], p.pence[m - 1]) if p else (0, 0)
                aa, ap = actual.get((sl, m), (0, 0))
            ytd = [ytd[0] + pa, ytd[1] + pp, ytd[2] + aa, ytd[3] + ap]
            rows.append(PositionRow(sl, m, pa, pp, aa, ap, *ytd))
    return ContractPosition(month, rows, marginal_rate_pence)
