"""Marginal rate emergency tariff (MRET), from 2010-11.

The rule (HFMA, "Finance managers welcome no change in final tariff", 3 Mar 2010; the
project's account with every source: ``docs/sources.md`` §1.6): a provider is paid the
tariff for a contract's emergency admissions up to a **baseline** set for that contract
(commissioner, provider) and year, and only ``rate`` (30% in 2010-11 to 2014-15) of the
tariff above it::

    actual <= baseline:  pay actual
    actual >  baseline:  pay baseline + rate x (actual - baseline)

It is applied **after every other national adjustment** (short stay emergency, long stay,
specialised top-up and the MFF: "a spell attracting both the 70% short stay adjustment and
the 30% marginal rate would be paid at 21% of the tariff price", HFMA 3 Mar 2010), **per
contract and per financial year**, to emergency admissions (admission methods 21-25,
2A-2D, 28) only; never to outpatients or A&E.

Mechanics (the sources give the rule on the year's total, not its in-year mechanics; pbc
spreads it over the spells deterministically, so that every spell carries its share and
the shares add up):

* a spell's *value* is its price before the marginal rate (the tariff value after the
  MFF, rounded to the penny once: :func:`pbc.pricing.schema.tariff_value`); ``actual`` is
  the sum of the values of the contract's emergency spells of the year;
* the baseline of a spell is the one of its contract (commissioner, provider) **and its
  financial year**; a spell of a year, or a contract, without a baseline is not cut, and
  its rule text says so (``no marginal rate: no contract baseline for 2024-25``);
* the spells are put in order of ``(discharge date, activity_id)`` and ``X(k)`` is the
  part of the running total of values above the baseline after spell ``k``
  (``max(0, running - baseline)``); the spell's part above the baseline is
  ``X(k) - X(k-1)`` (so one spell may straddle the baseline);
* what is paid above the baseline so far, ``rate x X(k)``, is rounded half up to the penny
  at every spell, and each spell is paid its value less its part above the baseline plus
  its step of that rounded amount::

      price(k) = value(k) - (X(k) - X(k-1)) + round(rate x X(k)) - round(rate x X(k-1))

  so the contract's prices add up **exactly** to
  ``round(baseline + rate x (actual - baseline))`` (the steps telescope), each spell is
  within a penny of its own exact share ``value - (1 - rate) x (its part above)``, and no
  price is negative;
* unpriced spells take no part;
* a spell discharged in month *m* comes after every spell of the months before it, so the
  running total at the start of month *m* is the sum of the values of the earlier months:
  kept with each priced month (:func:`contract_month_totals`, added up by
  :mod:`pbc.services.pricing`), it is the ``opening`` from which month *m* is priced on
  its own, to the same penny as the year priced at once.

Which spells bear the cut depends on the discharge order. That is a settlement between
commissioner and provider: budgets, phasing and benchmarking use the value before the cut
(:func:`pbc.pricing.schema.tariff_value`), which does not depend on the order.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from pbc.pricing.money import (
    FRACTION,
    MONEY,
    X8W,
    X14,
    X20,
    add,
    as_dec,
    dec,
    fraction_text,
    mul,
    round_pennies,
)
from pbc.pricing.settings import TariffSettings

#: rate x (the part of a contract's running total above its baseline): 8 places, 128-bit
#: (a contract's year may pass the 64-bit limit of 8 places, £10^10)
PAID_ABOVE = X8W


def baselines_table(settings: TariffSettings) -> ir.Table:
    """The contract baselines of the settings as a small table: commissioner, provider,
    financial year (``2025-26``) and baseline (pounds, DECIMAL(18,2))."""
    rows = settings.emergency_marginal_rate.baseline
    data = pa.table({
        "_b_commissioner": pa.array([b.commissioner_code for b in rows], pa.string()),
        "_b_provider": pa.array([b.provider_code for b in rows], pa.string()),
        "_b_year": pa.array([b.financial_year for b in rows], pa.string()),
        "_b_baseline": pa.array([b.baseline for b in rows], pa.decimal128(18, 2)),
    })
    return ibis.memtable(data)


def exact_value(t: ir.Table) -> ir.DecimalValue:
    """A row's exact value after the MFF (14 places, 128-bit): ``_pre_mff x _mff_factor``."""
    return mul(as_dec(t._pre_mff, X8W), t._mff_factor, X14)


