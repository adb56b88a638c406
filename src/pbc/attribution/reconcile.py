"""Reconciliation of the price and attribute stages (DESIGN.md guarantee 1: conservation).

Per activity type (source table) :func:`reconcile` counts

* ``rows_in`` (rows of the source table when ``tables`` is given, else rows seen),
* ``rows_priced`` and ``rows_unpriced`` (price NULL, with an ``unpriced_reason``),
* ``money_priced`` (sum of prices), ``money_attributed`` (rows whose practice is known) and
  ``money_unattributed`` (the commissioner's unattributed line).

Invariants, checked by :func:`check_reconciliation`, to the penny:
``rows_in = rows_priced + rows_unpriced`` and
``money_priced = money_attributed + money_unattributed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
from ibis import _

#: activity type -> source table
SOURCE_TABLES: dict[str, str] = {
    "apc": "apc_spells",
    "op": "op_attendances",
    "ae": "ae_attendances",
    "prescribing": "prescribing",
}

#: money totals (pounds, 2 places; wide enough for any national total)
TOTAL = dt.Decimal(38, 2)


class ReconciliationError(AssertionError):
    """Rows or money were lost or made up between stages."""


def summarise(attributed: ir.Table) -> ir.Table:
    """The attributed activity in a few rows: per ``activity_type``, ``service_line``,
    ``practice_code`` and ``attributed``, the rows ``n``, the priced rows ``n_priced`` and
    their money ``money`` (exact, DECIMAL(38,2)).

    Every total pbc reports about a pricing run (reconciliation, totals by service line or
    by practice) adds these up, so the activity is read once for all of them.
    """
    if "attributed" not in attributed.columns:
        raise ValueError("reconcile needs attributed activity (run attribute() first)")
    t = attributed
    return t.group_by(
        t.activity_type, t.service_line, t.practice_code,
        attributed=t.attributed.fill_null(False),
    ).aggregate(
        n=t.count(),
        n_priced=t.price.count(),
        money=t.price.cast(TOTAL).sum(),
    )


def reconcile_summary(summary: ir.Table,
                      tables: Mapping[str, ir.Table] | None = None) -> ir.Table:
    """:func:`reconcile` from a :func:`summarise` table (same columns and values)."""
    zero = ibis.literal(0, type=TOTAL)
    money = summary.money.fill_null(zero).cast(TOTAL)
    agg = summary.group_by("activity_type").aggregate(
        rows_seen=summary.n.sum().cast("int64"),
        rows_priced=summary.n_priced.sum().cast("int64"),
        money_priced=money.sum(),
        money_attributed=ibis.ifelse(summary.attributed, money, zero).sum(),
        money_unattributed=ibis.ifelse(~summary.attributed, money, zero).sum(),
    )
    agg = agg.mutate(
        rows_unpriced=(agg.rows_seen - agg.rows_priced).cast("int64"),
        source_table=ibis.cases(*[(agg.activity_type == k, v) for k, v in SOURCE_TABLES.items()],
                                else_=agg.activity_type),
        money_priced=agg.money_priced.fill_null(zero).cast(TOTAL),
        money_attributed=agg.money_attributed.fill_null(zero).cast(TOTAL),
        money_unattributed=agg.money_unattributed.fill_null(zero).cast(TOTAL),
    )
    if tables is not None:
        counts = [
            tables[src].aggregate(_n=_.count()).mutate(_src=ibis.literal(src))
            for src in SOURCE_TABLES.values() if src in tables
        ]
        if counts:
            allc = counts[0]
            for c in counts[1:]:
                allc = allc.union(c)
            agg = agg.left_join(allc, agg.source_table == allc._src)
            agg = agg.mutate(rows_in=ibis.coalesce(_._n, 0).cast("int64")).drop("_n", "_src")
        else:
            agg = agg.mutate(rows_in=_.rows_seen)
    else:
        agg = agg.mutate(rows_in=_.rows_seen)
    return agg.select(
        "activity_type", "source_table", "rows_in", "rows_priced", "rows_unpriced",
        "money_priced", "money_attributed", "money_unattributed",
    ).order_by("activity_type")


def reconcile(attributed: ir.Table, tables: Mapping[str, ir.Table] | None = None) -> ir.Table:
    """One row per activity type: rows in/priced/unpriced and money priced/attributed/
    unattributed (columns ``activity_type, source_table, rows_in, rows_priced,
    rows_unpriced, money_priced, money_attributed, money_unattributed``)."""
    return reconcile_summary(summarise(attributed), tables)


def _records(result: Any) -> list[dict[str, Any]]:
    if hasattr(result, "to_pylist"):  # pyarrow
        return list(result.to_pylist())
    if hasattr(result, "to_dict"):  # pandas
        return list(result.to_dict("records"))
    return [dict(r) for r in result]


def check_reconciliation(result: Any | Iterable[Mapping[str, Any]]) -> None:
    """Raise :class:`ReconciliationError` unless every row of an executed :func:`reconcile`
    result balances: rows in = priced + unpriced, money priced = attributed + unattributed
    (to the penny)."""
    problems = []
    for row in _records(result):
        kind = row["activity_type"]
        rows_in, priced, unpriced = (int(row[k]) for k in
                                     ("rows_in", "rows_priced", "rows_unpriced"))
        if rows_in != priced + unpriced:
            problems.append(f"{kind}: rows in {rows_in} != priced {priced} + unpriced {unpriced}")
        money = [Decimal(str(row[k])) for k in
                 ("money_priced", "money_attributed", "money_unattributed")]
        if money[0] != money[1] + money[2]:
            problems.append(f"{kind}: money priced {money[0]} != attributed {money[1]} + "
                            f"unattributed {money[2]}")
    if problems:
        raise ReconciliationError("reconciliation failed: " + "; ".join(problems))
