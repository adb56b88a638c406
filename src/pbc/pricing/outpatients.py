"""Outpatient attendances (docs/sources.md §1.1, §1.5).

Rules, in order:

1. **Did not attend** (``attended`` false): priced at £0.00 by the rule ``DNA: not paid``.
   This is a priced row (price 0), not an unpriced one.
2. **Outpatient procedure**: when the attendance carries a procedure HRG and
   ``tariff_apc.outpatient_procedure_price`` is published for it, that price is the base
   (service line ``outpatient_procedure``). A procedure HRG without such a price is priced
   as an attendance, and the rule text says so.
3. **Attendance** by treatment function (TFC, ``tariff_op``): first attendances (codes 1
   and 3) at ``first_attendance_price``, follow-ups (2 and 4) at ``follow_up_price``
   (§1.1). Non-face-to-face attendances (3 first, 4 follow-up by telephone/video) are paid
   the configured fraction of that price (``[outpatients] telephone_first_fraction`` and
   ``telephone_follow_up_fraction``); the fraction is part of the base price.
4. **MFF** (§1.5): adjustment ``base * (mff - 1)``; oracle £168 x 1.0461 = £175.74.

Outpatients carry no long stay, short stay, top-up or marginal rate adjustments (§1.6: the
marginal rate is for emergency admissions only). A TFC not in the tariff, an unknown
provider or an unknown ``first_attendance`` code leave the row unpriced with a reason.
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

DNA_RULE = "DNA: not paid"


def price_outpatients(attendances: ir.Table, tariff_op: ir.Table, tariff_apc: ir.Table | None,
                      providers: ir.Table, settings: TariffSettings) -> ir.Table:
    """Outpatient attendances priced (base and MFF) in the common *stage* layout."""
    op = settings.outpatients
    t = with_period(attendances, "appointment_date")
    t = t.mutate(
        _tfc=_.treatment_function_code.cast("string"),
        _code=_.first_attendance.cast("string"),
        _attended=_.attended.cast("boolean"),
        _proc_hrg=_.hrg_code.cast("string") if "hrg_code" in t.columns else ibis.null("string"),
    )
    tar = tariff_op.select(
        _o_tfc=_.treatment_function_code.cast("string"),
        _o_first=_.first_attendance_price.cast(MONEY),
        _o_follow=_.follow_up_price.cast(MONEY),
    )
    tar = tar.mutate(_o_tfc_text=code_text(tar._o_tfc))  # rule text, once per tariff row
    t = t.left_join(tar, t._tfc == tar._o_tfc)
    if tariff_apc is not None and "outpatient_procedure_price" in tariff_apc.columns:
        proc = tariff_apc.select(
            _p_hrg=_.hrg_code.cast("string"),
            _p_price=_.outpatient_procedure_price.cast(MONEY),
        ).filter(_._p_price.notnull())
        proc = proc.mutate(_p_hrg_text=code_text(proc._p_hrg))
        t = t.left_join(proc, t._proc_hrg == proc._p_hrg)
    else:
        t = t.mutate(_p_hrg=ibis.null("string"), _p_price=ibis.null(MONEY),
                     _p_hrg_text=ibis.null("string"))
    t = with_mff(t, providers)
    t = t.mutate(
        _first=_._code.isin(("1", "3")),
        _known_code=_._code.isin(("1", "2", "3", "4")),
        _tele=_._code.isin(("3", "4")),
        _dna=(_._attended == ibis.literal(False)).fill_null(False),
        _procedure=_._p_price.notnull(),
        _has_proc_hrg=~(_._proc_hrg.isnull() | (_._proc_hrg.strip() == "")),
    )
    fraction = ibis.ifelse(
        t._tele,
        ibis.ifelse(t._first, dec(op.telephone_first_fraction),
                    dec(op.telephone_follow_up_fraction)),
        dec(1),
    ).cast(FRACTION)
    attendance_price = ibis.ifelse(t._first, t._o_first, t._o_follow).cast(MONEY)
    t = t.mutate(
        _fraction=fraction,
        _base=ibis.ifelse(
            t._procedure & ~t._dna, as_dec(t._p_price, X8), mul(attendance_price, fraction, X8)
        ),
        service_line=ibis.cases(
            (t._procedure & ~t._dna, "outpatient_procedure"),
            (t._first, "outpatient_first"),
            else_="outpatient_follow_up",
        ),
    )
    tfc = code_text(t._tfc)
    reason = ibis.cases(
        (t._dna, ibis.null("string")),
        (t._attended.isnull(), "attended is blank"),
        (~t._known_code, "first_attendance code " + code_text(t._code) + " not recognised"),
        (~t._procedure & t._o_tfc.isnull(), "treatment function " + tfc + " not in tariff_op"),
        (~t.provider_known, reason_unknown_provider(t)),
        (t.mff.isnull(), reason_no_mff(t)),
        (t._base.isnull(),
         ibis.ifelse(t._first, "no first attendance price for treatment function " + tfc,
                     "no follow-up price for treatment function " + tfc)),
        else_=ibis.null("string"),
    )
    t = t.mutate(unpriced_reason=reason)
    priced = t.unpriced_reason.isnull()

    # the rule text is assembled from literals and texts made once per tariff or provider
    # row: a priced attendance's TFC (or procedure HRG) is the tariff's, never blank
    f1 = f" x {fraction_text(op.telephone_first_fraction)}"
    f2 = f" x {fraction_text(op.telephone_follow_up_fraction)}"
    prefix = ibis.cases(
        (t._first & t._tele, "OP first attendance by telephone/video TFC "),
        (t._first, "OP first attendance TFC "),
        (t._tele, "OP follow-up by telephone/video TFC "),
        else_="OP follow-up TFC ",
    )
    attendance_desc = ibis.cases(
        (t._first & t._tele, ": first attendance price" + f1),
        (t._first, ": first attendance price"),
        (t._tele, ": follow-up price" + f2),
        else_=": follow-up price",
    )
    rule = ibis.cases(
        (t._dna, ibis.literal(DNA_RULE)),
        (priced & t._procedure, concat("OP procedure HRG ", t._p_hrg_text,
                                       ": outpatient procedure price", t.mff_rule)),
        (priced & t._has_proc_hrg, concat(
            prefix, t._o_tfc_text, attendance_desc, " (HRG ", t._proc_hrg,
            " has no outpatient procedure price)", t.mff_rule)),
        (priced, concat(prefix, t._o_tfc_text, attendance_desc, t.mff_rule)),
        else_=concat(prefix, tfc, ": unpriced"),
    )
    zero = dec(0, MONEY)
    # a DNA is priced at zero whatever its provider: the product 0 x 1 rounds to 0
    t = t.mutate(
        _pre_mff=ibis.cases((t._dna, dec(0, X8)), (priced, t._base), else_=ibis.null(X8)),
        _mff_factor=ibis.ifelse(t._dna, dec(1, FRACTION), t.mff),
        pricing_rule=rule,
    )
    t = t.mutate(base_price=round_pennies(t._pre_mff))
    t = with_round_product(t, "_pre_mff", "_mff_factor", "_price_before_marginal")
    zero_or_null = ibis.ifelse(t.base_price.notnull(), zero, ibis.null(MONEY)).cast(MONEY)
    return t.mutate(
        activity_type=ibis.literal("op"),
        activity_id=t.attendance_id.cast("string"),
        hrg_code=t._proc_hrg,
        treatment_function_code=t._tfc,
        los_days=ibis.null("int64"),
        long_stay_adjustment=zero_or_null, short_stay_adjustment=zero_or_null,
        top_up_adjustment=zero_or_null,
        mff_adjustment=add(t._price_before_marginal, -t.base_price),
        mret_eligible=ibis.literal(False),
    )
