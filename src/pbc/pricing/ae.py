"""A&E attendances (reference.md §1.1, §1.5, §1.6).

Base price: the attendance HRG's ``tariff_ae.price`` times the department type fraction
(``[ae] department_type_fraction``, default 1.0 for types 1-4). When the tariff table has
the optional ``type_3_price`` column (read from the Annex A ``Type 3 Departments (£)``
column, §1.1: type 3 departments get the simplest currency) and it is not blank, type 3
and 4 attendances are paid that price instead (no fraction). Then the MFF (§1.5). The
marginal rate never applies to A&E (§1.3, HFMA). An HRG not in the tariff, an unknown
department type or provider leave the row unpriced with a reason.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
from ibis import _

from pbc.pricing.money import (
    FRACTION,
    MFF,
    MONEY,
    MONEY_N,
    X8,
    X8N,
    X14,
    dec,
    decimal_text,
    fraction_text,
)
from pbc.pricing.rules import (
    cases_or_default,
    code_text,
    reason_no_mff,
    reason_unknown_provider,
    with_mff,
    with_period,
)
from pbc.pricing.settings import TariffSettings


def price_ae(attendances: ir.Table, tariff_ae: ir.Table, providers: ir.Table,
             settings: TariffSettings) -> ir.Table:
    """Exact (unrounded) prices of A&E attendances in the exact stage layout."""
    fractions = settings.ae.department_type_fraction
    t = with_period(attendances, "arrival_date")
    t = t.mutate(_hrg=_.hrg_code.cast("string"), _dept=_.department_type.cast("string"))
    tar = tariff_ae.select(
        _a_hrg=_.hrg_code.cast("string"),
        _a_price=_.price.cast(MONEY),
        _a_type3=(_.type_3_price.cast(MONEY) if "type_3_price" in tariff_ae.columns
                  else ibis.null(MONEY)),
    )
    t = t.left_join(tar, t._hrg == tar._a_hrg)
    t = with_mff(t, providers)
    fraction = ibis.cases(
        *[(t._dept == k, dec(v, FRACTION)) for k, v in sorted(fractions.items())],
        else_=ibis.null(FRACTION),
    )
    use_type3 = t._dept.isin(("3", "4")) & t._a_type3.notnull()
    t = t.mutate(
        _fraction=fraction,
        _use_type3=use_type3,
        _base=ibis.ifelse(use_type3, t._a_type3.cast(X8),
                          (t._a_price.cast(MONEY_N) * fraction).cast(X8)),
    )
    hrg = code_text(t._hrg)
    reason = ibis.cases(
        (t._a_hrg.isnull(), "HRG " + hrg + " not in tariff_ae"),
        (t._fraction.isnull(), "department type " + code_text(t._dept) + " not recognised"),
        (~t.provider_known, reason_unknown_provider(t)),
        (t.mff.isnull(), reason_no_mff(t)),
        (t._base.isnull(), "no A&E price for HRG " + hrg),
        else_=ibis.null("string"),
    )
    t = t.mutate(unpriced_reason=reason)
    priced = t.unpriced_reason.isnull()
    zero_or_null = ibis.ifelse(priced, dec(0, X14), ibis.null(X14)).cast(X14)
    fraction_desc = cases_or_default(
        [(t._dept == k, f" x {fraction_text(v)}") for k, v in sorted(fractions.items())
         if v != 1], "")
    desc = ibis.ifelse(t._use_type3, "type 3 price", "price" + fraction_desc)
    head = "A&E type " + code_text(t._dept) + " " + hrg + ": "
    rule = ibis.ifelse(priced, head + desc + "; MFF " + decimal_text(t.mff), head + "unpriced")
    return t.mutate(
        activity_type=ibis.literal("ae"),
        activity_id=_.attendance_id.cast("string"),
        service_line=ibis.literal("ae"),
        hrg_code=_._hrg,
        treatment_function_code=ibis.null("string"),
        los_days=ibis.null("int64"),
        x_base=ibis.ifelse(priced, t._base.cast(X14), ibis.null(X14)).cast(X14),
        x_long=zero_or_null, x_short=zero_or_null, x_top_up=zero_or_null,
        x_mff=ibis.ifelse(priced, (t._base.cast(X8N) * (t.mff - 1).cast(MFF)).cast(X14),
                          ibis.null(X14)).cast(X14),
        mret_eligible=ibis.literal(False),
        pricing_rule=rule,
    )
