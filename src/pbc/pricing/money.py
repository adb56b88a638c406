"""Exact money arithmetic in Ibis, identical on DuckDB and Spark, and the one rounding rule.

Arithmetic
    Every price is computed in exact decimal arithmetic: tariff prices are DECIMAL(18,2);
    rates, fractions and the MFF payment index are DECIMAL with at most 6 places. Each
    product is cast at once to a declared type wide enough to hold it exactly, so neither
    engine ever drops digits (Spark would otherwise cut the scale of a product whose declared
    precision passes 38). The stage types are :data:`MONEY2` (2 places), :data:`X8`
    (after one fraction), :data:`X14` (after the MFF) and :data:`X20` (after the marginal
    rate). Nothing is ever held as a float.

    Two engines' typing rules constrain every product ``a * b``: Ibis needs one operand's
    precision *and* scale both no larger than the other's, and Spark keeps the full scale
    only while ``p(a) + p(b) + 1 <= 38``. Hence the narrowed types (``MONEY_N``, ``X8N``,
    ``X14N``) used just before a multiplication; each leaves 12-14 integer digits (pounds up
    to 10**12 per row), far above any real amount.

Rounding rule (written down once)
    A row's price is rounded to pennies **once**, from its exact unrounded value, **half up**
    (ties away from zero: £0.105 -> £0.11, -£0.105 -> -£0.11), and stored as DECIMAL(18,2).
    Both engines implement ``ROUND(decimal, 2)`` this way (DuckDB: half away from zero; Spark:
    ``BigDecimal.ROUND_HALF_UP``).

Display of the adjustments
    The adjustment columns are shown in pennies by *telescoping*: with exact running totals
    ``c0 = base``, ``c1 = c0 + long stay``, ... ``c5 = price``, the base shown is ``r(c0)``
    and adjustment *k* is shown as ``r(ck) - r(c(k-1))``. Each shown adjustment is within a
    penny of its exact value and the shown columns always add up to the price exactly.
"""

from __future__ import annotations

from decimal import Decimal

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

#: money as stored in the warehouse (pounds, 2 places)
MONEY = dt.Decimal(18, 2)
#: sums of a few money amounts (still 2 places)
MONEY2 = dt.Decimal(20, 2)
#: money narrowed (14 integer digits) before it is multiplied by a :data:`FRACTION`
MONEY_N = dt.Decimal(16, 2)
#: a rate or fraction from the settings (at most 6 places) that multiplies :data:`MONEY_N`
FRACTION = dt.Decimal(16, 6)
#: the MFF payment index or (index - 1) (6 places, as published), multiplies :data:`X8N`
MFF = dt.Decimal(10, 6)
#: a fraction between -1 and 1 (the marginal rate's complement), multiplies :data:`X14N`
UNIT_FRACTION = dt.Decimal(10, 6)
#: money times one fraction (2 + 6 places)
X8 = dt.Decimal(28, 8)
#: X8 narrowed (12 integer digits) before it is multiplied by the MFF
X8N = dt.Decimal(20, 8)
#: money times one fraction times the MFF (8 + 6 places); running totals of a row
X14 = dt.Decimal(30, 14)
#: X14 narrowed (12 integer digits) before it is multiplied or compared
X14N = dt.Decimal(26, 14)
#: X14N times the marginal rate (14 + 6 places)
XM = dt.Decimal(32, 20)
#: the exact price (14 + 6 places)
X20 = dt.Decimal(38, 20)

ZERO = Decimal(0)


def dec(value: Decimal | int | str, dtype: dt.Decimal = FRACTION) -> ir.DecimalScalar:
    """A decimal literal of an explicit type (never a float)."""
    return ibis.literal(Decimal(value), type=dtype)


def as_dec(expr: ir.Value, dtype: dt.Decimal) -> ir.DecimalValue:
    """Cast to an explicit decimal type (exact when the type is wide enough)."""
    return expr.cast(dtype)


def round_pennies(exact: ir.Value) -> ir.DecimalValue:
    """The rounding rule: half up (ties away from zero) to 2 places, as DECIMAL(18,2)."""
    return exact.round(2).cast(MONEY)


def decimal_text(expr: ir.Value) -> ir.StringValue:
    """A decimal shown without trailing zeros (``1.046100`` -> ``1.0461``), same on all engines."""
    text = expr.cast("string")  # a decimal of scale > 0 always has a point
    return text.re_replace("0+$", "").re_replace(r"\.$", "")


def fraction_text(value: Decimal) -> str:
    """A fraction as a percentage for pricing-rule text (``Decimal('0.3')`` -> ``30%``)."""
    pct = (value * 100).normalize()
    return f"{pct:f}%"
