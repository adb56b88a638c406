"""A&E attendances (docs/sources.md §1.1, §1.5, §1.6).

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
    MONEY,
    X8,
    add,
    as_dec,
    dec,
    fraction_text,
    mul,
    round_pennies,
    with_round_product,
)
from pbc.pricing.rules import (
    code_text,
    concat,
    reason_no_mff,
    reason_unknown_provider,
    with_mff,
    with_period,
)
from pbc.pricing.settings import TariffSettings


def price_ae(attendances: ir.Table, tariff_ae: ir.Table, providers: ir.Table,
             settings: TariffSettings) -> ir.Table:
    """A&E attendances priced (base and MFF) in the common *stage* layout."""
    fractions = settings.ae.department_type_fraction
    t = with_period(attendances, "arrival_date")
    t = t.mutate(_hrg=_.hrg_code.cast("string"), _dept=_.department_type.cast("string"))
    tar = tariff_ae.select(
        _a_hrg=_.hrg_code.cast("string"),
        _a_price=_.price.cast(MONEY),
        _a_type3=(_.type_3_price.cast(MONEY) if "type_3_price" in tariff_ae.columns
                  else ibis.null(MONEY)),
    )
    tar = tar.mutate(_a_hrg_text=code_text(tar._a_hrg))  # rule text, once per tariff row
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
        _base=ibis.ifelse(use_type3, as_dec(t._a_type3, X8), mul(t._a_price, fraction, X8)),
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
    # a priced attendance's HRG is the tariff's and its department type one of the
    # settings' keys (1-4): neither is blank, so no per-row blank check in the rule text
    desc = ibis.cases(
        (t._use_type3, "type 3 price"),
        *[(t._dept == k, f"price x {fraction_text(v)}") for k, v in sorted(fractions.items())
          if v != 1],
        else_="price",
    )
    rule = ibis.ifelse(
        priced,
        concat("A&E type ", t._dept, " ", t._a_hrg_text, ": ", desc, t.mff_rule),
        concat("A&E type ", code_text(t._dept), " ", hrg, ": unpriced"),
    )
    t = t.mutate(
        _pre_mff=ibis.ifelse(priced, t._base, ibis.null(X8)).cast(X8),
        _mff_factor=t.mff,
        pricing_rule=rule,
    )
    t = t.mutate(base_price=round_pennies(t._pre_mff))
    t = with_round_product(t, "_pre_mff", "_mff_factor", "_price_before_marginal")
    zero_or_null = ibis.ifelse(t.base_price.notnull(), dec(0, MONEY),
                               ibis.null(MONEY)).cast(MONEY)
    return t.mutate(
        activity_type=ibis.literal("ae"),
        activity_id=t.attendance_id.cast("string"),
        service_line=ibis.literal("ae"),
        hrg_code=t._hrg,
        treatment_function_code=ibis.null("string"),
        los_days=ibis.null("int64"),
        long_stay_adjustment=zero_or_null, short_stay_adjustment=zero_or_null,
        top_up_adjustment=zero_or_null,
        mff_adjustment=add(t._price_before_marginal, -t.base_price),
        mret_eligible=ibis.literal(False),
    )
