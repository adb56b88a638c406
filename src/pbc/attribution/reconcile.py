"""Reconciliation of the price and attribute stages: rows and money conserved.

Every figure on the *in* side comes from somewhere other than the output it is checked
against:

* ``rows_in``: the rows of the source table (``apc_spells``, ``op_attendances``,
  ``ae_attendances``, ``prescribing``), counted there;
* ``money_in``: for prescribing, ``sum(actual_cost)`` of the source table (its money as
  loaded); for tariff-priced activity, the money priced *before attribution* (the sum of
  ``price`` over :func:`pbc.pricing.price_activity`, evaluated on its own, without the
  attribution joins and without the written files);
* ``rows_before``: the rows pricing gave, before attribution (tariff-priced activity).

The *out* side is the attributed ``priced_activity`` (as written): rows priced and unpriced,
money attributed (practice known) and unattributed (the commissioner's line), the rows whose
shown money columns do not add up to the price, the rows with a NULL price and no
``unpriced_reason`` (or a price and one) and the ``activity_id`` values that occur more than
once within an activity type.

:func:`check_reconciliation` raises :class:`ReconciliationError`, naming each fault, unless
per activity type, to the penny:

1. ``rows_in = rows_priced + rows_unpriced`` (and ``= rows_before``): no row dropped or
   made up, by pricing or attribution;
2. ``activity_id`` is unique: no row doubled (even where another was dropped, so that the
   count holds) and no duplicate key let through by the loader;
3. on every row ``base_price + long_stay_adjustment + short_stay_adjustment +
   top_up_adjustment + mff_adjustment + marginal_rate_adjustment = price`` (priced rows, no
   part NULL) or every money column is NULL (unpriced rows); and a row has an
   ``unpriced_reason`` exactly when its price is NULL;
4. ``money_in = money_attributed + money_unattributed``.

Rules: DH, *Payment by Results guidance 2010-11* (tariff price and its adjustments, one
price per spell or attendance); practice-based commissioning money is attributed to the
practice, or held by the commissioner as unattributed, never lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

#: activity type -> source table
SOURCE_TABLES: dict[str, str] = {
    "apc": "apc_spells",
    "op": "op_attendances",
    "ae": "ae_attendances",
    "prescribing": "prescribing",
}

#: activity types whose money comes from their source table (column), not from the tariff
SOURCE_MONEY: dict[str, str] = {"prescribing": "actual_cost"}

#: the shown money columns of ``priced_activity`` whose sum is the price
PRICE_PARTS = ("base_price", "long_stay_adjustment", "short_stay_adjustment",
               "top_up_adjustment", "mff_adjustment", "marginal_rate_adjustment")

#: money totals (pounds, 2 places; wide enough for any national total)
TOTAL = dt.Decimal(38, 2)

#: the columns of a reconciliation row (:func:`reconcile`), in order
COLUMNS = (
    "activity_type", "source_table", "rows_in", "rows_before", "rows_priced", "rows_unpriced",
    "money_in", "money_priced", "money_attributed", "money_unattributed", "rows_off",
    "rows_reason_off", "duplicate_ids", "duplicate_example",
)


class ReconciliationError(ValueError):
    """Rows or money were lost, made up or changed between the source tables and
    ``priced_activity``."""


def summarise(attributed: ir.Table, by: tuple[str, ...] = ()) -> ir.Table:
    """The attributed activity in a few rows: per ``activity_type``, ``service_line``,
    ``practice_code`` and ``attributed``, the rows ``n``, the priced rows ``n_priced``, their
    money ``money`` (exact, DECIMAL(38,2)), the rows ``n_off`` whose money columns do not
    add up to the price and the rows ``n_reason_off`` whose ``unpriced_reason`` does not
    match the price (rule 3 of the module).

    Every total pbc reports about a pricing run (reconciliation, totals by service line or
    by practice) adds these up, so the activity is read once for all of them. ``by``: more
    columns to group by (the partition columns, for :func:`reconcile_partitions`).
    """
    if "attributed" not in attributed.columns:
        raise ValueError("reconcile needs attributed activity (run attribute() first)")
    t = attributed
    parts = [t[c] for c in PRICE_PARTS]
    total = parts[0].cast(TOTAL)
    for p in parts[1:]:
        total = total + p.cast(TOTAL)
    all_known = ibis.and_(*[p.notnull() for p in parts])
    all_null = ibis.and_(*[p.isnull() for p in parts])
    balanced = ibis.ifelse(t.price.isnull(), all_null,
                           all_known & (total.cast(TOTAL) == t.price.cast(TOTAL)))
    reason_ok = t.price.isnull() == t.unpriced_reason.notnull()
    return t.group_by(
        t.activity_type, t.service_line, t.practice_code, *[t[c] for c in by],
        attributed=t.attributed.fill_null(False),
    ).aggregate(
        n=t.count(),
        n_priced=t.price.count(),
        money=t.price.cast(TOTAL).sum(),
        n_off=t.count(where=~balanced.fill_null(False)),
        n_reason_off=t.count(where=~reason_ok.fill_null(False)),
    )


def source_totals(tables: Mapping[str, ir.Table], by: tuple[str, ...] = ()
                  ) -> list[ir.Table]:
    """Per source table present in ``tables``: its rows and (prescribing) money, as
    expressions with columns ``activity_type, rows, money`` (and ``by``, per group)."""
    out = []
    for kind, name in SOURCE_TABLES.items():
        if name not in tables:
            continue
        t = tables[name]
        money = (t[SOURCE_MONEY[kind]].cast(TOTAL).sum() if kind in SOURCE_MONEY
                 else ibis.null(TOTAL))
        grouped = t.group_by(list(by)) if by else t
        out.append(grouped.aggregate(rows=t.count(), money=money.cast(TOTAL))
                   .mutate(activity_type=ibis.literal(kind)))
    return out


def before_totals(priced: ir.Table, by: tuple[str, ...] = ()) -> ir.Table:
    """Rows and money per activity type (and ``by``) of priced activity *before*
    attribution (the output of :func:`pbc.pricing.price_activity`)."""
    return priced.group_by(["activity_type", *by]).aggregate(
        rows=priced.count(), money=priced.price.cast(TOTAL).sum())


def duplicate_ids(attributed: ir.Table) -> list[dict[str, Any]]:
    """The ``activity_id`` values that occur more than once within an activity type, per
    type: ``activity_type``, ``ids`` (how many), ``example`` (the smallest) and ``times``
    (how often it occurs). One group-by on ``(activity_type, activity_id)``, reading those
    two columns only (at 10% of national scale, 16.9 million rows, this was faster than a
    group-by on a 64-bit hash of the id); only a few rows per type come back.
    """
    t = attributed
    per_id = t.group_by("activity_type", "activity_id").aggregate(times=t.count())
    dups = per_id.filter(per_id.times > 1)
    summary = dups.group_by("activity_type").aggregate(
        ids=dups.count(), example=dups.activity_id.min(),
        times=dups.times.argmin(dups.activity_id))
    return sorted(summary.to_pyarrow().to_pylist(), key=lambda r: str(r["activity_type"]))


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


def _pylist(expr: ir.Table) -> list[dict[str, Any]]:
    return list(expr.to_pyarrow().to_pylist())


def reconcile_summary(summary: ir.Table, tables: Mapping[str, ir.Table],
                      priced: ir.Table | None,
                      duplicates: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The reconciliation rows (:data:`COLUMNS`, one per activity type found in the source
    tables or the output), from a :func:`summarise` table, the source ``tables``, the
    priced activity before attribution ``priced`` (None: no tariff-priced activity) and
    :func:`duplicate_ids`. Executes the few small aggregates it needs."""
    return _reconcile(summary, tables, priced, duplicates, ()).get((), [])


