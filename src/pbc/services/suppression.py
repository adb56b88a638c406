"""Small-number suppression for every aggregate that leaves a practice (DESIGN.md guarantee 6).

The rule (after the NHS Digital HES analysis guide and the ONS/NHS disclosure control
practice): a count from 1 to ``threshold`` (7 by default) is not shown; it becomes ``None``,
rendered as :data:`MARKER` (``*``). Zero is shown (an empty cell discloses nothing about a
person).

Secondary (complementary) suppression: a suppressed cell could be recovered by subtraction
if the line's total is shown and it is the only suppressed cell in that line. So in every line
(row, and column when column totals are published) with exactly one suppressed cell, the
smallest other non-zero cell is suppressed too; when there is no such cell, the line total
is suppressed instead. This repeats until no line has a lone suppressed cell.

Limits (documented, not solved here): differencing *across* tables or levels (a group total
minus its practices' cells published elsewhere) needs the levels suppressed together; callers
that publish several levels should suppress each level's cells against the same totals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
