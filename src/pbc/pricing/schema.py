"""The layout of ``priced_activity`` (the pricing output, a key output table), kept apart so that
attribution can use it without importing the pricing rules."""

from __future__ import annotations

import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from pbc.pricing.money import MONEY

#: columns of ``priced_activity`` as :func:`price_activity` returns them, with their types
PRICED_SCHEMA: dict[str, dt.DataType] = {
    "activity_type": dt.string,
    "activity_id": dt.string,
    "patient_id": dt.string,
    "practice_code": dt.string,
    "commissioner_code": dt.string,
    "provider_code": dt.string,
    "activity_date": dt.date,
    "financial_year": dt.string,
    "month": dt.int64,
    "service_line": dt.string,
    "hrg_code": dt.string,
    "treatment_function_code": dt.string,
    "los_days": dt.int64,
    "base_price": MONEY,
    "long_stay_adjustment": MONEY,
    "short_stay_adjustment": MONEY,
    "top_up_adjustment": MONEY,
    "mff_adjustment": MONEY,
    "marginal_rate_adjustment": MONEY,
    "price": MONEY,
    "pricing_rule": dt.string,
    "unpriced_reason": dt.string,
}

#: the exact (unrounded) price, kept only when asked for (``keep_exact=True``)
EXACT_PRICE = "price_exact"

#: service lines (priced activity, plus the lines attribution adds)
SERVICE_LINES = (
    "elective_inpatient", "day_case", "non_elective", "outpatient_first",
    "outpatient_follow_up", "outpatient_procedure", "ae", "prescribing",
)

#: The money measure for budgets (historic spend), phasing profiles and benchmarking of
#: activity: the tariff value **before** the emergency marginal rate. The marginal rate is a
#: contract settlement between commissioner and provider; how much of it falls on a spell
#: depends on the order in which the contract's spells were discharged, so it must not move
#: money between months or practices. SQL text over ``priced_activity`` columns (NULL where
#: the row is unpriced).
TARIFF_VALUE_SQL = "(price - marginal_rate_adjustment)"


def tariff_value(t: ir.Table) -> ir.DecimalValue:
    """:data:`TARIFF_VALUE_SQL` as an Ibis expression over ``priced_activity``."""
    value: ir.DecimalValue = (t.price - t.marginal_rate_adjustment).cast(MONEY)
    return value