def _year(t: ir.Table) -> ir.StringValue:
    """The spell's financial year as baselines are keyed (``2025-26``; ``2025/26`` read so)."""
    return t.financial_year.cast("string").replace("/", "-")


def _zero_or_null(t: ir.Table) -> ir.DecimalValue:
    """No marginal rate adjustment: 0 for a priced row, NULL for an unpriced one."""
    value: ir.DecimalValue = ibis.ifelse(t._price_before_marginal.notnull(), dec(0, MONEY),
                                         ibis.null(MONEY)).cast(MONEY)
    return value


def _with_baselines(spells: ir.Table, settings: TariffSettings) -> ir.Table:
    """``spells`` with their contract's baseline for their year (``_b_baseline``),
    ``_eligible`` (an emergency spell that is priced) and ``_mret`` (eligible, with a
    baseline: the rule applies)."""
    t = spells
    eligible = (t.mret_eligible & t._price_before_marginal.notnull()).fill_null(False)
    bl = baselines_table(settings)
    t = t.left_join(bl, (t.commissioner_code == bl._b_commissioner)
                    & (t.provider_code == bl._b_provider) & (_year(t) == bl._b_year))
    return t.mutate(_eligible=eligible,
                    _mret=(eligible & t._b_baseline.notnull()).fill_null(False))


#: the value a spell adds to its contract's running total (its price before the marginal
#: rate where the rule applies to it, else NULL): what :func:`contract_month_totals` adds up
RUNNING_VALUE = "marginal_rate_value"

#: the columns of a contract's running total (:func:`contract_month_totals`, and the
#: ``opening`` of :func:`apply_marginal_rate`)
CONTRACT_KEYS = ("commissioner_code", "provider_code", "financial_year")


def contract_month_totals(spells: ir.Table, settings: TariffSettings) -> ir.Table:
    """Per contract (commissioner, provider), financial year and month: the spells the
    marginal rate applies to (``spells``) and the sum of their values (``value``, the
    price before the marginal rate, DECIMAL(18,2)). Added up over a year's months in
    order, these are the running totals :func:`apply_marginal_rate` reads as ``opening``
    (the spells of a month are discharged after those of every earlier month).

    ``spells`` as for :func:`apply_marginal_rate`, with ``month``. No baseline: no rows.
    """
    if not settings.emergency_marginal_rate.baseline:
        t = spells.filter(ibis.literal(False))
    else:
        t = _with_baselines(spells, settings)
        t = t.filter(t._mret)
    return t.group_by([*CONTRACT_KEYS, "month"]).aggregate(
        spells=t.count().cast("int64"),
        value=as_dec(t._price_before_marginal.sum(), MONEY))


