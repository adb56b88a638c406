"""Who bears an overspend and who keeps a saving: carry-forward, group risk pools and
real budgets (local clinical partnerships).

Practice-based commissioning let practices offset overspends against later savings, and
a group (consortium) could hold a risk pool; budgets stayed indicative, with the
commissioner legally accountable (Department of Health, *Practice based commissioning:
promoting clinical engagement*, 2004; *Practice based commissioning: budget setting
refinements and clarification of health reform incentive schemes and governance*, 2007).
Groups that take real budgets (local clinical partnerships) keep a set share of savings
and bear a set share of overspends up to a cap. pbc implements these as policy: the
numbers are parameters, the arithmetic is exact.

Every settlement here reconciles to the penny: what the parties bear (positive) and keep
(negative) adds up to the total variance (spend - budget). Money is integer pence; a share
of an amount is rounded half up and the counterpart takes the remainder, and pro-rata
splits use the largest-remainder rule of :mod:`pbc.budgets.money`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

import numpy as np

from pbc.budgets.money import largest_remainder


class SettlementError(ValueError):
    """A settlement rule that cannot be applied (the message says why)."""


def share_of(amount: int, share: Decimal) -> int:
    """``amount x share`` in pence, rounded half up (away from zero)."""
    value = (Decimal(abs(int(amount))) * share).to_integral_value(rounding=ROUND_HALF_UP)
    return int(value) if amount >= 0 else -int(value)


def _pro_rata(total: int, weights: Sequence[int]) -> list[int]:
    w = np.asarray(weights, dtype=np.float64)
    if total and (w.size == 0 or w.sum() <= 0):
        raise SettlementError(f"cannot share {total} pence: every weight is zero")
    return [int(v) for v in largest_remainder(w, int(total))]


# --- carry forward -------------------------------------------------------------------

OverspendRule = Literal["carry_forward", "write_off"]


@dataclass(frozen=True)
class CarryForward:
    """An overspend of one year and what happens to it (pence)."""

    code: str
    overspend: int
    carried_forward: int  # taken off the holder's next budget
    written_off: int  # absorbed by the commissioner


def settle_overspend(code: str, budget: int, outturn: int,
                     rule: OverspendRule = "carry_forward") -> CarryForward:
    """An overspend (``outturn > budget``) is carried forward to the next year's budget or
    written off; ``carried_forward + written_off = overspend``."""
    over = max(int(outturn) - int(budget), 0)
    if rule == "carry_forward":
        return CarryForward(code, over, over, 0)
    if rule == "write_off":
        return CarryForward(code, over, 0, over)
    raise SettlementError(f"unknown overspend rule {rule!r}: carry_forward or write_off")


# --- group risk pool -----------------------------------------------------------------

Fallback = Literal["commissioner", "pro_rata_budget", "pro_rata_overspend"]


@dataclass(frozen=True)
class RiskPoolPolicy:
    """A group's risk pool: each member puts ``contribution_share`` of its budget in; the
    pool covers members' overspends first; what it cannot cover falls by ``fallback``:
    the commissioner absorbs it, or the members share it pro rata to budget, or the
    overspending members share it pro rata to their overspends. What is left in the pool is
    returned to the members pro rata to their contributions."""

    contribution_share: Decimal
    fallback: Fallback = "commissioner"

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.contribution_share <= Decimal(1):
            raise SettlementError("contribution_share must be 0 to 1")
        if self.fallback not in ("commissioner", "pro_rata_budget", "pro_rata_overspend"):
            raise SettlementError(f"unknown fallback {self.fallback!r}")


@dataclass(frozen=True)
class PoolMember:
    """One member's part in a risk pool settlement (pence).

    ``net`` is what the member bears in the end, beyond its own budget:
    ``contribution - returned + fallback``; its overspend is covered by
    ``covered_by_pool + fallback share`` (its own or others') and the commissioner."""

    code: str
    budget: int
    outturn: int
    overspend: int
    contribution: int
    covered_by_pool: int
    returned: int
    fallback: int
    net: int


@dataclass(frozen=True)
class PoolSettlement:
    members: list[PoolMember]
    pool: int
    used: int
    returned: int
    uncovered: int
    commissioner: int  # the commissioner's share of the uncovered overspends

    def check(self) -> None:
        """Overspends = pool used + fallback borne by members + commissioner, to the penny;
        contributions = used + returned."""
        over = sum(m.overspend for m in self.members)
        fb = sum(m.fallback for m in self.members)
        if over != self.used + fb + self.commissioner:
            raise SettlementError(f"risk pool does not reconcile: overspends {over} != pool "
                                  f"{self.used} + members {fb} + commissioner "
                                  f"{self.commissioner}")
        if self.pool != self.used + self.returned:
            raise SettlementError("risk pool does not reconcile: contributions != used + "
                                  "returned")


def settle_risk_pool(codes: Sequence[str], budgets: Sequence[int], outturns: Sequence[int],
                     policy: RiskPoolPolicy) -> PoolSettlement:
    """Settle a group's year through its risk pool (see :class:`RiskPoolPolicy`)."""
    if not (len(codes) == len(budgets) == len(outturns)):
        raise SettlementError("codes, budgets and outturns must be the same length")
    b = [int(x) for x in budgets]
    o = [int(x) for x in outturns]
    over = [max(oi - bi, 0) for bi, oi in zip(b, o, strict=True)]
    contrib = [share_of(bi, policy.contribution_share) for bi in b]
    pool = sum(contrib)
    total_over = sum(over)
    used = min(pool, total_over)
    covered = over if used == total_over else _pro_rata(used, over)
    uncovered = total_over - used
    returned_total = pool - used
    returned = _pro_rata(returned_total, contrib) if returned_total else [0] * len(b)
    fallback = [0] * len(b)
    commissioner = 0
    if uncovered:
        if policy.fallback == "commissioner":
            commissioner = uncovered
        elif policy.fallback == "pro_rata_budget":
            fallback = _pro_rata(uncovered, b)
        else:
            remaining = [oi - ci for oi, ci in zip(over, covered, strict=True)]
            fallback = _pro_rata(uncovered, remaining)
    members = [
        PoolMember(c, bi, oi, ov, ct, cv, rt, fb, ct - rt + fb)
        for c, bi, oi, ov, ct, cv, rt, fb in zip(codes, b, o, over, contrib, covered,
                                                  returned, fallback, strict=True)
    ]
    out = PoolSettlement(members, pool, used, returned_total, uncovered, commissioner)
    out.check()
    return out


# --- real budgets ----------------------------------------------------------------------

@dataclass(frozen=True)
class RealBudgetTerms:
    """Terms of a real (not indicative) budget held by a group: it keeps
    ``savings_share`` of an underspend and bears ``overspend_share`` of an overspend, each
    up to its cap (pence; None for no cap); the commissioner takes the rest."""

    savings_share: Decimal
    overspend_share: Decimal
    savings_cap: int | None = None
    overspend_cap: int | None = None

    def __post_init__(self) -> None:
        for name in ("savings_share", "overspend_share"):
            if not Decimal(0) <= getattr(self, name) <= Decimal(1):
                raise SettlementError(f"{name} must be 0 to 1")
        for name in ("savings_cap", "overspend_cap"):
            cap = getattr(self, name)
            if cap is not None and cap < 0:
                raise SettlementError(f"{name} cannot be negative")


@dataclass(frozen=True)
class RealBudgetSettlement:
    """``variance = group + commissioner`` (pence; positive = bears an overspend, negative
    = keeps a saving). ``capped`` is True where a cap bound."""

    code: str
    budget: int
    outturn: int
    variance: int
    group: int
    commissioner: int
    capped: bool


def settle_real_budget(code: str, budget: int, outturn: int,
                       terms: RealBudgetTerms) -> RealBudgetSettlement:
    """Share a real budget's variance between the group and the commissioner."""
    variance = int(outturn) - int(budget)
    if variance >= 0:
        part = share_of(variance, terms.overspend_share)
        cap = terms.overspend_cap
    else:
        part = share_of(variance, terms.savings_share)
        cap = terms.savings_cap
    capped = cap is not None and abs(part) > cap
    if capped:
        assert cap is not None
        part = cap if variance >= 0 else -cap
    return RealBudgetSettlement(code, int(budget), int(outturn), variance, part,
                                variance - part, capped)
