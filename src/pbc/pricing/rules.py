"""Rule fragments shared by the APC, outpatient and A&E pricing (docs/sources.md §1).

Each function takes and returns Ibis expressions; none touches a file or a database.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
from ibis import _

from pbc.contracts.tables import (
    ELECTIVE_ADMISSION_METHODS,
    EMERGENCY_ADMISSION_METHODS,
    MATERNITY_ADMISSION_METHODS,
    OTHER_ADMISSION_METHODS,
)
from pbc.pricing.money import MFF, decimal_text

__all__ = [
    "ELECTIVE_ADMISSION_METHODS",
    "EMERGENCY_ADMISSION_METHODS",
    "MATERNITY_ADMISSION_METHODS",
    "NON_ELECTIVE_ADMISSION_METHODS",
    "OTHER_ADMISSION_METHODS",
    "code_text",
    "concat",
    "financial_month",
    "financial_year",
    "reason_no_mff",
    "reason_unknown_provider",
    "with_mff",
    "with_period",
]

#: non-elective for pricing: emergency, maternity and other (docs/sources.md §1.3, §5.1)
NON_ELECTIVE_ADMISSION_METHODS = (
    EMERGENCY_ADMISSION_METHODS + MATERNITY_ADMISSION_METHODS + OTHER_ADMISSION_METHODS
)


def code_text(code: ir.Value) -> ir.StringValue:
    """A code for rule text and reasons: the code, or ``(blank)``."""
    s = code.cast("string")
    return ibis.ifelse(s.isnull() | (s.strip() == ""), "(blank)", s)


def financial_year(day: ir.DateValue) -> ir.StringValue:
    """``2025-26`` (the partition form) for a date; NHS year starts 1 April (pbc.calendar)."""
    start = day.year() - ibis.ifelse(day.month() < 4, 1, 0)
    return (start.cast("string") + "-"
            + ((start + 1) % 100).cast("string").lpad(2, "0"))


def financial_month(day: ir.DateValue) -> ir.IntegerValue:
    """Month of the financial year, 1 = April .. 12 = March (pbc.calendar)."""
    return ((day.month() + 8) % 12 + 1).cast("int64")


def with_period(t: ir.Table, date_column: str) -> ir.Table:
    """Add ``activity_date``, and ``financial_year``/``month`` unless already there.

    Warehouse activity tables carry the two partition columns (derived from the same date);
    tables built elsewhere (tests, memtables) get them derived here by the same rule.
    """
    day = t[date_column].cast("date")
    fy = (t.financial_year.cast("string") if "financial_year" in t.columns
          else financial_year(day))
    month = t.month.cast("int64") if "month" in t.columns else financial_month(day)
    return t.mutate(activity_date=day, financial_year=fy, month=month)


def with_mff(t: ir.Table, providers: ir.Table) -> ir.Table:
    """Join the provider's MFF payment index (docs/sources.md §1.5) as exact ``mff``.

    Adds ``mff`` (DECIMAL(10,6): the published index has 6 places), ``mff_rule`` (the
    pricing-rule text ``; MFF 1.0461``, made once per provider rather than per row) and
    ``provider_known``. An unknown provider gets ``mff`` NULL and is left unpriced by the
    caller.
    """
    prov = providers.select(
        _mff_provider=_.provider_code.cast("string"),
        _mff=_.mff_payment_index.cast(MFF),
    )
    prov = prov.mutate(_mff_rule="; MFF " + decimal_text(prov._mff))
    joined = t.left_join(prov, t.provider_code.cast("string") == prov._mff_provider)
    return joined.mutate(provider_known=_._mff_provider.notnull(), mff=_._mff,
                         mff_rule=_._mff_rule).drop("_mff_provider", "_mff", "_mff_rule")


def concat(*parts: ir.Value | str) -> ir.StringValue:
    """The parts joined into one text in one step (rule text for millions of rows).

    Unlike ``a + b`` (NULL if any part is NULL) a NULL part is skipped: use it only with
    parts that are never NULL.
    """
    return ibis.literal("").join(list(parts))


def reason_unknown_provider(t: ir.Table) -> ir.StringValue:
    """Unpriced reason for a provider not in ``providers`` (the MFF is unknown)."""
    return ("provider " + code_text(t.provider_code)
            + " not in providers (no MFF payment index)")


def reason_no_mff(t: ir.Table) -> ir.StringValue:
    """Unpriced reason for a known provider without an MFF payment index."""
    return ("provider " + code_text(t.provider_code)
            + " has no MFF payment index")


def cases_or_default(branches: list[tuple[ir.Value, object]], default: object) -> ir.Value:
    """``ibis.cases`` that accepts no branches (then it is just ``default``)."""
    if not branches:
        return ibis.literal(default)
    return ibis.cases(*branches, else_=default)
