"""Payment by Results pricing (national tariff rules) as engine-neutral Ibis expressions.

Public API:

* :func:`price_activity` - APC spells, outpatient and A&E attendances priced at the tariff
  (one ``priced_activity`` expression, DuckDB or Spark);
* :func:`marginal_rate_totals` - the contracts' monthly totals the marginal rate runs on
  (kept with each priced month, so that a later month is priced without the earlier ones);
* :class:`TariffSettings`, :func:`load_settings` - the national adjustments (TOML);
* :func:`pbc.pricing.tariff.read_annex_a`, :func:`pbc.pricing.tariff.read_tariff_file` -
  tariff readers (the only I/O in this package, kept in their own module).

Rules live one per module: :mod:`~pbc.pricing.apc`, :mod:`~pbc.pricing.outpatients`,
:mod:`~pbc.pricing.ae`, :mod:`~pbc.pricing.mret`; money and rounding in
:mod:`~pbc.pricing.money`.
"""

from pbc.pricing.activity import (
    EXACT_PRICE,
    PRICED_SCHEMA,
    PricingError,
    marginal_rate_totals,
    price_activity,
)
from pbc.pricing.settings import SettingsError, TariffSettings, load_settings, settings_from_dict

__all__ = [
    "EXACT_PRICE",
    "PRICED_SCHEMA",
    "PricingError",
    "SettingsError",
    "TariffSettings",
    "load_settings",
    "marginal_rate_totals",
    "price_activity",
    "settings_from_dict",
]
