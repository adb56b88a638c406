"""Evaluating an implemented business case (``pbc case evaluate``).

Reads, from the warehouse, every practice's priced activity in the case's scope (the same
rows as the case's baseline: :func:`pbc.services.cases.scope_filter`) before and after the
service started, the practices' list sizes and need indices, chooses the comparison group
and computes the difference in differences (:mod:`pbc.decisions.evaluation`). The
evaluation is stored with the case (``case_evaluations``), the case becomes ``evaluated``,
and the audit row is written in the same transaction.

Periods: *after* is every month loaded from the month the service started (``--from
YYYY-MM``; default April of the case's first year) onward; *before* is the same months of
the year in the case's baseline year. pbc refuses when no month after the start is loaded,
when the baseline year lacks one of those months, when the start is not after the
baseline year, or when fewer than five comparable practices remain.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from pbc.budgets.money import format_pounds
from pbc.calendar import format_financial_year, parse_financial_year
from pbc.decisions.audit import append
from pbc.decisions.cases import BusinessCase, CaseError, CaseFile, next_status
from pbc.decisions.evaluation import (
    COMPARATORS,
    LEVEL,
    CaseEvaluation,
    EvaluationError,
    Unit,
    evaluate,
)
from pbc.decisions.models import utcnow
from pbc.decisions.store import DecisionStore
from pbc.services.cases import (
    ENTITY,
    PENCE_SQL,
    _conflict,
    _parties,
    resolve,
    scope_filter,
)
from pbc.services.permissions import authorise
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.validate import lit

#: cases in these states are "in" their scope: their practices are no comparators
ACTIVE = ("approved", "implemented", "evaluated")
Month = tuple[str, int]  # (financial year, month 1 = April)
#: a month with fewer rows than this share of the median month's is partial, left out
PARTIAL_SHARE = 0.5


@dataclass(frozen=True)
class EvaluationView:
    case_id: int
    status: str
    version: int
    result: dict[str, Any]
    evaluated_by: str
    evaluated_at: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def start_month(case: CaseFile, started: str | None) -> tuple[Month, str]:
    """The (financial year, month) the service started and its ``YYYY-MM`` label."""
    if started is None:
        first = min(parse_financial_year(y) for y in case.investment)
        return (format_financial_year(first), 1), f"{first}-04"
    try:
        day = dt.date.fromisoformat(started.strip() + "-01")
    except ValueError:
        raise CaseError(f"--from must be a calendar month like 2025-10, not {started!r}") \
            from None
    fy_start = day.year if day.month >= 4 else day.year - 1
    return (format_financial_year(fy_start), (day.month - 4) % 12 + 1), f"{day:%Y-%m}"


def _key(m: Month) -> tuple[int, int]:
    return parse_financial_year(m[0]), m[1]


def _label(m: Month) -> str:
    year = parse_financial_year(m[0]) + (1 if m[1] > 9 else 0)
    return f"{year}-{(m[1] + 2) % 12 + 1:02d}"


def periods(loaded: list[Month], baseline_year: str, start: Month
            ) -> tuple[list[Month], list[Month]]:
    """(before, after) months; EvaluationError when either cannot be had honestly."""
    if parse_financial_year(baseline_year) >= parse_financial_year(start[0]):
        raise EvaluationError(
            f"the service started in {_label(start)}, not after its baseline year "
            f"{baseline_year}: there is no before to compare with")
    after = sorted((m for m in loaded if _key(m) >= _key(start)), key=_key)
    if not after:
        last = max(loaded, key=_key) if loaded else None
        raise EvaluationError(
            f"no priced activity from {_label(start)} (the service's start) onward is loaded "
            f"yet (the latest month loaded is {_label(last) if last else 'none'}): the "
            "evaluation needs months after implementation")
    before = [(baseline_year, m) for m in sorted({m for _, m in after})]
    missing = [_label(m) for m in before if m not in set(loaded)]
    if missing:
        raise EvaluationError(f"the baseline year {baseline_year} lacks {', '.join(missing)}:"
                              " the same months before are needed to compare with")
    return before, after


def loaded_months(warehouse: Warehouse) -> tuple[list[Month], list[Month]]:
    """(loaded, partial): months with priced activity, and those left out as partial: a
    month holding fewer than :data:`PARTIAL_SHARE` of the median month's rows (late rows
    of a month not yet delivered, e.g. spells discharged after the last month loaded)."""
    if not warehouse.has_table("priced_activity"):
        return [], []
    counts = [(str(fy), int(m), int(n)) for fy, m, n in warehouse.query(
        "SELECT financial_year, month, count(*) FROM priced_activity "
        "WHERE price IS NOT NULL GROUP BY 1, 2")]
    if not counts:
        return [], []
    ordered = sorted(n for _, _, n in counts)
    median = ordered[len(ordered) // 2]
    loaded = [(fy, m) for fy, m, n in counts if n >= PARTIAL_SHARE * median]
    partial = [(fy, m) for fy, m, n in counts if n < PARTIAL_SHARE * median]
    return sorted(loaded, key=_key), sorted(partial, key=_key)


def _in(months: list[Month]) -> str:
    keys = ", ".join(lit(f"{fy}:{m}") for fy, m in months)
    return f"(p.financial_year || ':' || CAST(p.month AS VARCHAR)) IN ({keys})"


def read_units(warehouse: Warehouse, case: CaseFile, commissioner: str, before: list[Month],
               after: list[Month], excluded: set[str]
               ) -> tuple[Unit, list[Unit], str]:
    """The case's unit, the candidate comparators and the scope in words."""
    import ibis

    from pbc.budgets.register import need_index_expr

    for table in ("priced_activity", "practices", "patients"):
        if not warehouse.has_table(table):
            raise WarehouseError(f"{warehouse.root}: no {table} (load and price first)")
    join, where, described = scope_filter(case)
    pence = PENCE_SQL
    con = warehouse.connect()
    try:
        practices = con.execute(
            "SELECT practice_code, group_code FROM practices WHERE commissioner_code = ? "
            "ORDER BY 1", [commissioner]).fetchall()
        activity = con.execute(f"""
            SELECT p.practice_code, CASE WHEN {_in(before)} THEN 'before' ELSE 'after' END,
                   count(*), coalesce(sum({pence}), 0), coalesce(sum({pence} * {pence}), 0)
            FROM priced_activity p {join}
            WHERE {' AND '.join(where)} AND p.commissioner_code = {lit(commissioner)}
              AND ({_in(before)} OR {_in(after)})
            GROUP BY ALL""").fetchall()
        if warehouse.has_table("list_sizes"):
            sizes = dict(con.execute("SELECT practice_code, CAST(sum(patients) AS BIGINT) "
                                     "FROM list_sizes GROUP BY 1").fetchall())
        else:
            sizes = dict(con.execute("SELECT practice_code, count(*) FROM patients "
                                     "WHERE registered_to IS NULL GROUP BY 1").fetchall())
        backend = ibis.duckdb.from_connection(con)
        conditions = (backend.table("patient_conditions")
                      if warehouse.has_table("patient_conditions") else None)
        needs = need_index_expr(backend.table("patients"), conditions).execute()
    finally:
        con.close()
    need = dict(zip(needs.practice_code.astype(str), needs.need_index.astype(float),
                    strict=True))
    money: dict[tuple[str, str], tuple[int, int, int]] = {
        (str(code), str(period)): (int(n), int(spend), int(sq))
        for code, period, n, spend, sq in activity}

    def unit(code: str, members: list[str]) -> Unit:
        size = sum(int(sizes.get(m, 0) or 0) for m in members)
        weighted = sum(need.get(m, math.nan) * int(sizes.get(m, 0) or 0) for m in members)
        b = [money.get((m, "before"), (0, 0, 0)) for m in members]
        a = [money.get((m, "after"), (0, 0, 0)) for m in members]
        return Unit(code, size, weighted / size if size else math.nan,
                    sum(x[1] for x in b), sum(x[0] for x in b),
                    sum(x[1] for x in a), sum(x[0] for x in a),
                    sum(x[2] for x in b), sum(x[2] for x in a))

    groups = {str(p): str(g) for p, g in practices}
    if case.proposer_kind == "practice":
        if case.proposer not in groups:
            raise CaseError(f"practice {case.proposer} is not one of commissioner "
                            f"{commissioner}'s practices")
        members = [case.proposer]
    else:
        members = sorted(p for p, g in groups.items() if g == case.proposer)
        if not members:
            raise CaseError(f"group {case.proposer} has no practices")
    treated = unit(case.proposer, members)
    if treated.list_size <= 0:
        raise EvaluationError(f"{case.proposer_kind} {case.proposer} has no registered "
                              "patients: no rate to compare")
    candidates = [u for u in (unit(p, [p]) for p in groups
                              if p not in members and p not in excluded)
                  if u.list_size > 0 and not math.isnan(u.need_index)]
    return treated, candidates, described


