"""SQL fragments for hash-based, order-independent pseudo-random numbers in DuckDB.

``u(key, salt)`` is uniform on [0, 1) and depends only on (key, salt), so the same seed
gives the same economy whatever the number of threads (``random()`` would not).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _salt_constant(salt: int) -> int:
    """A well-mixed 64-bit constant for a salt (so draws with different salts are
    independent: DuckDB's own two-argument ``hash(a, b)`` combines too weakly for that)."""
    digest = hashlib.sha256(f"pbc-synth:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def u(key: str, salt: int) -> str:
    return (f"(CAST(hash(xor(hash({key}), CAST({_salt_constant(salt)} AS UBIGINT))) >> 11 "
            "AS DOUBLE) / 9007199254740992.0)")


def u_indexed(key: str, salts: Sequence[int], index: str) -> str:
    """``u(key, salts[index])`` for a 0-based SQL integer ``index``: the same numbers as
    :func:`u` with each salt, chosen row by row."""
    consts = ", ".join(f"CAST({_salt_constant(s)} AS UBIGINT)" for s in salts)
    return (f"(CAST(hash(xor(hash({key}), list_extract([{consts}], {index} + 1))) >> 11 "
            "AS DOUBLE) / 9007199254740992.0)")


def normal(key: str, salt: int) -> str:
    """Standard normal by Box-Muller from two uniforms."""
    return (f"(sqrt(-2 * ln(greatest({u(key, salt)}, 1e-12))) * "
            f"cos(2 * pi() * {u(key, salt + 1)}))")


def by_age(age: str, bands: Sequence[tuple[int, int, float]], scale: float = 1.0) -> str:
    """Piecewise-constant value by age band."""
    whens = " ".join(f"WHEN {age} < {hi} THEN {v * scale!r}" for lo, hi, v in bands)
    return f"(CASE {whens} ELSE {bands[-1][2] * scale!r} END)"


def lookup(values: Sequence[object], uniform: str) -> str:
    """Pick from ``values`` (a list giving the distribution, e.g. a 1,000-entry quantile
    table) by a uniform number."""
    items = ", ".join(repr(v) if not isinstance(v, str) else "'" + v + "'" for v in values)
    return f"list_extract([{items}], CAST(floor({uniform} * {len(values)}) AS INTEGER) + 1)"


def quantiles(weights: Sequence[float], values: Sequence[object], size: int = 1000) -> list:
    """A ``size``-entry table mapping evenly spaced probabilities to ``values`` by weight."""
    total = float(sum(weights))
    cum, out, i = 0.0, [], 0
    bounds = []
    for w in weights:
        cum += w / total
        bounds.append(cum)
    for j in range(size):
        p = (j + 0.5) / size
        while i < len(bounds) - 1 and p > bounds[i]:
            i += 1
        out.append(values[i])
    return out


def sql_str(value: object) -> str:
    """A SQL string literal for any value's text."""
    return "'" + str(value).replace("'", "''") + "'"
