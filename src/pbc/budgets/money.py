"""Money helpers for budgets: integer pence, and the one rounding rule.

Rounding rule (written down once): money is held as integer pence. When an amount
``total`` (pence) is divided between rows in proportion to non-negative weights, each
row first gets ``floor(total * weight / sum(weights))`` pence and the pence left over
are given one each to the rows with the largest fractional remainders (the *largest
remainder* or Hamilton method). Ties go to the row that comes first in the input order,
so the result is deterministic. The parts always sum to ``total`` exactly.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import numpy as np
import numpy.typing as npt
import pandas as pd

PENCE = Decimal("0.01")


def pounds_to_pence(value: Decimal | float | int | str) -> int:
    """Pounds (up to 2 decimals) to integer pence; a float goes via its shortest repr."""
    try:
        d = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise ValueError(f"not an amount of money: {value!r}") from exc
    return int((d * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def pence_to_pounds(pence: int) -> Decimal:
    """Integer pence to Decimal pounds with 2 places."""
    return (Decimal(int(pence)) / 100).quantize(PENCE)


def format_pounds(pence: int) -> str:
    """``123456789`` -> ``'£1,234,567.89'`` (negative amounts keep their sign)."""
    sign = "-" if pence < 0 else ""
    whole, part = divmod(abs(int(pence)), 100)
    return f"{sign}£{whole:,}.{part:02d}"


def series_pounds_to_pence(values: pd.Series) -> npt.NDArray[np.int64]:
    """A column of pounds (floats with up to 2 dp, Decimals or strings) to int64 pence.

    Floats are rounded to the nearest penny (``round(x * 100)``), which is exact for any
    amount of pounds written with 2 decimals below 2**53 pence.
    """
    if values.dtype == object:
        return np.array([pounds_to_pence(v) for v in values], dtype=np.int64)
    arr = values.to_numpy(dtype=np.float64)
    if np.isnan(arr).any():
        raise ValueError("money column has missing values")
    return np.rint(arr * 100.0).astype(np.int64)


def largest_remainder(weights: npt.ArrayLike, total: int) -> npt.NDArray[np.int64]:
    """Split ``total`` pence in proportion to ``weights`` so the parts sum exactly to it.

    ``weights`` must be finite and non-negative. If they are all zero the total is
    split equally (still by largest remainder). ``total`` may be negative: the split of
    ``-total`` is negated.
    """
    w = np.asarray(weights, dtype=np.float64)
    n = w.size
    total = int(total)
    if n == 0:
        if total != 0:
            raise ValueError(f"cannot split {total} pence between no rows")
        return np.zeros(0, dtype=np.int64)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    if total < 0:
        return -largest_remainder(w, -total)
    s = w.sum()
    if s <= 0:
        w = np.ones(n)
        s = float(n)
    quota = w / s * total
    base = np.floor(quota).astype(np.int64)
    frac = quota - base
    left = total - int(base.sum())
    # Floating error can leave `left` a little outside [0, n); fix it without bias.
    if left < 0 or left > n:
        whole, left = divmod(left, n)
        base += whole
    if left:
        order = np.argsort(-frac, kind="stable")
        base[order[:left]] += 1
    return base


def allocate_to_sum(values: npt.ArrayLike, total: int) -> npt.NDArray[np.int64]:
    """Round non-negative float pence ``values`` to integers that sum exactly to ``total``.

    Uses the values themselves as the weights of :func:`largest_remainder`, so when
    ``sum(values) == total`` (up to float error) every row moves by less than one penny.
    """
    return largest_remainder(np.clip(np.asarray(values, dtype=np.float64), 0, None), total)
