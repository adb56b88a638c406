"""Opt-outs as a service: record, confirm, withdraw and list them; hand them to budgets.

A practice or group hands a service line back to its commissioner for a financial year
(:mod:`pbc.decisions.optouts`). Every call takes the acting :class:`Principal` and asks the
one permission table (:mod:`pbc.services.permissions`); every change is one transaction of
the decision store with its hash-chained audit row (before and after).

The next budget version set for the year (:func:`pbc.services.budgets.set_indicative_budgets`)
takes the year's **confirmed** opt-outs (:func:`with_recorded_opt_outs`): the line leaves the
holder's indicative budget (each member practice's, for a group: membership on 1 April) and
the commissioner holds its money; statements and ``pbc budgets explain`` name the opt-out
and the money moved; ``pbc monitor`` shows that line's spend and budget as the
commissioner's (docs/decisions.md, "Opt-outs").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pbc.budgets.policy import SERVICE_LINES, BudgetPolicy, OptOut
from pbc.calendar import normalise_financial_year
from pbc.decisions.audit import append
from pbc.decisions.models import utcnow
from pbc.decisions.optouts import ACTIVE, OptOutError
from pbc.decisions.optouts import OptOut as OptOutRow
from pbc.decisions.store import DecisionStore
from pbc.services.cases import resolve
from pbc.services.permissions import PERMISSIONS, CaseParties, allowed, authorise
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse, WarehouseError

ENTITY = "opt_out"


@dataclass(frozen=True)
class OptOutView:
    """An opt-out as its reader sees it."""

    id: int
    holder_kind: str
    holder_code: str
    commissioner_code: str
    service_line: str
    financial_year: str
    reason: str
    status: str
    proposed_by: str
    confirmed_by: str | None
    withdrawn_by: str | None
    withdrawal_reason: str | None
    description: str


def _view(row: OptOutRow) -> OptOutView:
    return OptOutView(row.id, row.holder_kind, row.holder_code, row.commissioner_code,
                      row.service_line, row.financial_year, row.reason, row.status,
                      row.proposed_by, row.confirmed_by, row.withdrawn_by,
                      row.withdrawal_reason, row.describe())


def _parties(row: OptOutRow) -> CaseParties:
    return CaseParties(row.holder_code, row.commissioner_code, id=row.id,
                       proposer_kind=row.holder_kind)


def holder(warehouse: Warehouse, code: str) -> tuple[str, str]:
    """(``practice`` or ``group``, its commissioner) of a code in the warehouse; an error
    naming the tables when it is neither."""
    for table, key, kind in (("practices", "practice_code", "practice"),
                             ("groups", "group_code", "group")):
        if warehouse.has_table(table):
            found = warehouse.query(f"SELECT DISTINCT commissioner_code FROM {table} "
                                    f"WHERE {key} = ?", [code])
            if found:
                return kind, str(found[0][0])
    raise WarehouseError(f"{code}: neither a practice nor a group in the warehouse "
                         f"({warehouse.root}): only a practice or a group can opt out")


def _agreed_version(store: DecisionStore, financial_year: str) -> int | None:
    current = store.current(financial_year, with_lines=False)
    return int(current.version) if current is not None and current.status == "agreed" else None


def propose(store: DecisionStore, warehouse: Warehouse, who: Principal, code: str, *,
            service_line: str, financial_year: str, reason: str) -> OptOutView:
    """Record that practice or group ``code`` hands ``service_line`` back to its
    commissioner for ``financial_year`` (proposed until the commissioner confirms it)."""
    fy = normalise_financial_year(financial_year)
    if service_line not in SERVICE_LINES:
        raise OptOutError(f"--service-line {service_line!r}: expected one of "
                          f"{', '.join(SERVICE_LINES)}")
    if not reason.strip():
        raise OptOutError("say why the line is handed back (--reason TEXT)")
    kind, commissioner = holder(warehouse, code)
    who = resolve(store, who)
    authorise(who, "propose_opt_out", CaseParties(code, commissioner, proposer_kind=kind))
    with store._tx() as s:
        already = s.scalar(select(OptOutRow).where(
            OptOutRow.holder_code == code, OptOutRow.service_line == service_line,
            OptOutRow.financial_year == fy, OptOutRow.status.in_(ACTIVE)))
        if already is not None:
            raise OptOutError(f"{kind} {code} already has opt-out {already.id} of "
                              f"{service_line} for {fy} ({already.status}): pbc optouts list")
        row = OptOutRow(holder_kind=kind, holder_code=code, commissioner_code=commissioner,
                        service_line=service_line, financial_year=fy, reason=reason.strip(),
                        status="proposed", proposed_by=who.user or "anonymous",
                        proposed_at=utcnow())
        s.add(row)
        s.flush()
        append(s, who, "propose_opt_out", ENTITY, str(row.id), after=row.state(),
               source=who.source)
        return _view(row)


def confirm(store: DecisionStore, who: Principal, opt_out_id: int) -> OptOutView:
    """The commissioner's approver confirms a proposed opt-out: the next budget version set
    for its year applies it."""
    who = resolve(store, who)
    with store._tx() as s:
        row = _get(s, opt_out_id)
        authorise(who, "confirm_opt_out", _parties(row))
        if row.status != "proposed":
            raise OptOutError(f"opt-out {row.id} is {row.status}; only a proposed opt-out "
                              "can be confirmed")
        before = row.state()
        row.status, row.confirmed_by, row.confirmed_at = ("confirmed", who.user or "anonymous",
                                                          utcnow())
        append(s, who, "confirm_opt_out", ENTITY, str(row.id), before=before,
               after=row.state(), source=who.source)
        return _view(row)


def withdraw(store: DecisionStore, who: Principal, opt_out_id: int, reason: str
             ) -> OptOutView:
    """Withdraw an opt-out (the holder, or the commissioner's approver), while the year's
    budget is not agreed; the next budget version set for the year gives the line back to
    the holder's budget."""
    if not reason.strip():
        raise OptOutError("say why the opt-out is withdrawn (--reason TEXT)")
    who = resolve(store, who)
    with store._tx() as s:
        row = _get(s, opt_out_id)
        authorise(who, "withdraw_opt_out", _parties(row))
        if row.status not in ACTIVE:
            raise OptOutError(f"opt-out {row.id} is already {row.status}")
    agreed = _agreed_version(store, row.financial_year)
    if agreed is not None:
        raise OptOutError(f"opt-out {row.id} cannot be withdrawn: the {row.financial_year} "
                          f"budgets are agreed (version {agreed}), and an opt-out in an agreed "
                          "budget stands for the year (the commissioner may restate the "
                          "budgets after a new decision)")
    with store._tx() as s:
        row = _get(s, opt_out_id)
        if row.status not in ACTIVE:  # changed since it was read
            raise OptOutError(f"opt-out {row.id} is already {row.status}")
        before = row.state()
        row.status, row.withdrawn_by, row.withdrawn_at = ("withdrawn", who.user or "anonymous",
                                                          utcnow())
        row.withdrawal_reason = reason.strip()
        append(s, who, "withdraw_opt_out", ENTITY, str(row.id), before=before,
               after=row.state(), source=who.source)
        return _view(row)


def show(store: DecisionStore, who: Principal, opt_out_id: int) -> OptOutView:
    """One opt-out, for its holder or its commissioner."""
    who = resolve(store, who)
    with store._session() as s:
        row = _get(s, opt_out_id)
        authorise(who, "view_opt_outs", _parties(row))
        return _view(row)


def list_opt_outs(store: DecisionStore, who: Principal, financial_year: str | None = None
                  ) -> list[OptOutView]:
    """The opt-outs ``who`` may see (a practice or group its own; the commissioner's roles
    their commissioner's), of one year or all, by id."""
    who = resolve(store, who)
    if who.role not in PERMISSIONS["view_opt_outs"].roles:
        authorise(who, "view_opt_outs")  # refuses, saying who may
    query = select(OptOutRow).order_by(OptOutRow.id)
    if financial_year is not None:
        query = query.where(OptOutRow.financial_year == normalise_financial_year(
            financial_year))
    with store._session() as s:
        return [_view(r) for r in s.scalars(query)
                if allowed(who, "view_opt_outs", _parties(r))]


def _get(s: Any, opt_out_id: int) -> OptOutRow:
    row = s.get(OptOutRow, opt_out_id)
    if row is None:
        raise OptOutError(f"no opt-out {opt_out_id}")
    return row


# --------------------------------------------------------------------------- budgets
def recorded_opt_outs(store: DecisionStore, commissioner: str, financial_year: str
                      ) -> list[OptOutView]:
    """The confirmed opt-outs of a commissioner's year: what the next budget version
    applies."""
    with store._session() as s:
        rows = s.scalars(select(OptOutRow).where(
            OptOutRow.commissioner_code == commissioner,
            OptOutRow.financial_year == financial_year,
            OptOutRow.status == "confirmed").order_by(OptOutRow.id))
        return [_view(r) for r in rows]


def with_recorded_opt_outs(policy: BudgetPolicy, recorded: list[OptOutView]) -> BudgetPolicy:
    """The policy with the recorded opt-outs added to its own ``[[opt_out]]`` entries, one
    entry per decision, its reason naming the decision. A decision for a line the policy
    does not delegate is refused (withdraw it, or delegate the line), never skipped."""
    outside = [r for r in recorded if r.service_line not in policy.scope]
    if outside:
        r = outside[0]
        raise OptOutError(f"{r.description}: but the {policy.financial_year} budget policy "
                          f"does not delegate {r.service_line} (its scope: "
                          f"{', '.join(policy.scope)}); withdraw the opt-out or delegate the "
                          "line")
    extra = tuple(OptOut(code=r.holder_code, service_lines=(r.service_line,),  # type: ignore[arg-type]
                         reason=r.description) for r in recorded)
    return policy.model_copy(update={"opt_out": (*policy.opt_out, *extra)})


# --------------------------------------------------------------------------- demo
def demo_optout(warehouse: Warehouse | Path, out: Path, console: Any, *, financial_year: str,
                practice: str | None = None, service_line: str = "outpatient_follow_up",
                approver: Principal | None = None) -> OptOutView:
    """The demo's opt-out, before the year's budgets are set: a practice (the warehouse's
    first, unless named) hands ``service_line`` back for ``financial_year``, the
    commissioner's approver confirms it, and the decision is written to
    ``out/opt_out.txt``. The next ``pbc budgets set`` for the year applies it. Prints two
    lines."""
    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    if practice is None:
        practice = str(wh.query("SELECT min(practice_code) FROM practices")[0][0])
    _, commissioner = holder(wh, practice)
    approver = approver or Principal("demo.approver", "commissioner_approver", commissioner)
    with DecisionStore.beside(wh.root) as store:
        view = propose(store, wh, Principal(f"{practice}.gp", "practice", practice),
                       practice, service_line=service_line, financial_year=financial_year,
                       reason="the practice hands routine follow-ups back to the "
                              "commissioner's community service")
        view = confirm(store, approver, view.id)
    out.mkdir(parents=True, exist_ok=True)
    (out / "opt_out.txt").write_text(view.description + "\n", encoding="utf-8")
    console.print(f"Opt-out {view.id}: practice {practice} hands {service_line} back for "
                  f"{view.financial_year} (confirmed by {view.confirmed_by})", highlight=False)
    console.print("The next pbc budgets set for the year holds that line's money for the "
                  "commissioner", highlight=False)
    return view