def apply_marginal_rate(spells: ir.Table, settings: TariffSettings, *,
                        keep_exact: bool = False, opening: ir.Table | None = None
                        ) -> ir.Table:
    """Add ``marginal_rate_adjustment`` (shown, <= 0), ``price``, :data:`RUNNING_VALUE` and
    the rule text to APC spells priced up to the MFF (and ``price_exact``, DECIMAL(38,20),
    when ``keep_exact``).

    ``spells`` needs ``commissioner_code``, ``provider_code``, ``financial_year``,
    ``activity_date`` (discharge date), ``activity_id``, ``mret_eligible``,
    ``_price_before_marginal`` (the value after the MFF, rounded; NULL when unpriced),
    ``_pre_mff`` and ``_mff_factor`` (for ``price_exact``).

    ``opening``: the running totals the contracts' years start from (``commissioner_code``,
    ``provider_code``, ``financial_year``, ``value_to_date``: the values of the contract's
    spells of that year discharged before any of ``spells``, one row per contract and
    year; none: 0). With it, the months after a year's first can be priced without the
    spells before them: the result is the same as pricing them all together.

    ``price_exact`` is the exact value after the MFF for a spell that is not cut, and
    ``value - (1 - rate) x (its part above the baseline)`` for one that is (its exact share
    of the contract's payment; ``price`` is within a penny of it).
    """
    mret = settings.emergency_marginal_rate
    t = spells
    eligible = (t.mret_eligible & t._price_before_marginal.notnull()).fill_null(False)
    no_baseline = "; no marginal rate: no contract baseline for "
    if not mret.baseline:
        t = t.mutate(marginal_rate_adjustment=_zero_or_null(t), price=t._price_before_marginal,
                     pricing_rule=ibis.ifelse(eligible, t.pricing_rule + no_baseline + _year(t),
                                              t.pricing_rule),
                     **{RUNNING_VALUE: ibis.null(MONEY)})
        if keep_exact:
            t = t.mutate(**{"price_exact": as_dec(exact_value(t), X20)})
        return t
    t = _with_baselines(spells, settings)
    # only spells the rule applies to are put in order: the running totals sort a fraction
    # of the rows
    cut = t.filter(t._mret)
    if opening is not None:
        o = opening.select(_o_commissioner=opening.commissioner_code.cast("string"),
                           _o_provider=opening.provider_code.cast("string"),
                           _o_year=opening.financial_year.cast("string"),
                           _o_value=as_dec(opening.value_to_date, MONEY))
        cut = cut.left_join(o, (cut.commissioner_code == o._o_commissioner)
                            & (cut.provider_code == o._o_provider)
                            & (cut.financial_year == o._o_year))
        cut = cut.mutate(_opening=cut._o_value.fill_null(dec(0, MONEY)))
    w = ibis.window(
        group_by=[cut.commissioner_code, cut.provider_code, cut.financial_year],
        order_by=[cut.activity_date, cut.activity_id],
        rows=(None, 0),
    )
    value = cut._price_before_marginal
    cut = cut.mutate(_running=add(value.sum().over(w), cut._opening) if opening is not None
                     else as_dec(value.sum().over(w), MONEY))
    zero = dec(0, MONEY)
    cut = cut.mutate(
        _x=ibis.greatest(zero, add(cut._running, -cut._b_baseline)).cast(MONEY),
        _x_before=ibis.greatest(zero, add(cut._running, -value, -cut._b_baseline)).cast(MONEY),
    )
    rate = dec(mret.rate, FRACTION)
    cut = cut.mutate(
        _above=add(cut._x, -cut._x_before),
        _paid_step=add(round_pennies(mul(cut._x, rate, PAID_ABOVE)),
                       -round_pennies(mul(cut._x_before, rate, PAID_ABOVE))),
    )
    cut = cut.mutate(marginal_rate_adjustment=add(cut._paid_step, -cut._above))
    text = f"; marginal rate {fraction_text(mret.rate)} above contract baseline"
    cut = cut.mutate(
        **{RUNNING_VALUE: value},
        price=add(value, cut.marginal_rate_adjustment),
        pricing_rule=ibis.ifelse(cut._above > 0, cut.pricing_rule + text, cut.pricing_rule),
    )
    if keep_exact:
        complement = dec(1 - mret.rate, FRACTION)
        exact_cut = as_dec(add(as_dec(value, X20), -mul(cut._above, complement, X20),
                               dtype=X20), X20)
        cut = cut.mutate(**{"price_exact": ibis.ifelse(
            cut._above > 0, exact_cut, as_dec(exact_value(cut), X20))})
    rest = t.filter(~t._mret)
    rest = rest.mutate(
        marginal_rate_adjustment=_zero_or_null(rest), price=rest._price_before_marginal,
        **{RUNNING_VALUE: ibis.null(MONEY)},
        pricing_rule=ibis.ifelse(rest._eligible, rest.pricing_rule + no_baseline + _year(rest),
                                 rest.pricing_rule))
    if keep_exact:
        rest = rest.mutate(**{"price_exact": as_dec(exact_value(rest), X20)})
    columns = [*t.columns, "marginal_rate_adjustment", "price", RUNNING_VALUE]
    columns = list(dict.fromkeys(columns + (["price_exact"] if keep_exact else [])))
    return cut.select(*columns).union(rest.select(*columns))  # the caller selects columns


