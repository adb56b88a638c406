"""Admitted patient care: the spell price (docs/sources.md §1.3, §1.4, §1.5).

For each spell (``apc_spells`` joined to ``tariff_apc`` by HRG and to ``providers``):

``los``
    ``discharge_date - admission_date`` in days (0 = same day), §1.3, §5.3.
Base price by admission method and patient classification (§1.3)
    * elective (11, 12, 13):

      - day case (classification 2): ``day_case_price``, else ``combined_elective_price``;
      - ordinary (1) and mothers and babies (5): ``ordinary_elective_price``, else
        ``combined_elective_price`` (the Annex A combined day case / ordinary price is the
        fallback wherever only it is published);
      - regular day and night attenders (3, 4): the reference is silent. Default: priced
        as day cases (planned care without an overnight stay for treatment is day-case-like;
        the spell never attracts long stay payments in practice). The setting
        ``[apc] regular_attender`` can price them as ordinary electives, or leave them
        unpriced ("local price") where the local contract pays them outside the tariff.

    * non-elective (emergency 21-25, 2A-2D, 28; maternity 31, 32; other 81-83):
      ``non_elective_price``.
Trim point and long stay (§1.3)
    elective spells use ``elective_trim_days``, non-elective ``non_elective_trim_days``;
    when ``los > trim`` the long stay adjustment is ``(los - trim) * excess_bed_day_price``.
    A blank trim point (possible in an Annex A workbook) means no long stay payment.
Reduced short stay emergency tariff (SSEM, §1.3)
    when ``sse_applies = 'Y'``, the admission is an *emergency* (21-25, 2A-2D, 28), age on
    admission ``>= min_age`` (19) and ``los <= max_length_of_stay`` (0 or 1 day): the SSEM
    price replaces the base price (short stay adjustment = ``sse_price - base``) and there
    is no long stay payment.
Specialised top-up (§1.4)
    ``fraction(category) * (base + long stay + short stay)``.
MFF (§1.5)
    ``(tariff including adjustments) * (mff - 1)`` is the MFF adjustment.
The marginal rate (§1.6) comes after all of these: :mod:`pbc.pricing.mret`.

A spell that cannot be priced (HRG not in the tariff, no price for its classification,
unknown provider, SSEM without an SSEM price, long stay without an excess bed day price)
gets NULL money and an ``unpriced_reason``; it is never priced at zero.
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
from ibis import _

from pbc.pricing.money import (
    FRACTION,
    MONEY,
    X8,
    add,
    dec,
    fraction_text,
    mul,
    round_pennies,
    with_round_product,
)
from pbc.pricing.rules import (
    ELECTIVE_ADMISSION_METHODS,
    EMERGENCY_ADMISSION_METHODS,
    NON_ELECTIVE_ADMISSION_METHODS,
    cases_or_default,
    code_text,
    concat,
    reason_no_mff,
    reason_unknown_provider,
    with_mff,
    with_period,
)
from pbc.pricing.settings import TariffSettings

_TARIFF_COLUMNS = {
    "day_case_price": MONEY, "ordinary_elective_price": MONEY,
    "combined_elective_price": MONEY, "elective_trim_days": "int64",
    "non_elective_price": MONEY, "non_elective_trim_days": "int64",
    "excess_bed_day_price": MONEY, "sse_applies": "string", "sse_price": MONEY,
}
#: excess bed days as a decimal (to multiply the per day price exactly)
DAYS = dt.Decimal(10, 0)


def _tariff(tariff_apc: ir.Table) -> ir.Table:
    cols = {"_t_hrg": tariff_apc.hrg_code.cast("string")}
    for name, dtype in _TARIFF_COLUMNS.items():
        cols[f"_t_{name}"] = (tariff_apc[name].cast(dtype) if name in tariff_apc.columns
                              else ibis.null(dtype))
    tar = tariff_apc.select(**cols)
    return tar.mutate(_t_hrg_text=code_text(tar._t_hrg))  # rule text, once per tariff row


def length_of_stay(spells: ir.Table) -> ir.IntegerValue:
    """Spell length of stay in days: discharge date minus admission date (§1.3)."""
    return spells.discharge_date.cast("date").delta(
        spells.admission_date.cast("date"), unit="day")


def price_apc(spells: ir.Table, tariff_apc: ir.Table, providers: ir.Table,
              settings: TariffSettings) -> ir.Table:
    """APC spells priced up to the MFF, in the common *stage* layout.

    See :func:`pbc.pricing.activity.price_activity` for the layout; ``mret_eligible`` =
    emergency admission (the marginal rate applies to those only).
    """
    sse = settings.short_stay_emergency
    regular = settings.apc.regular_attender
    t = with_period(spells, "discharge_date")
    t = t.mutate(
        _method=_.admission_method.cast("string"),
        _classpat=_.patient_classification.cast("string"),
        _hrg=_.hrg_code.cast("string"),
        los_days=length_of_stay(t).cast("int64"),
        _top_up_category=(_.top_up_category.cast("string") if "top_up_category" in t.columns
                          else ibis.null("string")),
    )
    tar = _tariff(tariff_apc)
    t = t.left_join(tar, t._hrg == tar._t_hrg)
    t = with_mff(t, providers)

    elective = _._method.isin(ELECTIVE_ADMISSION_METHODS)
    t = t.mutate(
        _elective=elective,
        _non_elective=_._method.isin(NON_ELECTIVE_ADMISSION_METHODS),
        mret_eligible=_._method.isin(EMERGENCY_ADMISSION_METHODS),
        _regular=_._classpat.isin(("3", "4")),
    )
    day_case_like = (_._classpat == "2") | (_._regular & ibis.literal(regular == "day_case"))
    t = t.mutate(_day_case_like=_._elective & day_case_like)
    t = t.mutate(
        _base=ibis.cases(
            (_._day_case_like, ibis.coalesce(_._t_day_case_price, _._t_combined_elective_price)),
            (_._elective, ibis.coalesce(_._t_ordinary_elective_price,
                                        _._t_combined_elective_price)),
            (_._non_elective, _._t_non_elective_price),
            else_=ibis.null(MONEY),
        ),
        _base_label=ibis.cases(
            (_._day_case_like & _._t_day_case_price.notnull(), "day case price"),
            (_._day_case_like, "combined elective price (no day case price)"),
            (_._elective & _._t_ordinary_elective_price.notnull(), "ordinary elective price"),
            (_._elective, "combined elective price (no ordinary elective price)"),
            else_="non-elective price",
        ),
        _trim=ibis.ifelse(_._elective, _._t_elective_trim_days, _._t_non_elective_trim_days),
        service_line=ibis.cases(
            (_._day_case_like, "day_case"),
            (_._elective, "elective_inpatient"),
            else_="non_elective",
        ),
    )
    t = t.mutate(
        _ssem=(
            (_._t_sse_applies.upper() == "Y")
            & _.mret_eligible
            & (_.age_on_admission.cast("int64") >= sse.min_age)
            & (_.los_days >= 0)
            & (_.los_days <= sse.max_length_of_stay)
        ).fill_null(False),
        _excess_days=ibis.ifelse(
            _._trim.notnull() & (_.los_days > _._trim), _.los_days - _._trim, 0
        ).cast("int64"),
    )
    t = t.mutate(_excess_days=ibis.ifelse(_._ssem, 0, _._excess_days).cast("int64"))

    hrg = code_text(t._hrg)
    reason = ibis.cases(
        (t._t_hrg.isnull(), "HRG " + hrg + " not in tariff_apc"),
        (~t.provider_known, reason_unknown_provider(t)),
        (t.mff.isnull(), reason_no_mff(t)),
        (~(t._elective | t._non_elective),
         "admission method " + code_text(t._method) + " not recognised"),
        (t.los_days.isnull() | (t.los_days < 0), "length of stay unknown or negative"),
        (t._elective & t._regular & ibis.literal(regular == "unpriced"),
         "regular day/night attender: priced locally, outside the tariff"),
        (t._base.isnull() & t._day_case_like,
         "no day case or combined elective price for HRG " + hrg),
        (t._base.isnull() & t._elective,
         "no ordinary elective or combined elective price for HRG " + hrg),
        (t._base.isnull(), "no non-elective price for HRG " + hrg),
        (t._ssem & t._t_sse_price.isnull(),
         "reduced short stay emergency tariff applies but HRG " + hrg + " has no SSEM price"),
        ((t._excess_days > 0) & t._t_excess_bed_day_price.isnull(),
         "long stay beyond trim point but HRG " + hrg + " has no excess bed day price"),
        else_=ibis.null("string"),
    )
    t = t.mutate(unpriced_reason=reason)
    priced = t.unpriced_reason.isnull()

    def when_priced(value: ir.Value, dtype: dt.DataType) -> ir.Value:
        return ibis.ifelse(priced, value, ibis.null(dtype)).cast(dtype)

    top_up = settings.top_up.fractions()
    # 1 + the top-up fraction (exact: the settings hold Decimals)
    top_up_factor = ibis.cases(
        *[(t._top_up_category == cat, dec(1 + f, FRACTION)) for cat, f in top_up.items()],
        else_=dec(1, FRACTION),
    )
    top_up_text = cases_or_default(
        [(t._top_up_category == cat, f"; top-up {cat} {fraction_text(f)}")
         for cat, f in top_up.items() if f != 0], "")
    desc = ibis.ifelse(
        t._ssem, "reduced short stay emergency price",
        ibis.ifelse(t._excess_days > 0,
                    concat("base + ", t._excess_days.cast("string"), " excess bed days"),
                    t._base_label),
    )
    prefix = ibis.cases(
        (t._day_case_like, "APC elective day case "),
        (t._elective, "APC elective "),
        else_="APC non-elective ",
    )
    # a priced spell's HRG is the tariff's: its text was made once per tariff row
    rule = ibis.ifelse(priced,
                       concat(prefix, t._t_hrg_text, ": ", desc, top_up_text, t.mff_rule),
                       concat(prefix, hrg, ": unpriced"))
    # the exact stages (docs/sources.md §1.3-§1.5): c0 = base, c1 = c0 + long stay,
    # c2 = c1 + short stay (all whole pennies), c3 = c2 x (1 + top-up) (8 places);
    # the MFF (c4 = c3 x MFF) is rounded by with_round_product
    t = t.mutate(
        base_price=when_priced(t._base, MONEY),
        long_stay_adjustment=when_priced(
            mul(t._excess_days.cast(DAYS), t._t_excess_bed_day_price.fill_null(0), MONEY),
            MONEY),
        short_stay_adjustment=when_priced(
            ibis.ifelse(t._ssem, add(t._t_sse_price, -t._base), dec(0, MONEY)), MONEY),
        _top_up_factor=top_up_factor,
        pricing_rule=rule,
    )
    c2 = add(t.base_price, t.long_stay_adjustment, t.short_stay_adjustment)
    t = t.mutate(_c2=c2, _pre_mff=mul(c2, t._top_up_factor, X8))
    t = with_round_product(t, "_pre_mff", "mff", "_price_before_marginal")
    r3 = round_pennies(t._pre_mff)
    return t.mutate(
        top_up_adjustment=add(r3, -t._c2),
        mff_adjustment=add(t._price_before_marginal, -r3),
        _mff_factor=t.mff,
        activity_type=ibis.literal("apc"),
        activity_id=t.spell_id.cast("string"),
        hrg_code=t._hrg,
        treatment_function_code=(t.treatment_function_code.cast("string")
                                 if "treatment_function_code" in t.columns
                                 else ibis.null("string")),
    )
