"""``priced_activity``: APC, outpatient and A&E activity priced at the tariff, as one table.

:func:`price_activity` builds one engine-neutral Ibis expression from the input tables (by
contract name) and the tariff settings. It runs unchanged on DuckDB and on Spark.

Pipeline (the Payment by Results rules as HFMA describes them: "Introduction to payment by
results", May 2011, and 3 Mar 2010; the project's own account is ``docs/glossary.md``):

1. each activity type is priced exactly up to the MFF and shown in the *stage* layout
   (:mod:`~pbc.pricing.apc`, :mod:`~pbc.pricing.outpatients`, :mod:`~pbc.pricing.ae`):
   ``base_price`` and the long stay, short stay, top-up and MFF adjustments in pennies by
   telescoping rounding (:mod:`~pbc.pricing.money`), ``_price_before_marginal`` (the
   rounded price so far), and the exact value before the MFF with the MFF
   (``_pre_mff``, ``_mff_factor``);
2. the contract commissioner is resolved (:func:`pbc.attribution.resolve_commissioner`);
3. the marginal rate is applied to emergency spells per contract and financial year
   (:mod:`~pbc.pricing.mret`), which adds the marginal rate adjustment and the price;
   other activity has none. ``price - marginal_rate_adjustment`` (the value before the
   marginal rate, :func:`pbc.pricing.schema.tariff_value`) does not depend on the order of
   discharges; ``price`` does.

The shown columns add up to the price exactly. Unpriced rows have NULL money columns and
an ``unpriced_reason``; they are kept.
"""

from __future__ import annotations

from collections.abc import Mapping

import ibis
import ibis.expr.types as ir

from pbc.attribution.organisations import resolve_commissioner
from pbc.pricing.ae import price_ae
from pbc.pricing.apc import price_apc
from pbc.pricing.money import MONEY, X20, as_dec, dec
from pbc.pricing.mret import (
    RUNNING_VALUE,
    apply_marginal_rate,
    contract_month_totals,
    exact_value,
)
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

__all__ = ["EXACT_PRICE", "PRICED_SCHEMA", "SOURCES", "PricingError", "marginal_rate_totals",
           "price_activity"]

#: the shown money columns every activity type gives (the marginal rate and price follow)
_SHOWN = ("base_price", "long_stay_adjustment", "short_stay_adjustment", "top_up_adjustment",
          "mff_adjustment")

