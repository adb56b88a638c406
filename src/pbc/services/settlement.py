"""Year-end settlement as a use case: who bears each overspend and who keeps each saving.

The budget policy's ``[risk_sharing]`` section says how (see :mod:`pbc.budgets.policy`):

* a group on a **real budget** (a local clinical partnership) settles as one holder: its
  variance (the group's spend by activity date against the budgets of its members in each
  month, as ``pbc monitor --level group``) is shared with the commissioner by the terms'
  shares and caps (:func:`pbc.monitoring.risk_sharing.settle_real_budget`);
* the members of a group with a **risk pool** settle through it
  (:func:`pbc.monitoring.risk_sharing.settle_risk_pool`): members are the practices in the
  group on the last day of the year (31 March), each with its own budget and outturn;
* every other practice's **overspend** is carried forward to its next budget or written
  off, as the policy says; its underspend is freed resources (``pbc freed-resources``).

Outturns are actual spend when all twelve months are loaded, else the forecast at the
latest month (each row's ``outturn_basis`` says which): during the year this is a forecast
settlement, and the output says so. Every row reconciles: ``holder + pool + commissioner =
variance``, to the penny, and the transfers between a pool's members add up to zero.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd

from pbc.budgets.groups import groups_on
from pbc.budgets.policy import BudgetPolicy, read_policy
from pbc.calendar import normalise_financial_year, parse_financial_year
from pbc.monitoring.forecast import Method
from pbc.monitoring.risk_sharing import (
    RealBudgetTerms,
    RiskPoolPolicy,
    settle_overspend,
    settle_real_budget,
    settle_risk_pool,
)
from pbc.services.monitoring import Outturn, year_outturns
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse, WarehouseError

COLUMNS = ("arrangement", "group_code", "code", "budget", "outturn", "outturn_basis",
           "variance", "holder", "pool", "commissioner", "carried_forward", "note")


@dataclass(frozen=True)
class Settlement:
    """One row per settled holder (pence): ``holder`` is what the holder bears (positive)
    or keeps (negative) itself, ``pool`` what other members of its risk pool bear for it
    (negative: what it bears for them; a pool's column adds up to zero) and
    ``commissioner`` what the commissioner bears or keeps."""

    financial_year: str
    frame: pd.DataFrame
    #: True when any outturn is a forecast (the year is not complete)
    forecast: bool

    def check(self) -> None:
        """Every row: holder + pool + commissioner = variance; every pool: its members'
        transfers add up to zero (to the penny)."""
        f = self.frame
        bad = f[f.holder + f["pool"] + f.commissioner != f.variance]
        if len(bad):
            raise WarehouseError(f"settlement does not reconcile for {', '.join(bad.code)}")
        pools = f[f.arrangement == "risk pool"].groupby("group_code")["pool"].sum()
        if (pools != 0).any():
            raise WarehouseError("a risk pool's transfers do not add up to zero: "
                                 f"{', '.join(pools[pools != 0].index)}")


def _pence(pounds: Decimal | None) -> int | None:
    return None if pounds is None else int((pounds * 100).to_integral_value())


def _groups_at_year_end(warehouse: Warehouse, financial_year: str) -> dict[str, str | None]:
    con = warehouse.connect()
    try:
        practices = con.execute("SELECT practice_code, group_code FROM practices").df()
        windows = (con.execute("SELECT practice_code, group_code, valid_from, valid_to "
                               "FROM practice_groups").df()
                   if warehouse.has_table("practice_groups") else None)
    finally:
        con.close()
    last = dt.date(parse_financial_year(financial_year) + 1, 3, 31)
    on = groups_on([last], practices, windows)
    return {str(r.practice_code): (None if r.group_code is None else str(r.group_code))
            for r in on.itertuples()}


def settle(warehouse: Warehouse, who: Principal, policy: BudgetPolicy | Path, *,
           financial_year: str | None = None, method: Method = "seasonal_run_rate"
           ) -> Settlement:
    """The year-end settlement of ``financial_year`` (default: the policy's) under the
    policy's ``[risk_sharing]`` rules. Commissioner roles only: a settlement moves money
    between holders."""
    if who.role not in ("commissioner", "commissioner_data"):
        raise AccessDenied("a settlement is the commissioner's: run pbc settle with "
                           "--as commissioner:CODE")
    pol = policy if isinstance(policy, BudgetPolicy) else read_policy(policy)
    rules = pol.risk_sharing
    if rules is None:
        raise WarehouseError(
            "the policy has no [risk_sharing] section, so pbc cannot say who bears an "
            "overspend: add one (overspend = \"carry_forward\" or \"write_off\"; see "
            "docs/monitoring.md, shared risk)")
    fy = normalise_financial_year(financial_year or pol.financial_year)
    practices = year_outturns(warehouse, who, fy, level="practice", method=method)
    if not practices:
        raise WarehouseError(f"no activity is loaded for {fy}: nothing to settle")
    real = {code: RealBudgetTerms(t.savings_share, t.overspend_share,
                                  _pence(t.savings_cap), _pence(t.overspend_cap))
            for code, t in rules.real_budget.items()}
    group_of = _groups_at_year_end(warehouse, fy)
    known = set(group_of.values())
    unknown = sorted((set(real) | set(rules.risk_pool.groups if rules.risk_pool else ()))
                     - known)
    if unknown:
        raise WarehouseError(f"the policy's risk_sharing names group(s) {unknown} that no "
                             f"practice belongs to on 31 March {parse_financial_year(fy) + 1}")
    pooled: set[str] = set()
    if rules.risk_pool is not None:
        pooled = (set(rules.risk_pool.groups) if rules.risk_pool.groups
                  else {g for g in known if g is not None} - set(real))
    rows: list[dict[str, object]] = []
    if real:
        for go in year_outturns(warehouse, who, fy, level="group", method=method):
            if go.code in real:
                s = settle_real_budget(go.code, go.budget, go.outturn, real[go.code])
                rows.append(_row("real budget", go.code, go, s.group, 0, s.commissioner, 0,
                                 "cap applied" if s.capped else ""))
    by_group: dict[str, list[Outturn]] = {}
    for o in practices:
        g = group_of.get(o.code)
        if g in real:
            continue  # settled with its group
        if g is not None and g in pooled:
            by_group.setdefault(g, []).append(o)
            continue
        c = settle_overspend(o.code, o.budget, o.outturn, rules.overspend)
        variance = o.outturn - o.budget
        if variance > 0:
            note = ("carried forward to next year's budget" if c.carried_forward
                    else "written off by the commissioner")
            rows.append(_row("indicative", g, o, c.carried_forward, 0, c.written_off,
                             c.carried_forward, note))
        else:
            rows.append(_row("indicative", g, o, 0, 0, variance, 0,
                             "underspend: freed resources (pbc freed-resources)"
                             if variance else ""))
    if rules.risk_pool is not None:
        terms = RiskPoolPolicy(rules.risk_pool.contribution_share, rules.risk_pool.fallback)
        for group, members in sorted(by_group.items()):
            pool = settle_risk_pool([m.code for m in members], [m.budget for m in members],
                                    [m.outturn for m in members], terms)
            for m, pm in zip(members, pool.members, strict=True):
                variance = m.outturn - m.budget
                # the commissioner keeps an underspend and, by the commissioner fallback,
                # bears what the pool could not cover of this member's overspend
                commissioner = min(variance, 0) + (
                    pm.overspend - pm.covered_by_pool if terms.fallback == "commissioner"
                    else 0)
                rows.append(_row("risk pool", group, m, pm.net,
                                 variance - pm.net - commissioner, commissioner,
                                 0, f"paid in {pm.contribution / 100:,.2f}, back "
                                 f"{pm.returned / 100:,.2f}, covered by the pool "
                                 f"{pm.covered_by_pool / 100:,.2f}"))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    out = Settlement(fy, frame, forecast=any(o.basis != "actual" for o in practices))
    out.check()
    return out


def _row(arrangement: str, group: str | None, o: Outturn, holder: int, pool: int,
         commissioner: int, carried: int, note: str) -> dict[str, object]:
    return {"arrangement": arrangement, "group_code": group, "code": o.code,
            "budget": o.budget, "outturn": o.outturn, "outturn_basis": o.basis,
            "variance": o.outturn - o.budget, "holder": holder, "pool": pool,
            "commissioner": commissioner,
            "carried_forward": carried, "note": note}
