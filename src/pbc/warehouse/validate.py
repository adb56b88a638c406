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
#: the largest amount accepted, exclusive (pounds): every amount below it, with its pence,
#: is exact in a DOUBLE and fits DECIMAL(18,2); a larger one is quarantined, not a crash
MAX_AMOUNT = 10**13
#: the largest whole number accepted (2**53 - 1: exact in a DOUBLE, fits BIGINT)
MAX_WHOLE = 2**53 - 1
#: the range of a ``YYYY-MM`` month, as for dates
MONTH_RANGE = ("1900-01", "2100-12")
_FALSE = ("false", "f", "0", "n", "no")


@dataclass(frozen=True)
class Check:
    column: str
    condition: str
    reason: str
    #: SQL giving the reason when it names values of the row (else ``reason`` is used)
    reason_sql: str | None = None


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


def v(col: str) -> str:
    """The normalised text of a column (trimmed, NULL when blank): see :func:`normalise`."""
    return q(f"v__{col}")


def d(col: str) -> str:
    """The parsed date of a date column (NULL when not a valid ``YYYY-MM-DD``)."""
    return q(f"d__{col}")


def n(col: str) -> str:
    """The parsed number of a numeric column (NULL when not a number)."""
    return q(f"n__{col}")


def normalise(table: Table, present: set[str]) -> str:
    """SQL select-list computing each present column's text, date and number once."""
    parts = ["__row", "__fno", "__file"]
    for col in table.columns:
        if col.name not in present:
            continue
        if col.type == "date":
            # a timestamp at midnight (pandas writes dates so) is its date
            raw = text_of(col.name)
            t = (f"CASE WHEN length({raw}) > 10 THEN regexp_replace({raw}, "
                 f"'^(\\d{{4}}-\\d{{2}}-\\d{{2}})[ T]00:00:00(\\.0+)?$', '\\1') "
                 f"ELSE {raw} END")
            parts.append(f"{t} AS {v(col.name)}")
            t = v(col.name)
            # strictly YYYY-MM-DD: ten characters, and a real calendar date
            parts.append(
                f"CASE WHEN length({t}) = 10 AND substr({t}, 5, 1) = '-' AND "
                f"substr({t}, 8, 1) = '-' THEN TRY_CAST({t} AS DATE) END AS {d(col.name)}"
            )
        else:
            parts.append(f"{text_of(col.name)} AS {v(col.name)}")
        if col.type in ("int", "float", "decimal"):
            parts.append(f"TRY_CAST({text_of(col.name)} AS DOUBLE) AS {n(col.name)}")
    return ", ".join(parts)


def column_checks(col: Column) -> list[Check]:
    """Checks on one column, written against the normalised names (v__, d__, n__)."""
    val = v(col.name)
    checks: list[Check] = []
    if not col.nullable:
        checks.append(Check(col.name, f"{val} IS NULL", "missing value (required)"))
    present = f"{val} IS NOT NULL"
    if col.type in ("int", "float", "decimal"):
        checks.append(Check(
            col.name, f"{present} AND NOT isfinite({n(col.name)})", "not a finite number",
        ))
    if col.type == "date":
        checks.append(Check(
            col.name, f"{present} AND {d(col.name)} IS NULL AND "
            f"regexp_matches({val}, '^\\d{{4}}-\\d{{2}}-\\d{{2}}[ T]\\d')",
            "not a valid date (expected YYYY-MM-DD; this timestamp has a time of day)",
        ))
        checks.append(Check(
            col.name, f"{present} AND {d(col.name)} IS NULL",
            "not a valid date (expected YYYY-MM-DD)",
        ))
        checks.append(Check(
            col.name,
            f"{d(col.name)} NOT BETWEEN DATE '1900-01-01' AND DATE '2100-12-31'",
            "date out of range (1900-01-01 to 2100-12-31)",
        ))
    elif col.type == "int":
        checks.append(Check(
            col.name, f"abs({n(col.name)}) > {MAX_WHOLE}",
            f"out of range (a whole number must be at most {MAX_WHOLE:,})",
        ))
        checks.append(Check(
            col.name, f"{present} AND ({n(col.name)} IS NULL OR "
            f"{n(col.name)} <> floor({n(col.name)}))", "not a whole number",
        ))
    elif col.type == "float":
        checks.append(Check(col.name, f"{present} AND {n(col.name)} IS NULL", "not a number"))
    elif col.type == "decimal":
        num = n(col.name)
        checks.append(Check(
            col.name, f"abs({num}) >= {MAX_AMOUNT}",
            f"out of range (an amount must be below {MAX_AMOUNT:,})",
        ))
        checks.append(Check(
            col.name,
            f"{present} AND ({num} IS NULL OR abs({num} * 100 - round({num} * 100)) > 1e-6)",
            "not an amount in pounds with at most 2 decimals",
        ))
    elif col.type == "bool":
        checks.append(Check(
            col.name, f"{present} AND lower({val}) NOT IN {_in_list(_TRUE + _FALSE)}",
            "not true/false",
        ))
    elif col.type == "year_month":
        checks.append(Check(
            col.name,
            f"{present} AND NOT regexp_full_match({val}, '\\d{{4}}-(0[1-9]|1[0-2])')",
            "not a month (expected YYYY-MM)",
        ))
        lo, hi = MONTH_RANGE
        checks.append(Check(
            col.name, f"{val} NOT BETWEEN {lit(lo)} AND {lit(hi)}",
            f"month out of range ({lo} to {hi})",
        ))
    if col.codes is not None:
        shown = ", ".join(col.codes)
        checks.append(Check(
            col.name, f"{present} AND {val} NOT IN {_in_list(col.codes)}",
            f"not an allowed code ({shown})",
        ))
    if col.pattern is not None:
        checks.append(Check(
            col.name, f"{present} AND NOT regexp_full_match({val}, {lit(col.pattern)})",
            f"does not match the code format {col.pattern}",
        ))
    if col.minimum is not None:
        checks.append(Check(
            col.name, f"{n(col.name)} < {col.minimum}", f"below the minimum {col.minimum:g}",
        ))
    if col.maximum is not None:
        checks.append(Check(
            col.name, f"{n(col.name)} > {col.maximum}", f"above the maximum {col.maximum:g}",
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
            checks.append(Check(
                order.later, f"{d(order.later)} < {d(order.earlier)}",
                f"{order.later} is before {order.earlier}",
            ))
            if order.max_days is not None:
                days = f"({d(order.later)} - {d(order.earlier)})"
                checks.append(Check(
                    order.earlier, f"{days} > {order.max_days}",
                    f"{order.later} more than {order.max_days:,} days after {order.earlier}",
                    reason_sql=(
                        f"'length of stay ' || format('{{:,}}', {days}) || ' days is longer "
                        f"than {order.max_days:,} ({order.earlier} to {order.later})'"),
                ))
    return checks


def typed(col: Column) -> str:
    """SQL converting a validated, normalised value to the column's storage type."""
    val = v(col.name)
    if col.type == "bool":
        return (
            f"CASE WHEN lower({val}) IN {_in_list(_TRUE)} THEN true "
            f"WHEN lower({val}) IN {_in_list(_FALSE)} THEN false END"
        )
    if col.type == "date":
        return d(col.name)
    if col.type == "decimal":
        return f"CAST(round({n(col.name)}, 2) AS DECIMAL(18,2))"
    if col.type == "int":
        return f"CAST({n(col.name)} AS BIGINT)"
    if col.type == "float":
        return n(col.name)
    return f"CAST({val} AS {STORAGE_TYPE[col.type]})"


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
