"""Reading pbc's workbooks back as another program would (openpyxl), checking the house
style, and taking screenshots of them (Debian's chromium through playwright)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
BLOCK = ("Organisation", "Period", "Produced", "Source")
MONEY = "£#,##0.00;[Red]-£#,##0.00"


def title_block(ws: Any) -> dict[str, Any]:
    """The title block's labels and values (rows 2.. until the first blank row)."""
    out = {}
    r = 2
    while ws.cell(r, 1).value is not None:
        out[str(ws.cell(r, 1).value)] = ws.cell(r, 2).value
        r += 1
    return out


def header_row(ws: Any) -> int:
    """The table's header row: the row after the blank row under the title block."""
    r = 2
    while ws.cell(r, 1).value is not None:
        r += 1
    return r + 1


def read_table(path: Path, sheet: str | None = None) -> pd.DataFrame:
    """A table sheet's rows under its header, without the totals row and the notes (the
    table ends at the first blank row)."""
    book = openpyxl.load_workbook(path, data_only=True)
    ws = book[sheet] if sheet else book.worksheets[0]
    top = header_row(ws)
    width = ws.max_column
    header = [ws.cell(top, c).value for c in range(1, width + 1)]
    while header and header[-1] is None:
        header.pop()
    rows = []
    r = top + 1
    while any(ws.cell(r, c).value is not None for c in range(1, len(header) + 1)):
        row = [ws.cell(r, c).value for c in range(1, len(header) + 1)]
        rows.append(row)
        r += 1
    frame = pd.DataFrame(rows, columns=header)
    if len(frame) and "Total" in {str(v) for v in rows[-1] if v is not None}:
        frame = frame.iloc[:-1]
    return frame


def totals_row(ws: Any) -> dict[str, Any]:
    """The totals row's values (cached) by header label."""
    top = header_row(ws)
    header = [ws.cell(top, c).value for c in range(1, ws.max_column + 1)]
    r = top + 1
    while any(ws.cell(r, c).value is not None for c in range(1, len(header) + 1)):
        r += 1
    last = r - 1
    return {h: ws.cell(last, c + 1).value for c, h in enumerate(header) if h is not None}


def summary(ws: Any) -> dict[str, Any]:
    """A summary sheet's label -> value rows (below the title block)."""
    out = {}
    r = header_row(ws)
    while ws.cell(r, 1).value is not None:
        out[str(ws.cell(r, 1).value)] = ws.cell(r, 2).value
        r += 1
    return out


def pounds(value: Any) -> Decimal:
    """A money cell (a float of pounds) as exact pounds, to the penny."""
    return Decimal(str(round(float(value), 2))).quantize(Decimal("0.01"))


def check_house_style(path: Path, *, plain_headers: bool = True,
                      title: str | None = None) -> openpyxl.Workbook:
    """Every sheet of a pbc workbook: a bold title in A1 (starting ``title``), the title
    block (organisation, period, when produced, source); a table sheet (one with a frozen
    header) has its autofilter on the header, headers in words (no ``snake_case``), column
    widths set, money cells as pounds, and formulas only in its totals row, each the SUM
    of the column above. Returns the workbook (cached values)."""
    book = openpyxl.load_workbook(path)
    values = openpyxl.load_workbook(path, data_only=True)
    for ws in book.worksheets:
        where = f"{path.name}[{ws.title}]"
        assert ws["A1"].font.b and ws["A1"].value, where
        if title:
            assert str(ws["A1"].value).startswith(title), (where, ws["A1"].value)
        block = title_block(ws)
        assert all(block.get(k) for k in BLOCK), (where, block)
        top = header_row(ws)
        formulas = [c for row in ws.iter_rows() for c in row if c.data_type == "f"]
        if ws.freeze_panes is None:  # a summary page: label and value rows, no formulas
            assert not formulas, where
            continue
        assert ws.freeze_panes == f"A{top + 1}", (where, ws.freeze_panes)
        assert ws.auto_filter.ref and ws.auto_filter.ref.startswith(f"A{top}:"), where
        header = [c.value for c in ws[top] if c.value is not None]
        assert header and all(ws.cell(top, c).font.b for c in range(1, len(header) + 1))
        if plain_headers:
            snake = [h for h in header if re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", str(h))]
            assert not snake, (where, snake)
        widths = {k: d.width for k, d in ws.column_dimensions.items() if d.width}
        assert widths, where
        for c in formulas:
            assert re.fullmatch(rf"=SUM\({c.column_letter}{top + 1}:{c.column_letter}\d+\)",
                                str(c.value)), (where, c.coordinate, c.value)
            assert values[ws.title][c.coordinate].value is not None, (where, c.coordinate)
            label_cells = [ws.cell(c.row, k).value for k in range(1, ws.max_column + 1)]
            assert "Total" in label_cells, (where, c.coordinate)
    return values


def money_columns_formatted(ws: Any, labels: Iterable[str]) -> None:
    """The first data cell of each labelled column is shown as pounds."""
    top = header_row(ws)
    header = {ws.cell(top, c).value: c for c in range(1, ws.max_column + 1)}
    for label in labels:
        cell = ws.cell(top + 1, header[label])
        assert cell.number_format == MONEY, (ws.title, label, cell.number_format)


# ---------------------------------------------------------------------- screenshots
def chromium_ready() -> bool:
    if not CHROMIUM.exists():
        return False
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def screenshot_sheets(shots: list[tuple[Path, str, str]], folder: Path = SCREENSHOTS
                      ) -> list[Path]:
    """PNG of each (workbook, sheet, name) as :func:`pbc.reports.preview.sheet_html` shows
    it, by headless chromium; the page as wide as the sheet."""
    from playwright.sync_api import sync_playwright

    from pbc.reports.preview import sheet_html

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 300})
            for book, sheet, name in shots:
                page.set_content(sheet_html(book, sheet, max_rows=40))
                width = int(page.evaluate("document.body.scrollWidth"))
                page.set_viewport_size({"width": max(600, min(width, 2400)), "height": 300})
                out = folder / f"{name}.png"
                page.screenshot(path=str(out), full_page=True)
                written.append(out)
        finally:
            browser.close()
    return written


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777
