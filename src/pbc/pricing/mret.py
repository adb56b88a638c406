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
from ibis import _

from pbc.pricing.money import MONEY2, UNIT_FRACTION, X14, X14N, XM, dec, fraction_text
from pbc.pricing.settings import TariffSettings


def baselines_table(settings: TariffSettings) -> ir.Table:
    """The contract baselines of the settings as a small table (pounds, DECIMAL(20,2))."""
    rows = settings.emergency_marginal_rate.baseline
    data = pa.table({
        "_b_commissioner": pa.array([b.commissioner_code for b in rows], pa.string()),
        "_b_provider": pa.array([b.provider_code for b in rows], pa.string()),
        "_b_baseline": pa.array([b.baseline for b in rows], pa.decimal128(20, 2)),
    })
    return ibis.memtable(data)


def apply_marginal_rate(spells: ir.Table, settings: TariffSettings) -> ir.Table:
    """Add ``x_marginal`` (exact, <= 0) and the rule text to priced APC spells.

    ``spells`` needs ``commissioner_code``, ``provider_code``, ``financial_year``,
    ``activity_date`` (discharge date), ``activity_id``, ``mret_eligible`` and ``_value``
    (the exact value after MFF, NULL when unpriced).
    """
    mret = settings.emergency_marginal_rate
    zero_or_null = ibis.ifelse(_._value.notnull(), dec(0, XM), ibis.null(XM)).cast(XM)
    if not mret.baseline:
        return spells.mutate(x_marginal=zero_or_null)
    bl = baselines_table(settings)
    t = spells.left_join(
        bl, (spells.commissioner_code == bl._b_commissioner)
        & (spells.provider_code == bl._b_provider))
    t = t.mutate(
        _mret=(_.mret_eligible & _._value.notnull() & _._b_baseline.notnull()).fill_null(False))
    w = ibis.window(
        group_by=[t.commissioner_code, t.provider_code, t.financial_year, t._mret],
        order_by=[t.activity_date, t.activity_id],
        rows=(None, 0),
    )
    counted = ibis.ifelse(t._mret, t._value, dec(0, X14)).cast(X14)
    t = t.mutate(_running=counted.sum().over(w).cast(X14N))
    over = (t._running - t._b_baseline.cast(MONEY2)).cast(X14N)
    above = ibis.greatest(dec(0, X14N), ibis.least(t._value.cast(X14N), over)).cast(X14N)
    t = t.mutate(_above=ibis.ifelse(t._mret, above, dec(0, X14N)).cast(X14N))
    t = t.mutate(x_marginal=ibis.ifelse(
        _._value.notnull(), (_._above * dec(mret.rate - 1, UNIT_FRACTION)).cast(XM),
        ibis.null(XM)).cast(XM))
    text = f"; marginal rate {fraction_text(mret.rate)} above contract baseline"
    t = t.mutate(pricing_rule=ibis.ifelse(_._above > 0, _.pricing_rule + text, _.pricing_rule))
    return t.drop("_b_commissioner", "_b_provider", "_b_baseline", "_mret", "_running", "_above")
