"""Small-number suppression for every aggregate that leaves a practice (docs/security.md).

The rule (after the NHS Digital HES analysis guide and the ONS/NHS disclosure control
practice): a count from 1 to ``threshold`` (7 by default) is not shown; it becomes ``None``,
rendered as :data:`MARKER` (``*``). Zero is shown (an empty cell discloses nothing about a
person).

Secondary (complementary) suppression: a suppressed cell could be recovered by subtraction
if the line's total is shown and it is the only suppressed cell in that line. So in every line
(row, and column when column totals are published) with exactly one suppressed cell, the
smallest other non-zero cell is suppressed too; when there is no such cell, the line total
is suppressed instead. This repeats until no line has a lone suppressed cell.

Across tables: :func:`suppress_levels` suppresses every table a principal can produce from
the same data (counts by practice, group, neighbourhood, local authority, commissioner)
together, so that no published table can be subtracted from another to recover a hidden
count (a group's cell minus its practices' shown cells; a commissioner's total minus the
shown local authorities). See :func:`suppress_levels` and docs/security.md.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_THRESHOLD = 7
MARKER = "*"

Cell = int | None


def _primary(v: int, threshold: int) -> bool:
    return 1 <= v <= threshold


def suppress(counts: Iterable[int], threshold: int = DEFAULT_THRESHOLD, *,
             complementary: bool = True) -> list[Cell]:
    """One row of counts with primary (1..threshold -> ``None``) and, unless
    ``complementary=False``, complementary suppression against the row total.

    >>> suppress([120, 5, 40, 0])
    [120, None, None, 0]
    """
    values = [int(c) for c in counts]
    return suppress_table([values], threshold, complementary=complementary)[0].cells


@dataclass(frozen=True)
class SuppressedRow:
    cells: list[Cell]
    total: Cell


def suppress_table(
    rows: Sequence[Sequence[int]],
    threshold: int = DEFAULT_THRESHOLD,
    *,
    complementary: bool = True,
    column_totals: bool = False,
) -> list[SuppressedRow]:
    """Suppress a table of counts whose row totals are shown (and column totals, if
    ``column_totals``). Returns each row's cells and its total (``None`` when suppressed)."""
    values = [[int(c) for c in r] for r in rows]
    for r in values:
        for c in r:
            if c < 0:
                raise ValueError(f"counts must be non-negative (got {c})")
    hidden = [[_primary(c, threshold) for c in r] for r in values]
    totals = [sum(r) for r in values]
    total_hidden = [_primary(t, threshold) for t in totals]
    if complementary:
        changed = True
        while changed:
            changed = False
            lines: list[list[tuple[int, int]]] = [
                [(i, j) for j in range(len(r))] for i, r in enumerate(values)]
            if column_totals and values:
                width = max(len(r) for r in values)
                lines += [[(i, j) for i in range(len(values)) if j < len(values[i])]
                          for j in range(width)]
            for k, line in enumerate(lines):
                is_row = k < len(values)
                if is_row and total_hidden[k]:
                    continue
                if sum(hidden[i][j] for i, j in line) != 1:
                    continue
                candidates = [(values[i][j], i, j) for i, j in line
                              if not hidden[i][j] and values[i][j] > 0]
                if candidates:
                    _, i, j = min(candidates)
                    hidden[i][j] = True
                elif is_row:
                    total_hidden[k] = True
                else:
                    continue  # a column of zeros but one: its total is not shown per cell
                changed = True
    return [
        SuppressedRow([None if h else c for c, h in zip(r, hr, strict=True)],
                      None if th else t)
        for r, hr, t, th in zip(values, hidden, totals, total_hidden, strict=True)
    ]


def show(value: Cell) -> str:
    """Text for a possibly suppressed count: the number, or :data:`MARKER`."""
    return MARKER if value is None else str(value)


# ------------------------------------------------------------------ across levels
TOTAL = "total"
#: a published cell: (level, unit code, column or TOTAL)
CellKey = tuple[str, Hashable, str]


@dataclass(frozen=True)
class LevelRow:
    """One unit's row of a level's table; ``None`` cells and total are suppressed."""

    code: Any
    cells: list[Cell]
    total: Cell


