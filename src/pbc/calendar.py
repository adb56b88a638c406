"""NHS financial calendar: financial years run 1 April to 31 March; month 1 is April.

The year from 2025-04-01 to 2026-03-31 is written ``2025-26`` everywhere pbc stores or
shows it (tables, partitions, statements, the decision store). Inputs may say ``2025/26``
(as NHS documents and policy files often do): :func:`normalise_financial_year` turns either
into the one spelling. Compare years with :func:`parse_financial_year`, never as raw text.
"""

from __future__ import annotations

import datetime as dt
import re

_FY = re.compile(r"^(\d{4})[/-](\d{2})$")


def financial_year_start(day: dt.date) -> int:
    """The calendar year in which the financial year containing ``day`` starts."""
    return day.year if day.month >= 4 else day.year - 1


def financial_year(day: dt.date) -> str:
    """``2025-26`` for any day from 2025-04-01 to 2026-03-31."""
    return format_financial_year(financial_year_start(day))


def format_financial_year(start_year: int, sep: str = "-") -> str:
    """``2025`` -> ``2025-26`` (the canonical spelling; ``sep="/"`` only for display in
    documents that ask for it)."""
    return f"{start_year}{sep}{(start_year + 1) % 100:02d}"


def parse_financial_year(text: str) -> int:
    """Start year of ``2025-26`` or ``2025/26``; raises ValueError otherwise."""
    m = _FY.match(str(text).strip())
    if not m or (int(m.group(1)) + 1) % 100 != int(m.group(2)):
        raise ValueError(f"not a financial year (expected e.g. 2025-26): {text!r}")
    return int(m.group(1))


def normalise_financial_year(text: str) -> str:
    """``2025/26`` or ``2025-26`` -> ``2025-26``, the one spelling pbc stores and shows;
    raises ValueError for anything else."""
    return format_financial_year(parse_financial_year(text))


def financial_month(day: dt.date) -> int:
    """Month of the financial year: 1 = April ... 12 = March."""
    return (day.month - 4) % 12 + 1


def year_bounds(start_year: int) -> tuple[dt.date, dt.date]:
    """First and last day of the financial year starting in ``start_year``."""
    return dt.date(start_year, 4, 1), dt.date(start_year + 1, 3, 31)


#: SQL (DuckDB and Spark) expressions for the same rules, for use inside the engines.
def sql_financial_year(date_sql: str) -> str:
    """SQL text giving ``YYYY-YY`` (the partition form) for a DATE expression."""
    start = f"(year({date_sql}) - CASE WHEN month({date_sql}) < 4 THEN 1 ELSE 0 END)"
    return (
        f"(CAST({start} AS VARCHAR) || '-' || "
        f"lpad(CAST(({start} + 1) % 100 AS VARCHAR), 2, '0'))"
    )


def sql_financial_month(date_sql: str) -> str:
    """SQL integer 1..12 (1 = April) for a DATE expression."""
    return f"((month({date_sql}) + 8) % 12 + 1)"
