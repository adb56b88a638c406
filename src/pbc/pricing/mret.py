"""Marginal rate emergency tariff (MRET), reference.md §1.6 (and §1.3 for the order).

Applied **after all other adjustments** (SSEM, long stay, top-up and MFF: HFMA 3 Mar 2010,
§1.3), **per contract** (commissioner, provider) and per financial year, to emergency
admissions (admission methods 21-25, 2A-2D, 28) only; never to outpatients or A&E.

Mechanics (the reference gives the annual formula
``pay baseline + rate x (actual - baseline)``; it is [UNSURE] about in-year mechanics, so
pbc spreads it over spells deterministically):

* a contract's emergency spells are put in order of ``(discharge date, activity_id)``;
* the running total of their values (exact, after MFF) up to the baseline is paid in full;
* the value above the baseline is paid at ``rate``; the one spell that straddles the
  baseline is split pro rata: its part above the baseline (``running total - baseline``)
  is paid at ``rate``, the rest in full;
* the marginal rate adjustment of a spell is ``-(1 - rate) x (its part above baseline)``,
  so the contract's total is exactly ``baseline + rate x (actual - baseline)``;
* a contract with no baseline in the settings (or a spell with no commissioner) is not
  adjusted; unpriced spells take no part.

Oracle (§1.3): a spell with the 70% short stay adjustment wholly above baseline at a 30%
marginal rate is paid 0.70 x 0.30 = 21% of the tariff price.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from pbc.pricing.money import (
    MONEY,
    UNIT_FRACTION,
    X8W,
    X14,
    X14N,
    X20,
    add,
    as_dec,
    dec,
    fraction_text,
    mul,
    round_pennies,
)
from pbc.pricing.settings import TariffSettings


def baselines_table(settings: TariffSettings) -> ir.Table:
    """The contract baselines of the settings as a small table (pounds, DECIMAL(18,2))."""
    rows = settings.emergency_marginal_rate.baseline
    data = pa.table({
        "_b_commissioner": pa.array([b.commissioner_code for b in rows], pa.string()),
        "_b_provider": pa.array([b.provider_code for b in rows], pa.string()),
        "_b_baseline": pa.array([b.baseline for b in rows], pa.decimal128(18, 2)),
    })
    return ibis.memtable(data)


def exact_value(t: ir.Table) -> ir.DecimalValue:
    """A row's exact value after the MFF (14 places, 128-bit): ``_pre_mff x _mff_factor``."""
    return mul(as_dec(t._pre_mff, X8W), t._mff_factor, X14)


def apply_marginal_rate(spells: ir.Table, settings: TariffSettings, *,
                        keep_exact: bool = False) -> ir.Table:
    """Add ``marginal_rate_adjustment`` (shown, <= 0), ``price`` and the rule text to APC
    spells priced up to the MFF (and ``price_exact``, DECIMAL(38,20), when ``keep_exact``).

    ``spells`` needs ``commissioner_code``, ``provider_code``, ``financial_year``,
    ``activity_date`` (discharge date), ``activity_id``, ``mret_eligible``, ``_pre_mff`` and
    ``_mff_factor`` (the exact value before the MFF and the MFF), and
    ``_price_before_marginal`` (that value times the MFF, rounded; NULL when unpriced).

    Only the running totals are 128-bit (a contract's year needs more than 64 bits at 14
    places). A spell wholly at or below its baseline keeps its rounded price; only a spell
    with value above the baseline has its exact price (20 places) rounded.
    """
    mret = settings.emergency_marginal_rate
    t = spells
    zero_or_null = ibis.ifelse(t._price_before_marginal.notnull(), dec(0, MONEY),
                               ibis.null(MONEY)).cast(MONEY)
    if not mret.baseline:
        t = t.mutate(marginal_rate_adjustment=zero_or_null, price=t._price_before_marginal)
        if keep_exact:
            t = t.mutate(**{"price_exact": as_dec(exact_value(t), X20)})
        return t
    bl = baselines_table(settings)
    t = t.left_join(
        bl, (t.commissioner_code == bl._b_commissioner) & (t.provider_code == bl._b_provider))
    t = t.mutate(
        _mret=(t.mret_eligible & t._pre_mff.notnull() & t._b_baseline.notnull()
               ).fill_null(False))
    # only spells the rule applies to are put in order (a spell outside it has nothing
    # above any baseline): the running totals sort a fraction of the rows
    eligible = t.filter(t._mret)
    eligible = eligible.mutate(_value=exact_value(eligible))
    w = ibis.window(
        group_by=[eligible.commissioner_code, eligible.provider_code, eligible.financial_year],
        order_by=[eligible.activity_date, eligible.activity_id],
        rows=(None, 0),
    )
    eligible = eligible.mutate(_running=as_dec(eligible._value.sum().over(w), X14N))
    over = as_dec(eligible._running - eligible._b_baseline, X14N)
    eligible = eligible.mutate(_above=ibis.greatest(
        dec(0, X14N), ibis.least(as_dec(eligible._value, X14N), over)).cast(X14N))
    others = t.filter(~t._mret)
    others = others.mutate(_value=dec(0, X14), _running=dec(0, X14N), _above=dec(0, X14N))
    t = eligible.union(others.select(*eligible.columns))
    # exact price above the baseline: value - (1 - rate) x (the part above the baseline)
    exact_after = add(t._value, mul(t._above, dec(mret.rate - 1, UNIT_FRACTION), X20),
                      dtype=X20)
    t = t.mutate(price=ibis.ifelse(t._above > 0, as_dec(round_pennies(exact_after), MONEY),
                                   t._price_before_marginal))
    text = f"; marginal rate {fraction_text(mret.rate)} above contract baseline"
    t = t.mutate(
        marginal_rate_adjustment=add(t.price, -t._price_before_marginal),
        pricing_rule=ibis.ifelse(t._above > 0, t.pricing_rule + text, t.pricing_rule),
    )
    if keep_exact:
        t = t.mutate(**{"price_exact": ibis.ifelse(
            t._above > 0, exact_after, as_dec(exact_value(t), X20))})
    return t  # the caller selects the columns it needs