_STAGE = (
    "activity_type", "activity_id", "patient_id", "practice_code", "commissioner_code",
    "provider_code", "activity_date", "financial_year", "month", "service_line", "hrg_code",
    "treatment_function_code", "los_days", *_SHOWN, "_price_before_marginal", "_pre_mff",
    "_mff_factor", "mret_eligible", "pricing_rule", "unpriced_reason",
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
        elif name in _SHOWN or name == "_price_before_marginal":
            cols[name] = as_dec(t[name], MONEY)  # the warehouse type, whatever the engine's
        else:
            cols[name] = t[name]
    return t.select(**cols)


def _no_marginal_rate(t: ir.Table, keep_exact: bool) -> dict[str, ir.Value]:
    """Outpatients and A&E: no marginal rate (it applies to emergency admissions only,
    HFMA 3 Mar 2010)."""
    cols: dict[str, ir.Value] = {
        "marginal_rate_adjustment": ibis.ifelse(
            t._price_before_marginal.notnull(), dec(0, MONEY), ibis.null(MONEY)).cast(MONEY),
        "price": t._price_before_marginal,
    }
    if keep_exact:
        cols[EXACT_PRICE] = exact_value(t)
    return cols


def _finalise(t: ir.Table, keep_exact: bool, extra: dict[str, ir.Value],
              running_value: bool = False) -> ir.Table:
    cols: dict[str, ir.Value] = {}
    for name, dtype in PRICED_SCHEMA.items():
        cols[name] = (extra[name] if name in extra else t[name]).cast(dtype)
    if running_value:
        cols[RUNNING_VALUE] = (t[RUNNING_VALUE] if RUNNING_VALUE in t.columns
                               else ibis.null(MONEY)).cast(MONEY)
    if keep_exact:
        cols[EXACT_PRICE] = as_dec(extra[EXACT_PRICE] if EXACT_PRICE in extra
                                   else t[EXACT_PRICE], X20)
    return t.select(**cols)


def _require(tables: Mapping[str, ir.Table], names: tuple[str, ...], why: str) -> None:
    missing = [n for n in names if n not in tables]
    if missing:
        raise PricingError(f"cannot price {why}: no {', '.join(missing)} table given")


def _apc_staged(tables: Mapping[str, ir.Table], settings: TariffSettings) -> ir.Table:
    """APC spells priced up to the MFF, staged, with the contract commissioner resolved:
    what the marginal rate reads."""
    _require(tables, ("providers", "tariff_apc"), "apc_spells")
    activity = tables["apc_spells"]
    exact = price_apc(activity, tables["tariff_apc"], tables["providers"], settings)
    staged = resolve_commissioner(_stage(exact, "commissioner_code" in activity.columns),
                                  tables)
    # (a new relation, so the marginal rate can join the contract baselines to it)
    return staged.drop("attributed")


def marginal_rate_totals(tables: Mapping[str, ir.Table],
                         settings: TariffSettings | None = None) -> ir.Table:
    """Per contract, financial year and month of ``tables["apc_spells"]``: the emergency
    spells the marginal rate applies to and the sum of their values
    (:func:`pbc.pricing.mret.contract_month_totals`): the running totals a later month's
    pricing starts from (``marginal_rate_opening`` of :func:`price_activity`)."""
    settings = settings or TariffSettings()
    return contract_month_totals(_apc_staged(tables, settings), settings)


def price_activity(tables: Mapping[str, ir.Table], settings: TariffSettings | None = None,
                   *, keep_exact: bool = False,
                   marginal_rate_opening: ir.Table | None = None,
                   marginal_rate_value: bool = False) -> ir.Table:
    """Price every APC spell, outpatient and A&E attendance in ``tables`` at the tariff.

    ``tables`` maps contract table names to Ibis tables: any of ``apc_spells``,
    ``op_attendances``, ``ae_attendances`` (at least one), ``providers`` (required), the
    tariff table each activity needs (``tariff_apc``, ``tariff_op``, ``tariff_ae``), and
    ``practices``/``commissioners`` to resolve the contract commissioner for the marginal
    rate. Returns one expression with the columns of :data:`PRICED_SCHEMA` (plus
    ``price_exact``, DECIMAL(38,20), when ``keep_exact``), one row per input row.

    ``marginal_rate_opening``: the contracts' running totals before the first spell of
    ``apc_spells`` (``opening`` of :func:`pbc.pricing.mret.apply_marginal_rate`), for
    pricing a year's later months without its earlier ones. ``marginal_rate_value``: add
    the column :data:`pbc.pricing.mret.RUNNING_VALUE` (what a spell adds to its contract's
    running total; NULL for every other row), from which the running totals are kept.
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
            staged = apply_marginal_rate(_apc_staged(tables, settings), settings,
                                         keep_exact=keep_exact, opening=marginal_rate_opening)
            parts.append(_finalise(staged, keep_exact, {}, marginal_rate_value))
            continue
        if kind == "op":
            exact = price_outpatients(activity, tables["tariff_op"], tables.get("tariff_apc"),
                                      providers, settings)
        else:
            exact = price_ae(activity, tables["tariff_ae"], providers, settings)
        staged = resolve_commissioner(_stage(exact, has_commissioner), tables)
        parts.append(_finalise(staged, keep_exact, _no_marginal_rate(staged, keep_exact),
                               marginal_rate_value))
    out = parts[0]
    for part in parts[1:]:
        out = out.union(part)
    return out
