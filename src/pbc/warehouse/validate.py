"""Turn a data contract into SQL checks that give each bad row one clear reason.

Each check is ``(column, condition, reason)``: ``condition`` is SQL that is true when
the row breaks the rule. The first broken rule names the row's column, value and
reason in quarantine. Values are checked as text, so a file's own types never hide
a fault (a Parquet DOUBLE in a money column is checked for pennies all the same).
"""

from __future__ import annotations

from dataclasses import dataclass

from pbc.contracts import STORAGE_TYPE, Column, Table

_TRUE = ("true", "t", "1", "y", "yes")
_FALSE = ("false", "f", "0", "n", "no")


@dataclass(frozen=True)
class Check:
    column: str
    condition: str
    reason: str


def q(name: str) -> str:
    """Quote an identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    """Quote a string literal."""
    return "'" + text.replace("'", "''") + "'"


def text_of(col: str) -> str:
    """The column as trimmed text, NULL when blank."""
    return f"NULLIF(trim(CAST({q(col)} AS VARCHAR)), '')"


def _in_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(lit(v) for v in values) + ")"


def column_checks(col: Column) -> list[Check]:
    v = text_of(col.name)
    checks: list[Check] = []
    if not col.nullable:
        checks.append(Check(col.name, f"{v} IS NULL", "missing value (required)"))
    present = f"{v} IS NOT NULL"
    if col.type == "date":
        checks.append(Check(
            col.name,
            f"{present} AND (NOT regexp_full_match({v}, '\\d{{4}}-\\d{{2}}-\\d{{2}}') "
            f"OR TRY_CAST({v} AS DATE) IS NULL)",
            "not a valid date (expected YYYY-MM-DD)",
        ))
        checks.append(Check(
            col.name,
            f"{present} AND TRY_CAST({v} AS DATE) NOT BETWEEN DATE '1900-01-01' "
            "AND DATE '2100-12-31'",
            "date out of range (1900-01-01 to 2100-12-31)",
        ))
    elif col.type == "int":
        checks.append(Check(
            col.name, f"{present} AND TRY_CAST({v} AS BIGINT) IS NULL",
            "not a whole number",
        ))
    elif col.type == "float":
        checks.append(Check(
            col.name, f"{present} AND TRY_CAST({v} AS DOUBLE) IS NULL", "not a number",
        ))
    elif col.type == "decimal":
        checks.append(Check(
            col.name,
            f"{present} AND (TRY_CAST({v} AS DOUBLE) IS NULL OR "
            f"abs(TRY_CAST({v} AS DOUBLE) * 100 - round(TRY_CAST({v} AS DOUBLE) * 100)) > 1e-6)",
            "not an amount in pounds with at most 2 decimals",
        ))
    elif col.type == "bool":
        checks.append(Check(
            col.name, f"{present} AND lower({v}) NOT IN {_in_list(_TRUE + _FALSE)}",
            "not true/false",
        ))
    elif col.type == "year_month":
        checks.append(Check(
            col.name, f"{present} AND NOT regexp_full_match({v}, '\\d{{4}}-(0[1-9]|1[0-2])')",
            "not a month (expected YYYY-MM)",
        ))
    if col.codes is not None:
        shown = ", ".join(col.codes)
        checks.append(Check(
            col.name, f"{present} AND {v} NOT IN {_in_list(col.codes)}",
            f"not an allowed code ({shown})",
        ))
    if col.pattern is not None:
        checks.append(Check(
            col.name, f"{present} AND NOT regexp_full_match({v}, {lit(col.pattern)})",
            f"does not match the code format {col.pattern}",
        ))
    num = f"TRY_CAST({v} AS DOUBLE)"
    if col.minimum is not None:
        checks.append(Check(
            col.name, f"{num} < {col.minimum}", f"below the minimum {col.minimum:g}",
        ))
    if col.maximum is not None:
        checks.append(Check(
            col.name, f"{num} > {col.maximum}", f"above the maximum {col.maximum:g}",
        ))
    return checks


def row_checks(table: Table, present: set[str]) -> list[Check]:
    """All single-row checks for ``table``, for the columns present in the file."""
    checks: list[Check] = []
    for col in table.columns:
        if col.name in present:
            checks.extend(column_checks(col))
    for order in table.date_orders:
        if order.earlier in present and order.later in present:
            a = f"TRY_CAST({text_of(order.earlier)} AS DATE)"
            b = f"TRY_CAST({text_of(order.later)} AS DATE)"
            checks.append(Check(
                order.later, f"{b} < {a}", f"{order.later} is before {order.earlier}",
            ))
    return checks


def typed(col: Column) -> str:
    """SQL that converts a validated text value to the column's storage type."""
    v = text_of(col.name)
    if col.type == "bool":
        return (
            f"CASE WHEN lower({v}) IN {_in_list(_TRUE)} THEN true "
            f"WHEN lower({v}) IN {_in_list(_FALSE)} THEN false END"
        )
    if col.type == "decimal":
        return f"CAST(round(CAST({v} AS DOUBLE), 2) AS DECIMAL(18,2))"
    return f"CAST({v} AS {STORAGE_TYPE[col.type]})"


def first_failure(checks: list[Check]) -> str:
    """SQL giving the 1-based index of the first failed check, or NULL if none failed."""
    if not checks:
        return "CAST(NULL AS INTEGER)"
    whens = " ".join(f"WHEN {c.condition} THEN {i}" for i, c in enumerate(checks, 1))
    return f"CASE {whens} END"


def pick(checks: list[Check], index_sql: str, what: str) -> str:
    """SQL mapping a check index to its column name or reason."""
    if not checks:
        return "CAST(NULL AS VARCHAR)"
    whens = " ".join(
        f"WHEN {i} THEN {lit(getattr(c, what))}" for i, c in enumerate(checks, 1)
    )
    return f"CASE {index_sql} {whens} END"


def value_of(checks: list[Check], index_sql: str) -> str:
    """SQL giving the offending value (as text) for a check index."""
    if not checks:
        return "CAST(NULL AS VARCHAR)"
    cols = sorted({c.column for c in checks})
    by_col = {c: f"CAST({q(c)} AS VARCHAR)" for c in cols}
    whens = " ".join(
        f"WHEN {i} THEN {by_col[c.column]}" for i, c in enumerate(checks, 1)
    )
    return f"CASE {index_sql} {whens} END"