def _excluded(store: DecisionStore, case: BusinessCase, groups_of: dict[str, str]) -> set[str]:
    """Practices in another active case sharing a service line with this one."""
    lines = set(case.case().scope.service_lines)
    out: set[str] = set()
    with store._session() as s:
        for other in s.scalars(select(BusinessCase).where(BusinessCase.status.in_(ACTIVE),
                                                          BusinessCase.id != case.id)):
            if lines & set(other.case().scope.service_lines):
                if other.proposer_kind == "practice":
                    out.add(other.proposer_code)
                else:
                    out |= {p for p, g in groups_of.items() if g == other.proposer_code}
    return out


def evaluate_case(store: DecisionStore, warehouse: Warehouse, who: Principal, case_id: int,
                  *, started: str | None = None, comparators: int = COMPARATORS,
                  expected_version: int | None = None) -> EvaluationView:
    """Evaluate an implemented (or re-evaluate an evaluated) case and record it."""
    who = resolve(store, who)
    with store._session() as s:
        row = s.get(BusinessCase, case_id)
        if row is None:
            raise CaseError(f"no business case {case_id}")
        authorise(who, "evaluate_case", _parties(row))
        next_status("evaluate", row.status, row.touches_social_care)
        s.expunge(row)
    read_version = row.version if expected_version is None else expected_version
    case = row.case()
    start, label = start_month(case, started)
    baseline_year = str(json.loads(row.savings)["baseline"]["financial_year"])
    loaded, partial = loaded_months(warehouse)
    before, after = periods(loaded, baseline_year, start)
    groups_of = {str(p): str(g) for p, g in warehouse.query(
        "SELECT practice_code, group_code FROM practices")}
    excluded = _excluded(store, row, groups_of)
    treated, candidates, described = read_units(warehouse, case, row.commissioner_code,
                                                before, after, excluded)
    chosen, measures = evaluate(treated, candidates, before_months=len(before),
                                after_months=len(after), k=comparators,
                                match_list_size=case.proposer_kind == "practice")
    result: dict[str, Any] = {
        "case_id": case_id, "scope": f"{case.proposer_kind} {case.proposer}; {described}",
        "started": label, "baseline_year": baseline_year,
        "before": [_label(m) for m in before], "after": [_label(m) for m in after],
        "case_unit": treated.__dict__,
        "comparators": [{"code": u.code, "distance": round(d, 4), "list_size": u.list_size,
                         "need_index": u.need_index,
                         "spend_before_per_1000_per_month":
                             u.rate("spend", "before", len(before)),
                         "spend_after_per_1000_per_month":
                             u.rate("spend", "after", len(after))} for u, d in chosen],
        "partial_months_left_out": [_label(m) for m in partial],
        "candidates": len(candidates), "excluded_as_in_other_cases": sorted(excluded),
        "measures": [m.as_dict() for m in measures], "level": LEVEL,
        "method": (
            "difference in differences of the in-scope rate per 1,000 registered patients "
            "per month, after (months loaded from the start) less before (the same months "
            "of the baseline year), the case less the mean of its comparators; comparators: "
            f"the {len(chosen)} practices of the same commissioner nearest in need index, "
            + ("log list size " if case.proposer_kind == "practice" else "")
            + "and in-scope spend rate before (each feature divided by its standard "
            "deviation among the candidates), not in this or another active case in the "
            f"same service lines; {LEVEL:.0%} interval DiD +/- t(J-1) * SE, SE^2 = s_z^2 * "
            "(v_case + sum v_i / J^2), v the compound Poisson variance of a unit's change "
            "and s_z the comparators' spread of changes standardised by it (Ferman and "
            "Pinto, 2019; analytic, no seed)"),
        "assumptions": [
            "parallel trends: without the case, its rate would have changed as its "
            "comparators' did on average",
            "the case's practice varies from period to period as a comparable practice "
            "does (its own variance is estimated from the comparators')",
            "list sizes and need indices are the warehouse's current ones",
        ],
    }
    try:
        with store._tx() as s:
            case_row = s.get(BusinessCase, case_id)
            assert case_row is not None
            if case_row.version != read_version:
                raise _conflict(s, case_row, read_version)
            new_status = next_status("evaluate", case_row.status, case_row.touches_social_care)
            before_state = case_row.state()
            case_row.status = new_status
            case_row.updated_at = utcnow()
            s.flush()
            record = CaseEvaluation(case_id=case_id, started=label,
                                    result=json.dumps(result, sort_keys=True),
                                    evaluated_by=who.user or "anonymous",
                                    evaluated_at=utcnow())
            s.add(record)
            s.flush()
            spend = measures[0].did
            append(s, who, "evaluate_case", ENTITY, str(case_id), before=before_state,
                   after=case_row.state(), evaluation_id=record.id, started=label,
                   after_months=len(after), comparators=[u.code for u, _ in chosen],
                   did_spend_per_1000_per_month=round(spend.estimate, 2),
                   interval=[round(spend.lower, 2), round(spend.upper, 2)],
                   source=who.source)
            return EvaluationView(case_id, case_row.status, case_row.version, result,
                                  record.evaluated_by,
                                  record.evaluated_at.isoformat(timespec="seconds"))
    except StaleDataError:
        with store._session() as s:
            case_row = s.get(BusinessCase, case_id)
            assert case_row is not None
            raise _conflict(s, case_row, read_version) from None


