"""A budget holder's indicative budget, line by line, for a reader (the REST API, pages).

Reads what ``pbc budgets set`` wrote (:mod:`pbc.services.budgets`): ``indicative_budgets``
(practice x service line with every term of the calculation: fair share, historic spend,
target, floor, ceiling, pace of change, scaling, top-slice share), ``group_budgets`` and
the stored plain-English explanation (``budget_explanations``, what ``pbc budgets
explain`` prints). Money stays Decimal pounds with two places, as stored.

Access, as for the monitoring position (:mod:`pbc.services.monitoring`): a practice sees
its own budget, a group its own group's and its member practices', the commissioner every
budget of its practices; anyone else gets :class:`AccessDenied` saying who may.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse, WarehouseError

#: the terms of a practice's budget line, in the order the explanation builds it
TERMS = ("method", "population", "weighted_population", "need_index", "cost_weight_index",
         "weighted_share", "fair_share", "prior_spend", "uplift_percent", "historic",
         "distance_from_target", "pace", "target", "floor", "ceiling", "cap",
         "scale_factor", "calculated_budget", "top_slice_share", "opted_out", "budget")
#: the terms that are money (Decimal pounds)
MONEY_TERMS = frozenset({"fair_share", "prior_spend", "historic", "target", "floor",
                         "ceiling", "calculated_budget", "top_slice_share", "budget"})


class NotFound(WarehouseError):
    """No such practice or group in the warehouse (or no budget for it)."""


@dataclass(frozen=True)
class HolderBudget:
    """One holder's budget: ``lines`` (dicts of :data:`TERMS` plus ``service_line``, or
    for a group ``service_line``, ``budget`` and ``practices``), the total, and for a
    practice the plain-English explanation."""

    level: str  # practice | group
    code: str
    commissioner_code: str
    financial_year: str
    lines: list[dict[str, Any]]
    total: Decimal
    explanation: str | None = None


def _organisation(warehouse: Warehouse, level: str, code: str) -> tuple[str, str | None]:
    """(commissioner, group) of a practice, or (commissioner, None) of a group."""
    table, key = ("practices", "practice_code") if level == "practice" else ("groups",
                                                                             "group_code")
    if not warehouse.has_table(table):
        raise WarehouseError(f"no {table} in the warehouse: load data first (pbc load)")
    cols = "commissioner_code, group_code" if level == "practice" else "commissioner_code, NULL"
    rows = warehouse.query(f"SELECT {cols} FROM {table} WHERE {key} = ?", [code])
    if not rows:
        raise NotFound(f"no {level} {code} in the warehouse")
    return str(rows[0][0]), None if rows[0][1] is None else str(rows[0][1])


def _authorise(who: Principal, level: str, code: str, commissioner: str,
               group: str | None) -> None:
    if who.role == "commissioner" and who.organisation == commissioner:
        return
    if who.role == level and who.organisation == code:
        return
    if level == "practice" and who.role == "group" and group is not None \
            and who.organisation == group:
        return
    may = f"{level}:{code}" + (f", group:{group}" if group else "") + \
        f" or commissioner:{commissioner}"
    raise AccessDenied(f"{who} may not see the budget of {level} {code}: only {may} may")


def practice_budget(warehouse: Warehouse, who: Principal, code: str) -> HolderBudget:
    """The practice's budget lines with every term, and its explanation."""
    commissioner, group = _organisation(warehouse, "practice", code)
    _authorise(who, "practice", code, commissioner, group)
    if not warehouse.has_table("indicative_budgets"):
        raise WarehouseError("no budgets set yet: run pbc budgets set --policy FILE")
    con = warehouse.connect()
    try:
        year, lines = _rows(con, f"SELECT financial_year, service_line, {', '.join(TERMS)} "
                            "FROM indicative_budgets WHERE practice_code = ? ORDER BY "
                            "service_line", code)
    finally:
        con.close()
    if not lines:
        raise NotFound(f"practice {code} has no budget")
    from pbc.services.budgets import explanation

    total = sum((line["budget"] for line in lines if line["budget"] is not None), Decimal(0))
    return HolderBudget("practice", code, commissioner, year, lines, total,
                        explanation(warehouse, code))


def group_budget(warehouse: Warehouse, who: Principal, code: str) -> HolderBudget:
    """The group's budget by service line (the sum of its practices' budgets)."""
    commissioner, _ = _organisation(warehouse, "group", code)
    _authorise(who, "group", code, commissioner, None)
    if not warehouse.has_table("group_budgets"):
        raise WarehouseError("no budgets set yet: run pbc budgets set --policy FILE")
    con = warehouse.connect()
    try:
        year, lines = _rows(con, "SELECT financial_year, service_line, budget, practices "
                            "FROM group_budgets WHERE group_code = ? ORDER BY service_line",
                            code)
    finally:
        con.close()
    if not lines:
        raise NotFound(f"group {code} has no budget")
    total = sum((line["budget"] for line in lines if line["budget"] is not None), Decimal(0))
    return HolderBudget("group", code, commissioner, year, lines, total)


def _rows(con: Any, sql: str, code: str) -> tuple[str, list[dict[str, Any]]]:
    """The financial year and the rows as dicts (DECIMAL columns stay Decimal: DuckDB's
    DataFrames would make them floats); NaN as None."""
    cur = con.execute(sql, [code])
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    year = str(rows[0]["financial_year"]) if rows else ""
    lines = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()
              if k != "financial_year"} for r in rows]
    return year, lines
