"""Exact money arithmetic in Ibis, identical on DuckDB and Spark, and the one rounding rule.

Arithmetic
    Every price is computed in exact decimal arithmetic: tariff prices are DECIMAL(18,2);
    rates, fractions and the MFF payment index are DECIMAL with at most 6 places. Nothing is
    ever held as a float.

    Every value a row carries fits a 64-bit decimal (precision <= 18), because both engines
    are fast there; DuckDB's 128-bit decimals add and multiply quickly but divide (which
    ``ROUND`` and a cast to fewer places do) about 30x more slowly. A product is cast at once
    to a declared type (:func:`mul`), so both engines keep every digit (Spark keeps the full
    scale of ``a * b`` only while ``p(a) + p(b) + 1 <= 38``; with both operands at most 18
    digits that always holds). Only the emergency marginal rate's amount paid above a
    contract's baseline (``rate x`` a contract year's running total, 8 places,
    :mod:`pbc.pricing.mret`) is a 128-bit decimal, and only for the spells it applies to.

    Limit: every amount of a row (a price, or any stage of it) must be below £10,000,000,000
    (ten billion, the 10 integer digits of :data:`X8`); beyond that both engines raise an
    overflow error rather than drop a digit.

Rounding rule (written down once)
    A row's price before the emergency marginal rate is rounded to pennies **once**, from
    its exact unrounded value, **half up**
    (ties away from zero: £0.105 -> £0.11, -£0.105 -> -£0.11), and stored as DECIMAL(18,2).
    Both engines implement ``ROUND(decimal, 2)`` this way (DuckDB: half away from zero; Spark:
    ``BigDecimal.ROUND_HALF_UP``). The exact value of ``a * m`` (a money amount with up to 8
    places times a 6-place index: 14 places) is rounded by :func:`with_round_product`
    without forming the 14-place product at full width (see there): the same penny.
    The marginal rate then works on those rounded values per contract and year: what is
    paid above the baseline so far is rounded half up at every spell and each spell takes
    its step (:mod:`pbc.pricing.mret`), so a contract's prices add up exactly to its
    rounded total.

Display of the adjustments
    The adjustment columns are shown in pennies by *telescoping*: with exact running totals
    ``c0 = base``, ``c1 = c0 + long stay``, ... ``c5 = price``, the base shown is ``r(c0)``
    and adjustment *k* is shown as ``r(ck) - r(c(k-1))``. Each shown adjustment is within a
    penny of its exact value and the shown columns always add up to the price exactly. Each
    ``r(ck)`` is computed once; where an adjustment cannot apply (an outpatient's long stay)
    ``ck = c(k-1)`` and the shown adjustment is zero without being computed.
"""

from __future__ import annotations

from decimal import Decimal

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.types as ir

#: money as stored in the warehouse (pounds, 2 places)
MONEY = dt.Decimal(18, 2)
#: a rate or fraction from the settings (at most 6 places, below 100)
FRACTION = dt.Decimal(8, 6)
#: the MFF payment index (6 places, as published)
MFF = dt.Decimal(10, 6)
#: money times one fraction (2 + 6 places): an exact stage value of a row
X8 = dt.Decimal(18, 8)
#: a sub-penny remainder times a fraction (8 + 6 places; always below 10,000)
X14S = dt.Decimal(18, 14)
#: a pre-MFF value widened so that its product with the MFF is exact (128-bit)
X8W = dt.Decimal(24, 8)
#: money times one fraction times the MFF (8 + 6 places), 128-bit; running totals
X14 = dt.Decimal(30, 14)
#: an exact price (``price_exact``), 128-bit: the value after the MFF (14 places), or a
#: spell's exact share after the marginal rate (8 places)
X20 = dt.Decimal(38, 20)

_SIGN = dt.Decimal(1, 0)

ZERO = Decimal(0)


def dec(value: Decimal | int | str, dtype: dt.Decimal = FRACTION) -> ir.DecimalScalar:
    """A decimal literal of an explicit type (never a float)."""
    return ibis.literal(Decimal(value), type=dtype)


def as_dec(expr: ir.Value, dtype: dt.DataType) -> ir.DecimalValue:
    """Cast to an explicit decimal type, *always* written out in the SQL.

    Ibis leaves out a cast to the type it believes an expression already has, but its
    belief about decimal arithmetic (``a + b`` keeps ``a``'s type) is not the engine's
    (DuckDB and Spark widen it); this cast puts the engine back on the declared type.
    """
    return ops.Cast(expr, to=dtype).to_expr()


