"""``priced_activity``: APC, outpatient and A&E activity priced at the tariff, as one table.

:func:`price_activity` builds one engine-neutral Ibis expression from the input tables (by
contract name) and the tariff settings. It runs unchanged on DuckDB and on Spark.

Pipeline (reference.md §1.3-§1.6):

1. each activity type is priced exactly (no rounding) into the *exact stage* layout:
   ``x_base``, ``x_long``, ``x_short``, ``x_top_up``, ``x_mff`` (:mod:`~pbc.pricing.apc`,
   :mod:`~pbc.pricing.outpatients`, :mod:`~pbc.pricing.ae`);
2. the contract commissioner is resolved (:func:`pbc.attribution.resolve_commissioner`);
3. the marginal rate is applied to emergency spells per contract (:mod:`~pbc.pricing.mret`);
4. the price is rounded to pennies once (:mod:`~pbc.pricing.money`) and the adjustments are
   shown by telescoping rounding, so the shown columns add up to the price exactly.

Unpriced rows have NULL money columns and an ``unpriced_reason``; they are kept.
"""

from __future__ import annotations

from collections.abc import Mapping

import ibis
import ibis.expr.types as ir

from pbc.attribution.organisations import resolve_commissioner
from pbc.pricing.ae import price_ae
from pbc.pricing.apc import price_apc
from pbc.pricing.money import MONEY, X14, X20, XM, round_pennies
from pbc.pricing.mret import apply_marginal_rate
from pbc.pricing.outpatients import price_outpatients
from pbc.pricing.schema import EXACT_PRICE, PRICED_SCHEMA
from pbc.pricing.settings import TariffSettings


class PricingError(ValueError):
    """Input tables that cannot be priced (e.g. activity without its tariff table)."""


#: activity type -> (source table, tariff tables it needs)
SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "apc": ("apc_spells", ("tariff_apc",)),
    "op": ("op_attendances", ("tariff_op",)),
    "ae": ("ae_attendances", ("tariff_ae",)),
}

__all__ = ["EXACT_PRICE", "PRICED_SCHEMA", "SOURCES", "PricingError", "price_activity"]

_STAGE = (
    "activity_type", "activity_id", "patient_id", "practice_code", "commissioner_code",
    "provider_code", "activity_date", "financial_year", "month", "service_line", "hrg_code",
    "treatment_function_code", "los_days", "x_base", "x_long", "x_short", "x_top_up", "x_mff",
    "mret_eligible", "pricing_rule", "unpriced_reason",
)

_STRING_KEYS = ("patient_id", "practice_code", "provider_code")


def _stage(t: ir.Table, has_commissioner: bool) -> ir.Table:
    cols: dict[str, ir.Value] = {}
    for name in _STAGE:
        if name == "commissioner_code":
            cols[name] = (t.commissioner_code.cast("string") if has_commissioner
                          else ibis.null("string"))
        elif name in _STRING_KEYS:
            cols[name] = t[name].cast("string")
        else:
            cols[name] = t[name]
    return t.select(**cols)


def _finalise(t: ir.Table, keep_exact: bool) -> ir.Table:
    """Round once and show the adjustments by telescoping (see :mod:`pbc.pricing.money`)."""
    c0 = t.x_base.cast(X14)
    c1 = (c0 + t.x_long).cast(X14)
    c2 = (c1 + t.x_short).cast(X14)
    c3 = (c2 + t.x_top_up).cast(X14)
    c4 = (c3 + t.x_mff).cast(X14)
    c5 = (c4 + t.x_marginal).cast(X20)
    r = [round_pennies(c) for c in (c0, c1, c2, c3, c4, c5)]
    shown = {
        "base_price": r[0],
        "long_stay_adjustment": (r[1] - r[0]).cast(MONEY),
        "short_stay_adjustment": (r[2] - r[1]).cast(MONEY),
        "top_up_adjustment": (r[3] - r[2]).cast(MONEY),
        "mff_adjustment": (r[4] - r[3]).cast(MONEY),
        "marginal_rate_adjustment": (r[5] - r[4]).cast(MONEY),
        "price": r[5],
    }
    cols: dict[str, ir.Value] = {}
    for name, dtype in PRICED_SCHEMA.items():
        cols[name] = shown[name] if name in shown else t[name].cast(dtype)
    if keep_exact:
        cols[EXACT_PRICE] = c5
    return t.select(**cols)


def _require(tables: Mapping[str, ir.Table], names: tuple[str, ...], why: str) -> None:
    missing = [n for n in names if n not in tables]
    if missing:
        raise PricingError(f"cannot price {why}: no {', '.join(missing)} table given")


def price_activity(tables: Mapping[str, ir.Table], settings: TariffSettings | None = None,
                   *, keep_exact: bool = False) -> ir.Table:
    """Price every APC spell, outpatient and A&E attendance in ``tables`` (reference.md §1).

    ``tables`` maps contract table names to Ibis tables: any of ``apc_spells``,
    ``op_attendances``, ``ae_attendances`` (at least one), ``providers`` (required), the
    tariff table each activity needs (``tariff_apc``, ``tariff_op``, ``tariff_ae``), and
    ``practices``/``commissioners`` to resolve the contract commissioner for the marginal
    rate. Returns one expression with the columns of :data:`PRICED_SCHEMA` (plus
    ``price_exact``, DECIMAL(38,20), when ``keep_exact``), one row per input row.
    """
    settings = settings or TariffSettings()
    present = [k for k, (src, _) in SOURCES.items() if src in tables]
    if not present:
        raise PricingError("nothing to price: give apc_spells, op_attendances or ae_attendances")
    _require(tables, ("providers",), "activity (the MFF comes from providers)")
    providers = tables["providers"]
    parts: list[ir.Table] = []
    for kind in present:
        src, tariffs = SOURCES[kind]
        _require(tables, tariffs, src)
        activity = tables[src]
        has_commissioner = "commissioner_code" in activity.columns
        if kind == "apc":
            exact = price_apc(activity, tables["tariff_apc"], providers, settings)
        elif kind == "op":
            exact = price_outpatients(activity, tables["tariff_op"], tables.get("tariff_apc"),
                                      providers, settings)
        else:
            exact = price_ae(activity, tables["tariff_ae"], providers, settings)
        staged = resolve_commissioner(_stage(exact, has_commissioner), tables).drop("attributed")
        if kind == "apc":
            staged = staged.mutate(
                _value=(staged.x_base + staged.x_long + staged.x_short + staged.x_top_up
                        + staged.x_mff).cast(X14))
            staged = apply_marginal_rate(staged, settings).drop("_value")
        else:
            staged = staged.mutate(x_marginal=ibis.ifelse(
                staged.x_base.notnull(), ibis.literal(0, type=XM), ibis.null(XM)).cast(XM))
        parts.append(_finalise(staged, keep_exact))
    out = parts[0]
    for part in parts[1:]:
        out = out.union(part)
    return out
