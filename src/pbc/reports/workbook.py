"""The house style of every Excel workbook pbc writes.

A finance officer or practice manager opens a pbc workbook in Excel, so each sheet is a
finished table, not a data dump:

* a **title block** on every sheet: what it is, for which organisation, which financial
  year and period, which version (draft or agreed), when it was produced and from what data;
* headers in plain English, frozen with the title block, with an autofilter;
* money as pounds with thousands separators (``£#,##0.00``, negatives in red), counts with
  thousands separators, percentages as ``%``, months as ``Apr`` ... ``Mar``;
* column widths that fit their contents; a **totals row** under money and count columns,
  written as a ``SUM`` formula with its value cached, so it reads the same in Excel, in
  LibreOffice and to a program that does not calculate (openpyxl, pandas);
* landscape pages that print one page wide, header rows repeated.

Text stays text (:data:`pbc.warehouse.export.XLSX_OPTIONS`: no cell becomes a formula or a
link). The file is built under a temporary name beside its destination and renamed into
place when complete, so a failure never leaves a half-written workbook.

The layout follows the Government Analysis Function's guidance on releasing statistics in
spreadsheets (a cover or title block, one table per sheet, headers in words, no merged
cells in tables, notes as text).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import pandas as pd
import xlsxwriter
from xlsxwriter.utility import xl_rowcol_to_cell

from pbc.warehouse.export import XLSX_OPTIONS, sheet_title

Kind = Literal["text", "money", "count", "number", "percent", "ratio", "date", "datetime",
               "month", "general"]

#: months of the financial year as a workbook labels them (1 = April)
MONTH_LABELS: Final = ("Apr", "May", "Jun", "Jul", "Aug", "Sep",
                       "Oct", "Nov", "Dec", "Jan", "Feb", "Mar")

#: Excel number formats by kind of column
NUMBER_FORMATS: Final[dict[str, str]] = {
    "money": "£#,##0.00;[Red]-£#,##0.00",
    "count": "#,##0",
    "number": "#,##0.0",
    "percent": "0.0%",
    "ratio": "0.000",
    "date": "d mmm yyyy",
    "datetime": "d mmm yyyy hh:mm",
}
#: kinds summed in a totals row unless a column says otherwise
SUMMED: Final = frozenset({"money", "count"})
MAX_WIDTH: Final = 60
#: the first column is at least this wide, so the title block's labels show whole
TITLE_LABEL_WIDTH: Final = 14
MIN_WIDTH: Final = 8


@dataclass(frozen=True)
class Column:
    """One column of a table: the frame's column ``key`` shown as ``label``."""

    key: str
    label: str
    kind: Kind = "text"
    #: sum this column in the totals row (default: money and counts)
    total: bool | None = None
    width: int | None = None

    @property
    def summed(self) -> bool:
        return self.kind in SUMMED if self.total is None else self.total


@dataclass(frozen=True)
class TitleBlock:
    """What a sheet is; printed at the top of every sheet of the workbook."""

    title: str
    organisation: str
    period: str
    source: str
    #: e.g. "Version 3, agreed 14 March 2025" or "Draft version 2 (not agreed)"
    version: str | None = None
    produced: dt.datetime = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).replace(microsecond=0))

    def lines(self, heading: str | None) -> list[tuple[str, str]]:
        rows = [("Organisation", self.organisation), ("Period", self.period)]
        if self.version:
            rows.append(("Version", self.version))
        rows += [("Produced", self.produced.strftime("%d %B %Y %H:%M UTC")),
                 ("Source", self.source)]
        first = f"{self.title}: {heading}" if heading else self.title
        return [(first, ""), *rows]