def mul(a: ir.Value, b: ir.Value, dtype: dt.Decimal) -> ir.DecimalValue:
    """``a * b``, exact, as ``dtype``.

    Ibis types a decimal product only when one operand's precision and scale are both at
    least the other's; the operand with more places is widened to the larger precision
    (a no-op for the value; with operands of at most 18 digits the engines' product stays
    exact: DuckDB keeps it in 64 bits with an overflow check, Spark in ``p(a)+p(b)+1``).
    """
    ta, tb = a.type(), b.type()
    if isinstance(ta, dt.Decimal) and isinstance(tb, dt.Decimal):
        pa, sa = ta.precision or 18, ta.scale or 0
        pb, sb = tb.precision or 18, tb.scale or 0
        if not ((pa >= pb and sa >= sb) or (pb >= pa and sb >= sa)):
            if sa > sb:
                a = a.cast(dt.Decimal(max(pa, pb), sa))
            else:
                b = b.cast(dt.Decimal(max(pa, pb), sb))
    return as_dec(a * b, dtype)


def add(*terms: ir.Value, dtype: dt.Decimal = MONEY) -> ir.DecimalValue:
    """The exact sum of a few amounts, as ``dtype``."""
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return as_dec(total, dtype)


def round_pennies(exact: ir.Value) -> ir.DecimalValue:
    """The rounding rule: half up (ties away from zero) to 2 places, as DECIMAL(18,2).

    ``exact`` should be a 64-bit decimal (precision <= 18); see :func:`with_round_product`.
    """
    return as_dec(exact.round(2), MONEY)


def floor_pennies(value: ir.Value) -> ir.DecimalValue:
    """The whole pennies of an amount ``value >= 0`` (truncation), as DECIMAL(18,2).

    ``ROUND(value - 0.005, 2)`` rounds half up to exactly that, except at 0 (-0.005 rounds
    to -0.01), hence the ``GREATEST``; 64-bit only, and ``value`` appears once.
    """
    shifted = add(value, dec("-0.005", dt.Decimal(3, 3)), dtype=X8)
    return ibis.greatest(round_pennies(shifted), dec(0, MONEY))


def with_round_product(t: ir.Table, a: str, m: str, out: str) -> ir.Table:
    """Add column ``out`` = ``round_pennies(t[a] * t[m])`` exactly, in 64-bit arithmetic.

    ``a`` has at most 8 places (:data:`X8`), ``m`` at most 6 (an index or a fraction), so
    ``a * m`` has 14 places and would need 128 bits. Instead, on absolute values:

    * ``a = A2 + lo`` with ``A2`` whole pennies and ``0 <= lo < 0.01``;
    * ``A2 * m = B2 + hi`` (8 places, 64-bit) with ``B2`` whole pennies, ``0 <= hi < 0.01``;
    * so ``a * m = B2 + g`` with ``g = hi + lo * m`` (14 places but small: 64-bit);
    * ``B2`` is whole pennies and ``g >= 0``, so ``round(B2 + g) = B2 + round(g)``;

    and the sign is put back (rounding half away from zero is symmetric). Each step is its
    own projection so that no intermediate is computed twice; the intermediates stay as
    columns named ``_rp_<out>_*`` (select the columns you need afterwards). NULL in, NULL
    out.
    """
    p = f"_rp_{out}_"
    abs_a = as_dec(t[a].abs(), X8)
    t = t.mutate(**{
        p + "a": abs_a,
        p + "m": as_dec(t[m].abs(), dt.Decimal(18, 6)),
        p + "sign": ibis.ifelse((t[a] < 0) != (t[m] < 0), dec(-1, _SIGN), dec(1, _SIGN)),
        p + "a2": floor_pennies(abs_a),
    })
    t = t.mutate(**{
        p + "lo": as_dec(t[p + "a"] - t[p + "a2"], X8),
        p + "b": mul(t[p + "a2"], t[p + "m"], X8),
    })
    t = t.mutate(**{p + "b2": floor_pennies(t[p + "b"])})
    g = add(as_dec(t[p + "b"] - t[p + "b2"], X14S), mul(t[p + "lo"], t[p + "m"], X14S),
            dtype=X14S)
    return t.mutate(**{out: mul(add(t[p + "b2"], round_pennies(g)), t[p + "sign"], MONEY)})


def decimal_text(expr: ir.Value) -> ir.StringValue:
    """A decimal shown without trailing zeros (``1.046100`` -> ``1.0461``), same on all engines.

    Regular expressions are slow per row: use it on small tables (the providers' MFF),
    not on activity.
    """
    text = expr.cast("string")  # a decimal of scale > 0 always has a point
    return text.re_replace("0+$", "").re_replace(r"\.$", "")


def fraction_text(value: Decimal) -> str:
    """A fraction as a percentage for pricing-rule text (``Decimal('0.3')`` -> ``30%``)."""
    pct = (value * 100).normalize()
    return f"{pct:f}%"
