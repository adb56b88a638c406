"""Approved reinvestment cases draw on their proposer's freed resources.

A business case funded from freed resources (``funding = "freed_resources"``) draws its
investment for each year of the case on the proposer's reinvestment ledger
(:func:`pbc.monitoring.freed.reinvestment_ledger`: 70% of what the proposer freed in a
year, budget less outturn, drawable during the next year, oldest first) when the
commissioner approves it. The ledger is built from the proposer's outturns
(:func:`pbc.services.monitoring.year_outturns`: the actual spend of a complete year, else the
forecast at the latest month loaded, said in the refusal) and every draw already approved;
if this case would draw more than is reinvestable in any year, the approval is refused with
the figures and nothing is stored. Otherwise one :class:`ReinvestmentDraw` row per year is
written, with its audit row, in the approval's own transaction; ``pbc freed-resources``
shows the draws as approved plans (:func:`approved_draws`).

The rule is the default one (at least 70%, one year to draw it; DH 2006, see
:mod:`pbc.monitoring.freed`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from pbc.budgets.money import format_pounds
from pbc.calendar import parse_financial_year
from pbc.decisions.audit import AuditHead, append
from pbc.decisions.cases import BusinessCase, CaseError
from pbc.decisions.reinvestment import ReinvestmentDraw
from pbc.decisions.store import DecisionStore
from pbc.monitoring.freed import (
    Draw,
    FreedResources,
    ReinvestmentError,
    ReinvestmentRule,
    freed_resources,
    reinvestment_ledger,
)
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse

ENTITY = "reinvestment_draw"


def funded_from_freed(case: BusinessCase) -> bool:
    return case.case().funding == "freed_resources"


def plan_name(case: BusinessCase) -> str:
    return f"case {case.id}: {case.title}"[:250]


def proposer_freed(warehouse: Warehouse, store: DecisionStore, case: BusinessCase,
                   rule: ReinvestmentRule | None = None
                   ) -> tuple[list[FreedResources], dict[str, str]]:
    """The proposer's freed resources in every year with budgets up to the case's last year,
    and the basis of each year's outturn (actual, or forecast at month M)."""
    from pbc.services.monitoring import year_outturns

    rule = rule or ReinvestmentRule()
    last = max(parse_financial_year(y) for y in case.case().investment)
    years = sorted({str(v.financial_year) for v in store.all_versions()
                    if parse_financial_year(str(v.financial_year)) <= last})
    # read as the proposer itself: a practice (or group) sees its own position only
    reader = Principal(f"approval of case {case.id}", case.proposer_kind,  # type: ignore[arg-type]
                       case.proposer_code)
    freed, basis = [], {}
    for year in years:
        for o in year_outturns(warehouse, reader, year, level=case.proposer_kind):  # type: ignore[arg-type]
            if o.code == case.proposer_code:
                freed.append(freed_resources(o.code, year, o.budget, o.outturn, rule))
                basis[year] = o.basis
    return freed, basis


def _draws(s: Session, level: str, code: str | None = None) -> list[Draw]:
    query = select(ReinvestmentDraw).where(ReinvestmentDraw.level == level).order_by(
        ReinvestmentDraw.id)
    if code is not None:
        query = query.where(ReinvestmentDraw.code == code)
    return [Draw(d.code, d.financial_year, d.plan, int(d.amount_pence))
            for d in s.scalars(query)]


def approved_draws(store: DecisionStore, level: str) -> list[Draw]:
    """Every approved case's draws at ``level`` (practice or group), as ledger plans."""
    with store._session() as s:
        return _draws(s, level)


def draw_on_freed(s: Session, who: Principal, case: BusinessCase,
                  freed: tuple[list[FreedResources], dict[str, str]],
                  rule: ReinvestmentRule | None = None) -> list[ReinvestmentDraw]:
    """Inside the approval's transaction: check the case's draws against the proposer's
    ledger (with every draw already approved) and record them, or refuse with the figures."""
    rule = rule or ReinvestmentRule()
    # lock the audit head now, not at the audit row: two approvals drawing on the same
    # ledger at once are serialised (SQLite's write transactions already are)
    s.scalar(select(AuditHead).where(AuditHead.id == 1).with_for_update())
    level, code = case.proposer_kind, case.proposer_code
    plan = plan_name(case)
    new = [Draw(code, fy, plan, pence)
           for fy, pence in sorted(case.case().investment_pence().items()) if pence > 0]
    if not new:
        raise CaseError(f"case {case.id} is funded from freed resources but invests nothing")
    earlier = _draws(s, level, code)
    found, basis = freed
    last = max(parse_financial_year(d.financial_year) for d in new)
    try:
        reinvestment_ledger(found, earlier + new, rule)
    except ReinvestmentError as e:
        shown = "; ".join(
            f"{f.financial_year}: budget {format_pounds(f.budget)}, outturn "
            f"{format_pounds(f.outturn)} ({basis.get(f.financial_year, '?')}), freed "
            f"{format_pounds(f.freed)}, reinvestable {format_pounds(f.reinvestable)}"
            for f in found if parse_financial_year(f.financial_year) < last
        ) or "none (no year with budgets and activity before the case's)"
        drawn = sum(d.amount for d in earlier)
        raise CaseError(
            f"case {case.id} cannot be approved: it is funded from freed resources and "
            f"would draw more than {level} {code} may reinvest ({e}). Freed resources of "
            f"{code}: {shown}; already drawn by approved cases {format_pounds(drawn)}; "
            f"reinvestable share {rule.share:.0%}, drawn within {rule.carry_years} year(s). "
            "Nothing was done: return the case to reduce its investment or fund it from "
            "the commissioner's budget") from None
    rows = []
    for d in new:
        row = ReinvestmentDraw(case_id=case.id, level=level, code=code,
                               financial_year=d.financial_year, plan=d.plan,
                               amount_pence=d.amount, approved_by=who.user or "anonymous")
        s.add(row)
        s.flush()
        append(s, who, "draw_freed_resources", ENTITY, str(row.id),
               after={"case_id": case.id, "level": level, "code": code,
                      "financial_year": d.financial_year, "amount_pence": d.amount},
               source=who.source)
        rows.append(row)
    return rows
