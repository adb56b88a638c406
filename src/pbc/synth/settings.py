"""The synthetic economy's tariff settings (``tariff_settings.toml``), with a marginal rate
baseline per contract for the last financial year.

Each baseline is 95% of its contract's emergency value in that year, so that some
contracts are over it, as in life. The value is measured as pricing measures it when it
compares a contract with its baseline: every emergency spell priced by :mod:`pbc.pricing`
with these settings (short stay emergency, long stay, top-up and MFF included) and the
values before the marginal rate added up (:mod:`pbc.pricing.mret`). Spells the loader
would quarantine (an impossible date, an unknown provider, an age out of range, a second
copy of a spell id) are left out first, as they never reach pricing.
"""

from __future__ import annotations

import tomllib
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import duckdb

from pbc.calendar import format_financial_year
from pbc.contracts.tables import EMERGENCY_ADMISSION_METHODS
from pbc.synth.sql import sql_str

#: baseline as a share of the contract's emergency value in the year
BASELINE_SHARE = Decimal("0.95")

#: the settings other than the baselines (the national rules pbc defaults to, and the
#: A&E department fractions of this economy)
POLICY = """
[short_stay_emergency]
min_age = 19
max_length_of_stay = 1

[top_up]
children = 0.60
orthopaedic = 0.24
spinal = 0.32
neurosciences = 0.28

[outpatients]
telephone_first_fraction = 1.0
telephone_follow_up_fraction = 1.0

[ae]
department_type_fraction = { "1" = 1.0, "2" = 1.0, "3" = 0.5, "4" = 0.5 }
"""


def settings_toml(con: duckdb.DuckDBPyConnection, spells: str, start_year: int) -> str:
    """The settings file for tariff year ``start_year`` (e.g. 2025 for 2025-26).

    ``con`` holds the ``providers``, ``practices``, ``commissioners`` and ``tariff_apc``
    tables of the economy; ``spells`` is the Parquet path (or glob) of its APC spells.
    """
    year = format_financial_year(start_year, "-")
    head = f'financial_year = "{year}"\n\n[emergency_marginal_rate]\nrate = 0.30\n'
    lines = [head]
    for (comm, prov), value in emergency_values(
            con, spells, start_year, tomllib.loads(head + POLICY)).items():
        base = (BASELINE_SHARE * value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        lines.append(f'[[emergency_marginal_rate.baseline]]\ncommissioner_code = "{comm}"\n'
                     f'provider_code = "{prov}"\nfinancial_year = "{year}"\n'
                     f"baseline = {base}\n")
    return "\n".join(lines) + POLICY


def emergency_values(con: duckdb.DuckDBPyConnection, spells: str, start_year: int,
                     settings: dict[str, Any]) -> dict[tuple[str, str], Decimal]:
    """(commissioner, provider) -> the sum of the values before the marginal rate of the
    contract's emergency spells discharged in the year, as :mod:`pbc.pricing` prices them."""
    import ibis

    from pbc.pricing import price_activity, settings_from_dict

    backend = ibis.duckdb.from_connection(con)
    emergency = ", ".join(sql_str(m) for m in EMERGENCY_ADMISSION_METHODS)
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW synth_emergency_spells AS
        SELECT * REPLACE (CAST(admission_date AS DATE) AS admission_date,
                          CAST(discharge_date AS DATE) AS discharge_date,
                          CAST(age_on_admission AS BIGINT) AS age_on_admission)
        FROM read_parquet('{spells}')
        WHERE admission_method IN ({emergency})
          AND TRY_CAST(admission_date AS DATE) IS NOT NULL
          AND TRY_CAST(discharge_date AS DATE)
              BETWEEN TRY_CAST(admission_date AS DATE) AND DATE '{start_year + 1}-03-31'
          AND TRY_CAST(discharge_date AS DATE) >= DATE '{start_year}-04-01'
          -- the files may be text (--format csv): cast as the loader does
          AND TRY_CAST(age_on_admission AS BIGINT) BETWEEN 0 AND 120
          AND provider_code IN (SELECT provider_code FROM providers)
        QUALIFY row_number() OVER (PARTITION BY spell_id) = 1""")
    tables = {name: backend.table(name) for name in (
        "providers", "tariff_apc", "practices", "commissioners")}
    tables["apc_spells"] = backend.table("synth_emergency_spells")
    priced = price_activity(tables, settings_from_dict(settings, "synthetic tariff settings"))
    # no baselines yet, so price is the value before the marginal rate
    totals = priced.filter(priced.price.notnull() & priced.commissioner_code.notnull()) \
        .group_by(["commissioner_code", "provider_code"]) \
        .aggregate(value=priced.price.sum())
    # a view (not compiled SQL) so that Ibis registers any in-memory tables it uses
    backend.create_view("synth_emergency_values", totals, overwrite=True)
    try:
        rows = con.execute("SELECT commissioner_code, provider_code, value "
                           "FROM synth_emergency_values ORDER BY 1, 2").fetchall()
    finally:
        con.execute("DROP VIEW IF EXISTS synth_emergency_values")
        con.execute("DROP VIEW IF EXISTS synth_emergency_spells")
    return {(c, p): Decimal(v) for c, p, v in rows}