class Workbook:
    """A pbc workbook in the house style; use as a context manager.

    >>> with Workbook(path, TitleBlock(...)) as wb:            # doctest: +SKIP
    ...     wb.summary("Summary", [("Budget 2025-26", "£1,234,567"), ...])
    ...     wb.table("Budget", frame, [Column("service_line", "Service line"), ...])
    """

    def __init__(self, path: Path, title: TitleBlock, *, mode: int | None = None) -> None:
        """``mode``: the file's permissions (e.g. owner and group only for patients' rows),
        set on the temporary file before anything is written to it."""
        self.path = Path(path)
        self.title = title
        self.mode = mode
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}-{uuid.uuid4().hex[:8]}.xlsx")
        if mode is not None:
            os.close(os.open(self._tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))
            os.chmod(self._tmp, mode)  # whatever the umask
        self._book = xlsxwriter.Workbook(str(self._tmp), XLSX_OPTIONS["options"])
        self._book.set_properties({"title": title.title, "subject": title.organisation,
                                   "author": "pbc", "comments": title.source})
        self._formats: dict[tuple[str, bool], Any] = {}
        self._sheets: set[str] = set()
        self._bold = self._book.add_format({"bold": True})
        self._title = self._book.add_format({"bold": True, "font_size": 14})
        self._label = self._book.add_format({"bold": True, "font_color": "#425563"})
        self._header = self._book.add_format({"bold": True, "text_wrap": True,
                                              "valign": "top", "bottom": 1,
                                              "bg_color": "#E8EDEE"})
        self._wrap = self._book.add_format({"text_wrap": True, "valign": "top"})

    # ----------------------------------------------------------------- context
    def __enter__(self) -> Workbook:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()

    def close(self) -> Path:
        """Write the file and rename it into place."""
        if not self._sheets:
            raise ValueError(f"{self.path}: a workbook needs at least one sheet")
        self._book.close()
        if self.mode is not None:
            os.chmod(self._tmp, self.mode)
        os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Drop the workbook being built; the destination is not touched."""
        with contextlib.suppress(Exception):  # whatever went wrong, the temporary file goes
            self._book.close()
        self._tmp.unlink(missing_ok=True)

    # ----------------------------------------------------------------- sheets
    def _sheet(self, name: str) -> Any:
        title = sheet_title(name)
        if title in self._sheets:
            raise ValueError(f"{self.path}: two sheets named {title!r}")
        self._sheets.add(title)
        ws = self._book.add_worksheet(title)
        ws.set_landscape()
        ws.set_paper(9)  # A4
        ws.fit_to_pages(1, 0)
        return ws

    def _format(self, kind: str, total: bool = False) -> Any:
        key = (kind, total)
        if key not in self._formats:
            props: dict[str, Any] = {"valign": "top"}
            if kind in NUMBER_FORMATS:
                props["num_format"] = NUMBER_FORMATS[kind]
            if total:
                props.update(bold=True, top=1)
            self._formats[key] = self._book.add_format(props)
        return self._formats[key]

    def _title_block(self, ws: Any, heading: str | None) -> int:
        """Write the title block; return the first free row (after a blank one)."""
        lines = self.title.lines(heading)
        ws.write_string(0, 0, lines[0][0], self._title)
        for r, (label, value) in enumerate(lines[1:], start=1):
            ws.write_string(r, 0, label, self._label)
            ws.write_string(r, 1, value)
        return len(lines) + 1

    def summary(self, sheet: str, rows: Sequence[tuple[str, Any]], *,
                heading: str | None = None, notes: Iterable[str] = ()) -> None:
        """A page of statements: each row a label and a value (text, or a number shown in
        the kind given as ``(value, kind)``), then notes as wrapped text."""
        ws = self._sheet(sheet)
        r = self._title_block(ws, heading or sheet)
        for label, value in rows:
            ws.write_string(r, 0, str(label), self._label)
            if isinstance(value, tuple):
                self._write(ws, r, 1, value[0], self._format(value[1]))
            else:
                self._write(ws, r, 1, value, self._wrap)
            r += 1
        self._notes(ws, r + 1, notes)
        longest = max((len(str(label)) for label, _ in rows), default=0)
        ws.set_column(0, 0, min(MAX_WIDTH, max(38, longest + 2)))
        ws.set_column(1, 1, 70, self._wrap)

    def table(self, sheet: str, frame: pd.DataFrame, columns: Sequence[Column], *,
              heading: str | None = None, totals: str | None = "Total",
              notes: Iterable[str] = ()) -> None:
        """One table on its own sheet: title block, header, rows, totals row, notes."""
        missing = [c.key for c in columns if c.key not in frame.columns]
        if missing:
            raise KeyError(f"{sheet}: no column {', '.join(missing)} in the table")
        ws = self._sheet(sheet)
        top = self._title_block(ws, heading or sheet)
        for c, col in enumerate(columns):
            ws.write_string(top, c, col.label, self._header)
        first = top + 1
        values = [frame[col.key].tolist() for col in columns]
        formats = [self._format(col.kind) for col in columns]
        for i in range(len(frame)):
            for c in range(len(columns)):
                self._write(ws, first + i, c, values[c][i], formats[c])
        last = first + len(frame) - 1
        end = last + 1
        if totals is not None and len(frame) and any(col.summed for col in columns):
            self._totals(ws, end, columns, values, first, last, totals)
            end += 1
        self._notes(ws, end + 1, notes)
        ws.freeze_panes(first, 0)
        ws.autofilter(top, 0, max(last, top), len(columns) - 1)
        ws.repeat_rows(top)
        for c, col in enumerate(columns):
            width = col.width or _width(col, values[c])
            # the first column also holds the title block's labels ("Organisation")
            ws.set_column(c, c, max(width, TITLE_LABEL_WIDTH) if c == 0 else width)

    def _totals(self, ws: Any, row: int, columns: Sequence[Column], values: list[list[Any]],
                first: int, last: int, label: str) -> None:
        label_col = next((c for c, col in enumerate(columns) if not col.summed), None)
        if label_col is not None:
            ws.write_string(row, label_col, label, self._format("text", True))
        for c, col in enumerate(columns):
            if not col.summed:
                continue
            total = _sum(values[c], col.kind)
            formula = (f"=SUM({xl_rowcol_to_cell(first, c)}:"
                       f"{xl_rowcol_to_cell(last, c)})")
            ws.write_formula(row, c, formula, self._format(col.kind, True), total)

    def _notes(self, ws: Any, row: int, notes: Iterable[str]) -> None:
        for note in notes:
            ws.write_string(row, 0, note)
            row += 1

    @staticmethod
    def _write(ws: Any, r: int, c: int, value: Any, fmt: Any) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)) or (
                value is pd.NaT) or (not isinstance(value, str | bytes) and _is_na(value)):
            ws.write_blank(r, c, None, fmt)
        elif isinstance(value, bool):
            ws.write_string(r, c, "yes" if value else "no", fmt)
        elif isinstance(value, Decimal | int | float):
            ws.write_number(r, c, float(value), fmt)
        elif isinstance(value, dt.datetime | dt.date | pd.Timestamp):
            ws.write_datetime(r, c, pd.Timestamp(value).to_pydatetime().replace(tzinfo=None),
                              fmt)
        else:
            ws.write_string(r, c, str(value), fmt)


def _is_na(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _sum(values: list[Any], kind: str) -> float:
    total = sum((Decimal(str(v)) for v in values
                 if v is not None and not _is_na(v) and not isinstance(v, str)), Decimal(0))
    return float(round(total, 2)) if kind == "money" else float(total)


def _width(col: Column, values: list[Any]) -> int:
    """A width that fits the header (wrapped over two lines) and the longest value."""
    longest = max((len(_shown(v, col.kind)) for v in values[:5000]), default=0)
    header = math.ceil(len(col.label) / 2) if len(col.label) > 16 else len(col.label)
    return max(MIN_WIDTH, min(MAX_WIDTH, max(longest, header) + 2))


def _shown(value: Any, kind: str) -> str:
    if value is None or _is_na(value):
        return ""
    if kind == "money" and not isinstance(value, str):
        return f"£{float(value):,.2f}"
    if kind == "count" and not isinstance(value, str):
        return f"{float(value):,.0f}"
    if kind == "percent" and not isinstance(value, str):
        return f"{float(value):.1%}"
    if kind == "date" and not isinstance(value, str):
        return pd.Timestamp(value).strftime("%d %b %Y")
    if kind == "datetime" and not isinstance(value, str):
        return pd.Timestamp(value).strftime("%d %b %Y %H:%M")
    return str(value)


def month_label(month: int) -> str:
    """``Apr`` for month 1 of the financial year ... ``Mar`` for month 12."""
    if not 1 <= int(month) <= 12:
        raise ValueError(f"month {month}: the financial year's months are 1 (April) to 12")
    return MONTH_LABELS[int(month) - 1]


def months_wide(frame: pd.DataFrame, index: Sequence[str], value: str,
                month: str = "month") -> tuple[pd.DataFrame, list[Column]]:
    """A long table of (index..., month 1-12, value) as one row per index with a column per
    month (``Apr`` ... ``Mar``, every month present even with no value) and a year total;
    with the money columns to show it."""
    wide = frame.pivot_table(index=list(index), columns=month, values=value,
                             aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=range(1, 13), fill_value=0)
    wide.columns = list(MONTH_LABELS)
    wide["Year"] = wide[list(MONTH_LABELS)].sum(axis=1)
    wide = wide.reset_index()
    cols = [Column(m, m, "money") for m in (*MONTH_LABELS, "Year")]
    return wide, cols