def reconcile_partitions(summary: ir.Table, tables: Mapping[str, ir.Table],
                         priced: ir.Table | None,
                         by: tuple[str, ...] = ("financial_year", "month"),
                         ) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """:func:`reconcile_summary` per partition: for each value of ``by`` (financial year
    and month; text and integer) found in the sources or the output, its reconciliation
    rows. ``summary`` is a :func:`summarise` of the output grouped by ``by`` too.
    Duplicate keys are not counted here (they may span partitions): check them on the
    whole output with :func:`duplicate_ids`."""
    return _reconcile(summary, tables, priced, (), by)


def _reconcile(summary: ir.Table, tables: Mapping[str, ir.Table], priced: ir.Table | None,
               duplicates: Iterable[Mapping[str, Any]], by: tuple[str, ...],
               ) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    groups: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}

    def part(r: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(int(r[c]) if c == "month" else str(r[c]).replace("/", "-")
                     for c in by)

    def row(at: tuple[Any, ...], kind: str) -> dict[str, Any]:
        return groups.setdefault(at, {}).setdefault(kind, {
            "activity_type": kind, "source_table": SOURCE_TABLES.get(kind, kind),
            "rows_in": None, "rows_before": None, "rows_priced": 0, "rows_unpriced": 0,
            "money_in": None, "money_priced": Decimal("0.00"),
            "money_attributed": Decimal("0.00"), "money_unattributed": Decimal("0.00"),
            "rows_off": 0, "rows_reason_off": 0, "duplicate_ids": 0,
            "duplicate_example": None})

    for expr in source_totals(tables, by):
        for r in _pylist(expr):
            out = row(part(r), r["activity_type"])
            out["rows_in"] = int(r["rows"])
            if r["activity_type"] in SOURCE_MONEY:
                out["money_in"] = _money(r["money"]) or Decimal("0.00")
    if priced is not None:
        for r in _pylist(before_totals(priced, by)):
            out = row(part(r), r["activity_type"])
            out["rows_before"] = int(r["rows"])
            out["money_in"] = _money(r["money"]) or Decimal("0.00")
    if priced is not None:  # a tariff type that pricing gave no rows for
        for rows in groups.values():
            for kind, out in rows.items():
                if kind not in SOURCE_MONEY and out["rows_before"] is None:
                    out["rows_before"], out["money_in"] = 0, Decimal("0.00")
    after = summary.group_by(["activity_type", "attributed", *by]).aggregate(
        n=summary.n.sum(), n_priced=summary.n_priced.sum(), money=summary.money.sum(),
        n_off=summary.n_off.sum(), n_reason_off=summary.n_reason_off.sum())
    for r in _pylist(after):
        out = row(part(r), r["activity_type"])
        money = _money(r["money"]) or Decimal("0.00")
        out["rows_priced"] += int(r["n_priced"])
        out["rows_unpriced"] += int(r["n"]) - int(r["n_priced"])
        out["money_priced"] += money
        out["money_attributed" if r["attributed"] else "money_unattributed"] += money
        out["rows_off"] += int(r["n_off"])
        out["rows_reason_off"] += int(r["n_reason_off"])
    for d in duplicates:
        out = row((), d["activity_type"])
        out["duplicate_ids"] = int(d["ids"])
        out["duplicate_example"] = f"{d['example']} occurs {d['times']} times"
    return {at: [{k: rows[kind][k] for k in COLUMNS} for kind in sorted(rows)]
            for at, rows in sorted(groups.items())}


def reconcile(attributed: ir.Table, tables: Mapping[str, ir.Table], *,
              priced: ir.Table | None) -> list[dict[str, Any]]:
    """The reconciliation rows (:data:`COLUMNS`) of attributed activity against its source
    ``tables`` and the priced activity before attribution ``priced``
    (:func:`pbc.pricing.price_activity` of the same tables; None when there is no
    tariff-priced activity). Reads ``attributed`` twice (summary, duplicate keys)."""
    return reconcile_summary(summarise(attributed), tables, priced,
                             duplicate_ids(attributed))


def _records(result: Any) -> list[dict[str, Any]]:
    if hasattr(result, "to_pylist"):  # pyarrow
        return list(result.to_pylist())
    if hasattr(result, "to_dict"):  # pandas
        return list(result.to_dict("records"))
    return [dict(r) for r in result]


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def check_reconciliation(result: Any | Iterable[Mapping[str, Any]]) -> None:
    """Raise :class:`ReconciliationError` naming every fault unless each reconciliation row
    (:func:`reconcile`) balances by the rules of this module, to the penny."""
    problems = []
    for row in _records(result):
        kind, source = row["activity_type"], row["source_table"]
        priced, unpriced = int(row["rows_priced"]), int(row["rows_unpriced"])
        out = priced + unpriced
        if row["rows_in"] is None:
            problems.append(f"{kind}: {_rows(out)} in priced_activity but no source table "
                            f"{source} given")
        elif int(row["rows_in"]) != out:
            problems.append(f"{kind}: {_rows(int(row['rows_in']))} in {source} but {out} in "
                            f"priced_activity")
        if row["rows_before"] is not None and row["rows_in"] is not None \
                and int(row["rows_before"]) != int(row["rows_in"]):
            problems.append(f"{kind}: {_rows(int(row['rows_in']))} in {source} but pricing "
                            f"gave {row['rows_before']}")
        if int(row["duplicate_ids"]):
            n = int(row["duplicate_ids"])
            problems.append(f"{kind}: activity_id {row['duplicate_example']} in "
                            f"priced_activity ({n} {'id occurs' if n == 1 else 'ids occur'} "
                            f"more than once)")
        if int(row["rows_off"]):
            problems.append(f"{kind}: {_rows(int(row['rows_off']))} whose base price and "
                            f"adjustments do not add up to its price")
        if int(row["rows_reason_off"]):
            problems.append(f"{kind}: {_rows(int(row['rows_reason_off']))} unpriced without "
                            f"a reason (or priced with one)")
        attributed, unattributed = (_money(row[k]) for k in
                                    ("money_attributed", "money_unattributed"))
        money_in = _money(row["money_in"])
        label = (f"money in {source}.{SOURCE_MONEY[kind]}" if kind in SOURCE_MONEY
                 else "money before attribution")
        if money_in is None:
            if out:
                problems.append(f"{kind}: no {label} to reconcile with")
        elif money_in != (attributed or 0) + (unattributed or 0):
            problems.append(f"{kind}: {label} {money_in} != attributed {attributed} + "
                            f"unattributed {unattributed}")
    if problems:
        raise ReconciliationError("reconciliation failed: " + "; ".join(problems))