def show_evaluation(store: DecisionStore, who: Principal, case_id: int) -> EvaluationView:
    """The case's latest evaluation (the proposer and the commissioner's side may see it)."""
    who = resolve(store, who)
    with store._session() as s:
        row = s.get(BusinessCase, case_id)
        if row is None:
            raise CaseError(f"no business case {case_id}")
        authorise(who, "view_evaluation", _parties(row))
        found = s.scalar(select(CaseEvaluation).where(CaseEvaluation.case_id == case_id)
                         .order_by(CaseEvaluation.id.desc()).limit(1))
        if found is None:
            raise CaseError(f"case {case_id} has not been evaluated (it is {row.status}): "
                            f"the commissioner evaluates it once implemented "
                            f"(pbc case evaluate {case_id})")
        return EvaluationView(case_id, row.status, row.version, json.loads(found.result),
                              found.evaluated_by,
                              found.evaluated_at.isoformat(timespec="seconds"))


def describe(view: EvaluationView) -> list[str]:
    """The evaluation in a few lines (the CLI and the demo print them)."""
    r = view.result
    lines = [f"case {view.case_id} evaluated ({view.status}, version {view.version}, by "
             f"{view.evaluated_by} at {view.evaluated_at}): {r['scope']}",
             f"  started {r['started']}; after: {r['after'][0]} to {r['after'][-1]} "
             f"({len(r['after'])} months) against the same months of {r['baseline_year']}"
             + (f" (partial months left out: {', '.join(r['partial_months_left_out'])})"
                if r.get("partial_months_left_out") else ""),
             f"  comparison group: {len(r['comparators'])} of {r['candidates']} practices ("
             + ", ".join(c["code"] for c in r["comparators"]) + ")"]
    for m in r["measures"]:
        d = m["per_1000_per_month"]
        money = m["measure"] == "spend"

        def fmt(x: float, money: bool = money) -> str:
            return format_pounds(round(x)) if money else f"{x:,.2f}"

        what = "tariff value" if money else "activity (rows)"
        share = (f", {m['effect_share']:+.1%} of what it would have been"
                 if m["effect_share"] is not None else "")
        lines.append(
            f"  {what} per 1,000 patients a month: case {fmt(d['treated_before'])} -> "
            f"{fmt(d['treated_after'])}, comparators {fmt(d['comparators_before'])} -> "
            f"{fmt(d['comparators_after'])}; difference in differences "
            f"{fmt(d['estimate'])} ({d['level']:.0%} CI {fmt(d['lower'])} to "
            f"{fmt(d['upper'])})")
        lines.append(f"    for the case's {view.result['case_unit']['list_size']:,} patients "
                     f"over {len(r['after'])} months: {fmt(m['effect'])} ({fmt(m['effect_lower'])}"
                     f" to {fmt(m['effect_upper'])}){share}")
    return lines