def suppress_levels(
    base: pd.DataFrame,
    levels: Sequence[str],
    columns: Sequence[str],
    threshold: int = DEFAULT_THRESHOLD,
    *,
    hide: Iterable[CellKey] = (),
) -> dict[str, list[LevelRow]]:
    """Suppress the tables of counts at every level in ``levels`` together.

    ``base`` has one row per combination of level codes and ``column`` value, with the
    count ``n`` (e.g. patients by practice, group, neighbourhood, local authority,
    commissioner and risk segment). Each level's table has a row per unit (code, ``None``
    included), a cell per column and the row total; every cell is a sum of base counts.

    1. Primary: a cell (or total) from 1 to ``threshold`` is hidden.
    2. Complementary, by equations: each row total is the sum of its cells, and a unit of a
       coarser level is the sum of the units of a finer level nested in it (found from the
       data: every practice in one group, say), for every column and the total. Wherever
       one of these equations has exactly one hidden term, the smallest shown non-zero term
       is hidden too (a child before the parent), until none has.
    ``hide`` names cells to hide from the start, whatever their value: a total that
    another table published with the same people had to hide (a neighbourhood's
    population, say), so that the tables agree on it.

    3. Audit: an intruder knows every shown cell, that counts are whole and not negative,
       and that a hidden cell is not zero (zeros are shown). For each hidden cell the
       smallest and largest values consistent with all of that are found by linear
       programming over the base counts; if they admit only one whole number the cell is
       disclosed, one more term of an equation with it is hidden, and steps 2-3 repeat.

    After Cox (1980), "Suppression methodology and statistical disclosure control", JASA
    75(370); the audit is the interval ("linear programming") audit of Hundepool et al.,
    Statistical Disclosure Control (Wiley, 2012), §4.3. A table from one level minus a
    table from another cannot recover a hidden count, nor can any other linear
    combination of the published tables.
    """
    cells, support, values = _level_cells(base, levels, columns)
    hidden = {k for k, v in values.items() if _primary(v, threshold)}
    forced = set(hide)
    unknown = forced - set(values)
    if unknown:
        raise KeyError(f"suppress_levels: no such cell {sorted(unknown, key=repr)[0]!r}")
    hidden |= forced
    relations = _relations(base, levels, columns, values)
    safe: set[CellKey] = set()  # hiding more only widens intervals: safe stays safe
    while True:
        _complete(relations, values, hidden)
        disclosed = _audit(support, values, hidden, len(base), skip=safe)
        safe |= hidden - set(disclosed)
        if not disclosed:
            break
        before = set(hidden)
        for key in disclosed:
            if hidden == before or not _near(key, relations) & (hidden - before):
                _widen(key, relations, values, hidden, support)
        if hidden == before:  # the audit saw these disclosed, and nothing more can hide
            raise RuntimeError(f"cannot protect suppressed cell {disclosed[0]}")
    out: dict[str, list[LevelRow]] = {}
    for level in levels:
        rows = []
        for code in cells[level]:
            cs = [None if (level, code, c) in hidden else values[(level, code, c)]
                  for c in columns]
            t = (level, code, TOTAL)
            rows.append(LevelRow(code, cs, None if t in hidden else values[t]))
        out[level] = rows
    return out


def _level_cells(base: pd.DataFrame, levels: Sequence[str], columns: Sequence[str]
                 ) -> tuple[dict[str, list[Any]], dict[CellKey, np.ndarray],
                            dict[CellKey, int]]:
    """Units of each level (sorted, ``None`` last), each cell's base rows and value."""
    if (base["n"] < 0).any():
        raise ValueError("counts must be non-negative")
    n = base["n"].to_numpy(dtype=np.int64)
    col = base["column"].to_numpy()
    units: dict[str, list[Any]] = {}
    support: dict[CellKey, np.ndarray] = {}
    values: dict[CellKey, int] = {}
    for level in levels:
        codes = base[level].to_numpy(dtype=object)
        present = {c for c in codes if not _is_null(c)}
        units[level] = sorted(present) + ([None] if any(_is_null(c) for c in codes) else [])
        for code in units[level]:
            in_unit = np.array([_is_null(c) for c in codes]) if code is None \
                else codes == code
            for c in [*columns, TOTAL]:
                rows = in_unit if c == TOTAL else in_unit & (col == c)
                support[(level, code, c)] = np.flatnonzero(rows)
                values[(level, code, c)] = int(n[rows].sum())
    return units, support, values


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _relations(base: pd.DataFrame, levels: Sequence[str], columns: Sequence[str],
               values: dict[CellKey, int]) -> list[tuple[CellKey, list[CellKey]]]:
    """Equations ``parent = sum of children`` among the published cells: each row total,
    and each unit of a level over the units of a finer level nested in it (a unit with
    one child is equal to it: a group of one practice)."""
    rel: list[tuple[CellKey, list[CellKey]]] = []
    for lv in levels:
        for key in values:
            if key[0] == lv and key[2] == TOTAL:
                rel.append((key, [(lv, key[1], c) for c in columns]))
    frame = base[list(levels)].astype(object)
    frame = frame.where(frame.notna(), None)
    for fine in levels:
        for coarse in levels:
            if fine == coarse:
                continue
            pairs = {(f, c) for f, c in zip(frame[fine], frame[coarse], strict=True)}
            mapping: dict[Any, Any] = {}
            nested = True
            for f, c in pairs:
                if f in mapping and mapping[f] != c:
                    nested = False
                    break
                mapping[f] = c
            if not nested:
                continue
            for parent in sorted(set(mapping.values()), key=str):
                kids = sorted((f for f, c in mapping.items() if c == parent), key=str)
                for c in [*columns, TOTAL]:
                    rel.append(((coarse, parent, c), [(fine, k, c) for k in kids]))
    return rel


