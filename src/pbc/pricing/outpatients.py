"""Outpatient attendances (reference.md §1.1, §1.5).

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
    code_text,
    reason_no_mff,
    reason_unknown_provider,
    with_mff,
    with_period,
)
from pbc.pricing.settings import TariffSettings

DNA_RULE = "DNA: not paid"


def price_outpatients(attendances: ir.Table, tariff_op: ir.Table, tariff_apc: ir.Table | None,
                      providers: ir.Table, settings: TariffSettings) -> ir.Table:
    """Exact (unrounded) prices of outpatient attendances in the exact stage layout."""
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
    t = t.left_join(tar, t._tfc == tar._o_tfc)
    if tariff_apc is not None and "outpatient_procedure_price" in tariff_apc.columns:
        proc = tariff_apc.select(
            _p_hrg=_.hrg_code.cast("string"),
            _p_price=_.outpatient_procedure_price.cast(MONEY),
        ).filter(_._p_price.notnull())
        t = t.left_join(proc, t._proc_hrg == proc._p_hrg)
    else:
        t = t.mutate(_p_hrg=ibis.null("string"), _p_price=ibis.null(MONEY))
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
    attendance_price = ibis.ifelse(t._first, t._o_first, t._o_follow).cast(MONEY_N)
    t = t.mutate(
        _fraction=fraction,
        _base=ibis.ifelse(
            t._procedure & ~t._dna, t._p_price.cast(X8), (attendance_price * fraction).cast(X8)
        ).cast(X8),
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
    zero = dec(0, X14)
    x_base = ibis.cases((t._dna, zero), (priced, t._base.cast(X14)), else_=ibis.null(X14))
    x_mff = ibis.cases(
        (t._dna, zero),
        (priced, (t._base.cast(X8N) * (t.mff - 1).cast(MFF)).cast(X14)),
        else_=ibis.null(X14),
    )
    zero_or_null = ibis.ifelse(priced, zero, ibis.null(X14)).cast(X14)

    kind = ibis.ifelse(t._first, "first attendance", "follow-up")
    kind = ibis.ifelse(t._tele, kind + " by telephone/video", kind)
    tele_text = ibis.ifelse(
        t._first,
        f" x {fraction_text(op.telephone_first_fraction)}",
        f" x {fraction_text(op.telephone_follow_up_fraction)}",
    )
    attendance_desc = ibis.ifelse(t._first, "first attendance price", "follow-up price") + \
        ibis.ifelse(t._tele, tele_text, "")
    desc = ibis.cases(
        (t._procedure, "OP procedure HRG " + code_text(t._proc_hrg)
         + ": outpatient procedure price"),
        (t._has_proc_hrg, "OP " + kind + " TFC " + tfc + ": " + attendance_desc
         + " (HRG " + code_text(t._proc_hrg) + " has no outpatient procedure price)"),
        else_="OP " + kind + " TFC " + tfc + ": " + attendance_desc,
    )
    rule = ibis.cases(
        (t._dna, ibis.literal(DNA_RULE)),
        (priced, desc + "; MFF " + decimal_text(t.mff)),
        else_="OP " + kind + " TFC " + tfc + ": unpriced",
    )
    return t.mutate(
        activity_type=ibis.literal("op"),
        activity_id=_.attendance_id.cast("string"),
        hrg_code=_._proc_hrg,
        treatment_function_code=_._tfc,
        los_days=ibis.null("int64"),
        x_base=x_base, x_long=zero_or_null, x_short=zero_or_null, x_top_up=zero_or_null,
        x_mff=x_mff,
        mret_eligible=ibis.literal(False),
        pricing_rule=rule,
    )
