"""A provider's invoice: a CSV of its own priced lines, one per activity id, read and validated.

Columns (docs/decisions.md, "Contracts and invoice validation"; a header row, any order,
other columns ignored):

=================  ========  ==========================================================
column             required  what
=================  ========  ==========================================================
``activity_id``    yes       the provider's id of the activity (spell, attendance), as
                             in the commissioning data set it sent
``dataset``        yes       ``apc`` (admitted patient care spell), ``op`` (outpatient
                             attendance) or ``ae`` (A&E attendance)
``practice_code``  yes       the GP practice the provider attributes it to (may be blank)
``activity_date``  yes       ``YYYY-MM-DD``: discharge date of a spell, the appointment or
                             arrival date otherwise
``amount``         yes       pounds to the penny, not negative (e.g. ``1234.50``)
``service_line``   no        the provider's service line, shown on the challenge list
``hrg_code``       no        the provider's HRG, shown on the challenge list
=================  ========  ==========================================================

Bad input raises :class:`InvoiceError` naming the file, the row (the header is row 1, as a
spreadsheet numbers it) and the column, for every bad cell (up to :data:`MAX_PROBLEMS`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

#: the invoice's datasets: pbc's activity types a provider bills (prescribing is not billed)
DATASETS = ("apc", "op", "ae")
REQUIRED = ("activity_id", "dataset", "practice_code", "activity_date", "amount")
OPTIONAL = ("service_line", "hrg_code")
COLUMNS = REQUIRED + OPTIONAL
#: bad cells named in one error before the rest are counted
MAX_PROBLEMS = 20


class InvoiceError(ValueError):
    """An invoice that cannot be read (the message names the file, row and column)."""


@dataclass(frozen=True)
class InvoiceLine:
    """One line of an invoice; ``row`` is its row in the file (the header is row 1)."""

    row: int
    activity_id: str
    dataset: str
    practice_code: str
    activity_date: dt.date
    amount_pence: int
    service_line: str = ""
    hrg_code: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the activity billed: (dataset, activity id)."""
        return (self.dataset, self.activity_id)


def pounds_to_pence(text: str) -> int:
    """``"1234.5"`` -> 123450; ValueError unless a non-negative amount to the penny."""
    try:
        value = Decimal(text.strip().replace(",", "").removeprefix("£"))
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount in pounds") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not an amount in pounds")
    if value < 0:
        raise ValueError(f"{text!r} is negative (an invoice line bills a positive amount; "
                         "send credits as a separate note)")
    if value != value.quantize(Decimal("0.01")):
        raise ValueError(f"{text!r} has fractions of a penny")
    return int(value * 100)


def parse_invoice(text: str, where: str = "invoice") -> list[InvoiceLine]:
    """The invoice's lines from its CSV text; :class:`InvoiceError` naming ``where``, the
    row and the column of every problem."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise InvoiceError(f"{where}: empty file: expected a header row with the columns "
                           f"{', '.join(REQUIRED)}")
    names = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise InvoiceError(f"{where}: row 1 (the header): missing column(s) "
                           f"{', '.join(missing)}; an invoice has the columns "
                           f"{', '.join(REQUIRED)} (and optionally {', '.join(OPTIONAL)})")
    twice = sorted({n for n in names if n in COLUMNS and names.count(n) > 1})
    if twice:
        raise InvoiceError(f"{where}: row 1 (the header): column(s) {', '.join(twice)} "
                           "named twice")
    at = {c: names.index(c) for c in COLUMNS if c in names}
    lines: list[InvoiceLine] = []
    problems: list[str] = []
    for n, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue  # a blank line (a spreadsheet's trailing rows)
        if len(cells) != len(names):
            problems.append(f"row {n}: {len(cells)} fields, the header has {len(names)}")
            continue

        def cell(column: str, cells: list[str] = cells) -> str:
            return cells[at[column]].strip() if column in at else ""

        bad = len(problems)
        activity_id, dataset = cell("activity_id"), cell("dataset").lower()
        if not activity_id:
            problems.append(f"row {n}, column activity_id: blank")
        if dataset not in DATASETS:
            problems.append(f"row {n}, column dataset: {cell('dataset')!r} is not one of "
                            f"{', '.join(DATASETS)}")
        try:
            day = dt.date.fromisoformat(cell("activity_date"))
        except ValueError:
            problems.append(f"row {n}, column activity_date: {cell('activity_date')!r} is "
                            "not a date YYYY-MM-DD")
        try:
            pence = pounds_to_pence(cell("amount"))
        except ValueError as e:
            problems.append(f"row {n}, column amount: {e}")
        if len(problems) == bad:
            lines.append(InvoiceLine(n, activity_id, dataset, cell("practice_code").upper(),
                                     day, pence, cell("service_line"), cell("hrg_code")))
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS])
        more = (f" (and {len(problems) - MAX_PROBLEMS:,} more)"
                if len(problems) > MAX_PROBLEMS else "")
        raise InvoiceError(f"{where}: {shown}{more}; nothing was checked")
    if not lines:
        raise InvoiceError(f"{where}: no invoice lines under the header")
    return lines


def invoice_csv(lines: list[InvoiceLine]) -> str:
    """The CSV text of ``lines`` (the columns above, in order; amounts in pounds)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("activity_id", "dataset", "practice_code", "service_line", "hrg_code",
                     "activity_date", "amount"))
    for x in lines:
        writer.writerow((x.activity_id, x.dataset, x.practice_code, x.service_line,
                         x.hrg_code, x.activity_date.isoformat(), pence_text(x.amount_pence)))
    return out.getvalue()


def pence_text(pence: int) -> str:
    """Pence as pounds to the penny, plain (``-12.05``) for CSV files."""
    sign = "-" if pence < 0 else ""
    return f"{sign}{abs(pence) // 100}.{abs(pence) % 100:02d}"
