"""Attribute priced activity to practice, group and commissioner (docs/data-contracts.md).

:func:`attribute` takes ``priced_activity`` (:func:`pbc.pricing.price_activity`), adds the
prescribing lines (service line ``prescribing``, money = ``actual_cost``), and gives every
row, by the rules of :mod:`pbc.attribution.organisations`:

* ``practice_code``: as on the row (the practice at the time of the activity), unchanged;
* ``attributed``: true when the practice is known (in ``practices``); a blank or unknown
  practice's activity is the commissioner's *unattributed* activity, never dropped;
* ``group_code``: the practice's group as at the activity date (NULL if unattributed);
* ``commissioner_code``: the practice's; else the activity's own; else the only one.

Social care packages are bought by local authorities per week over a period and are not
practice activity; they are not attributed here.
"""

from __future__ import annotations

from collections.abc import Mapping

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from pbc.attribution.organisations import join_organisations
from pbc.pricing.money import MONEY
from pbc.pricing.rules import financial_month, financial_year
from pbc.pricing.schema import PRICED_SCHEMA


def _attributed_schema() -> dict[str, dt.DataType]:
    out: dict[str, dt.DataType] = {}
    for name, dtype in PRICED_SCHEMA.items():
        out[name] = dtype
        if name == "practice_code":
            out["group_code"] = dt.string
    out["attributed"] = dt.boolean
    return out


#: columns of the attributed ``priced_activity`` (docs/data-contracts.md key outputs), in order
ATTRIBUTED_SCHEMA: dict[str, dt.DataType] = _attributed_schema()

PRESCRIBING_RULE = "Prescribing: actual cost"


def prescribing_lines(prescribing: ir.Table) -> ir.Table:
    """Prescribing as ``priced_activity`` rows (activity type and service line
    ``prescribing``; money = ``actual_cost``; date = first day of ``year_month``).

    ``activity_id`` is ``practice/year_month/bnf_code`` (the table has no key of its own;
    a blank practice is written as nothing). Where several lines share that (blank-practice
    lines do: the practices are not known), each gets ``/1``, ``/2``, ... after it, in order
    of the practice code (NULL before ``''``), items, actual cost and BNF name, so every line
    has an ``activity_id`` of its own and the same one on every engine (lines that tie are
    identical). The commissioner is left NULL here; :func:`attribute` resolves it.
    """
    p = prescribing
    ym = p.year_month.cast("string")
    day = (ym + "-01").cast("date")
    cost = p.actual_cost.cast(MONEY)
    zero = ibis.ifelse(cost.notnull(), ibis.literal(0, type=MONEY), ibis.null(MONEY)).cast(MONEY)
    practice = p.practice_code.cast("string")
    key = practice.fill_null("") + "/" + ym + "/" + p.bnf_code.cast("string").fill_null("")
    name = p.bnf_name.cast("string")
    # explicit NULL order (engines differ in where NULLs sort by default)
    order = [practice.notnull(), practice.fill_null(""), p.items.isnull(), p.items.fill_null(0),
             p.actual_cost.isnull(), p.actual_cost.fill_null(0), name.isnull(),
             name.fill_null("")]
    shared = p.count().over(ibis.window(group_by=[key])) > 1
    number = (ibis.row_number().over(ibis.window(group_by=[key], order_by=order)) + 1)
    cols: dict[str, ir.Value] = {
        "activity_type": ibis.literal("prescribing"),
        "activity_id": ibis.ifelse(shared, key + "/" + number.cast("string"), key),
        "patient_id": ibis.null("string"),
        "practice_code": practice,
        "commissioner_code": ibis.null("string"),
        "provider_code": ibis.null("string"),
        "activity_date": day,
        "financial_year": (p.financial_year.cast("string") if "financial_year" in p.columns
                           else financial_year(day)),
        "month": p.month.cast("int64") if "month" in p.columns else financial_month(day),
        "service_line": ibis.literal("prescribing"),
        "hrg_code": ibis.null("string"),
        "treatment_function_code": ibis.null("string"),
        "los_days": ibis.null("int64"),
        "base_price": cost,
        "long_stay_adjustment": zero,
        "short_stay_adjustment": zero,
        "top_up_adjustment": zero,
        "mff_adjustment": zero,
        "marginal_rate_adjustment": zero,
        "price": cost,
        "pricing_rule": ibis.literal(PRESCRIBING_RULE),
        "unpriced_reason": ibis.ifelse(cost.isnull(), "actual_cost is blank",
                                       ibis.null("string")),
    }
    return p.select(**{k: v.cast(PRICED_SCHEMA[k]) for k, v in cols.items()})


def attribute(priced: ir.Table, tables: Mapping[str, ir.Table]) -> ir.Table:
    """``priced_activity`` (+ prescribing from ``tables``) with practice, group and
    commissioner attributed; columns :data:`ATTRIBUTED_SCHEMA`, one row per input row.

    ``tables`` may hold ``practices``, ``practice_groups``, ``commissioners`` and
    ``prescribing``; without ``practices`` every row is unattributed.
    """
    base = priced if tuple(priced.columns) == tuple(PRICED_SCHEMA) \
        else priced.select(*PRICED_SCHEMA)
    if "prescribing" in tables:
        base = base.union(prescribing_lines(tables["prescribing"]))
    # one pass: practices (commissioner, default group) and group segments joined at once
    joined, v = join_organisations(base, tables, "activity_date", with_single=True)
    # the commissioner resolved at pricing (which may have used the activity's own
    # commissioner_code, not carried here) stands for a row whose practice is not known
    cols: dict[str, ir.Value] = {}
    for name, dtype in ATTRIBUTED_SCHEMA.items():
        if name == "commissioner_code":
            value = ibis.ifelse(v["known"], v["practice_commissioner"],
                                ibis.coalesce(base.commissioner_code, v["single"]))
        elif name == "attributed":
            value = v["known"]
        elif name == "group_code":
            value = v["group"]
        else:
            value = base[name]
        cols[name] = value.cast(dtype)
    return joined.select(**cols)