def _order(key: CellKey, values: dict[CellKey, int]) -> tuple[int, str]:
    return values[key], repr(key)


def _complete(relations: list[tuple[CellKey, list[CellKey]]], values: dict[CellKey, int],
              hidden: set[CellKey]) -> None:
    """Hide one more term of every equation with exactly one hidden term, until none has."""
    changed = True
    while changed:
        changed = False
        for parent, kids in relations:
            if sum(t in hidden for t in (parent, *kids)) != 1:
                continue
            shown = [k for k in kids if k not in hidden and values[k] > 0]
            if not shown and parent not in hidden and values[parent] > 0:
                shown = [parent]
            if shown:
                hidden.add(min(shown, key=lambda k: _order(k, values)))
                changed = True


def _audit(support: dict[CellKey, np.ndarray], values: dict[CellKey, int],
           hidden: set[CellKey], n_base: int, skip: set[CellKey]) -> list[CellKey]:
    """Hidden cells (not in ``skip``) whose value the shown cells pin to one whole number
    (interval audit: two linear programs per hidden cell over the base counts, HiGHS)."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    if not hidden:
        return []

    def matrix(keys: list[CellKey]) -> Any:
        rows = [i for i, k in enumerate(keys) for _ in support[k]]
        cols = [j for k in keys for j in support[k]]
        return csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(keys), n_base))

    shown = sorted((k for k in values if k not in hidden), key=repr)
    secret = sorted(hidden, key=repr)
    a_eq, b_eq = matrix(shown), np.array([values[k] for k in shown], dtype=float)
    a_ub, b_ub = -matrix(secret), -np.ones(len(secret))  # a hidden cell is at least 1
    disclosed = []
    for key in secret:
        if key in skip:
            continue
        c = np.zeros(n_base)
        c[support[key]] = 1.0
        true = values[key]  # feasible, so lowest <= true <= highest
        pinned = True
        for sign in (1.0, -1.0):
            res = linprog(sign * c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq,
                          bounds=(0, None), method="highs")
            if res.status == 3:  # unbounded above: not disclosed
                pinned = False
                break
            if res.status != 0:
                raise RuntimeError(f"suppression audit failed for {key}: {res.message}")
            if abs(sign * res.fun - true) >= 1 - 1e-6:  # another whole number fits
                pinned = False
                break
        if pinned:
            disclosed.append(key)
    return disclosed


def _near(key: CellKey, relations: list[tuple[CellKey, list[CellKey]]]) -> set[CellKey]:
    """The cells sharing an equation with ``key``."""
    return {t for parent, kids in relations if key in (parent, *kids) for t in (parent, *kids)}


def _widen(key: CellKey, relations: list[tuple[CellKey, list[CellKey]]],
           values: dict[CellKey, int], hidden: set[CellKey],
           support: dict[CellKey, np.ndarray]) -> None:
    """Hide the smallest shown non-zero term of an equation with the disclosed ``key``
    (or, failing that, of a cell over the same patients)."""
    shown = [t for t in _near(key, relations) if t not in hidden and values[t] > 0]
    if not shown:
        mine = set(support[key].tolist())
        shown = [t for t in values if t not in hidden and values[t] > 0
                 and mine & set(support[t].tolist())]
    if not shown:  # an earlier widening in this round may have protected it: re-audit
        return
    hidden.add(min(shown, key=lambda k: _order(k, values)))
