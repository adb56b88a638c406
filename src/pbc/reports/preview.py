"""A sheet of a workbook as HTML, as Excel would show it: for looking at a workbook without
Excel (the screenshots in ``docs/screenshots/`` are taken from it with a headless browser).

It reads the file with openpyxl (the cached values of formulas, as any program that does not
calculate sees them) and shows each value through its cell's number format (the formats of
:data:`pbc.reports.workbook.NUMBER_FORMATS` and ``General``; any other format is refused,
so a preview never shows a figure differently from Excel without saying so), with bold,
font size and colour, fill, the header's bottom border, wrapped text, column widths, the
frozen rows, the column letters and row numbers, and the sheet tabs.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.utils import get_column_letter

#: pixels per Excel character of column width (Calibri 11 at 96 dpi)
CHAR_PX = 7.0
DEFAULT_WIDTH = 8.43
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class PreviewError(ValueError):
    """A cell this preview cannot show as Excel would."""


def format_value(value: Any, number_format: str) -> tuple[str, str | None]:
    """``value`` as Excel shows it under ``number_format``; and the colour a ``[Red]``
    section gives (else None)."""
    if value is None:
        return "", None
    if isinstance(value, dt.datetime | dt.date):
        if number_format in ("d mmm yyyy", "d mmm yyyy hh:mm"):
            day = f"{value.day} {_MONTHS[value.month - 1]} {value.year}"
            if number_format.endswith("hh:mm") and isinstance(value, dt.datetime):
                day += f" {value.hour:02d}:{value.minute:02d}"
            return day, None
        if number_format == "General":
            return value.isoformat(), None
        raise PreviewError(f"date format {number_format!r} is not previewed")
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE"), None
    if not isinstance(value, int | float):
        return str(value), None
    if number_format in ("General", "@"):
        return _general(float(value)), None
    sections = number_format.split(";")
    if value < 0 and len(sections) > 1:
        section, value = sections[1], -value  # the negative section carries its own sign
    elif value == 0 and len(sections) > 2:
        section = sections[2]
    else:
        section = sections[0]
    colour = None
    m = re.match(r"^\[(Red|Blue|Green|Black)\]", section)
    if m:
        colour = m.group(1).lower()
        section = section[m.end():]
    m = re.fullmatch(r'(?P<pre>[^#0]*)(?P<num>[#,0]*0)(?:\.(?P<dec>0+))?(?P<post>%?)', section)
    if not m:
        raise PreviewError(f"number format {number_format!r} is not previewed")
    # Excel rounds the value as written to 15 significant figures, half away from zero
    number = Decimal(repr(float(value))) * (100 if m.group("post") else 1)
    places = len(m.group("dec") or "")
    number = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{number:,.{places}f}" if "," in m.group("num") else f"{number:.{places}f}"
    if text.startswith("-") and float(text.replace(",", "")) == 0:
        text = text[1:]
    pre = m.group("pre").replace('"', "").replace("\\", "")
    if text.startswith("-"):  # Excel puts the sign before a literal prefix
        return f"-{pre}{text[1:]}{m.group('post')}", colour
    return f"{pre}{text}{m.group('post')}", colour


def _general(x: float) -> str:
    if x == int(x) and abs(x) < 1e11:
        return str(int(x))
    return f"{x:.10g}"


def _colour(c: Any) -> str | None:
    """An openpyxl colour as CSS (ARGB ``FF112233`` -> ``#112233``)."""
    rgb = getattr(c, "rgb", None)
    if isinstance(rgb, str) and len(rgb) == 8 and rgb != "00000000":
        return f"#{rgb[2:]}"
    return None


def sheet_html(path: Path, sheet: str | None = None, *, max_rows: int = 60,
               max_cols: int = 16) -> str:
    """One sheet (default: the first) of the workbook at ``path`` as a standalone HTML page."""
    book = openpyxl.load_workbook(path, data_only=True)
    ws = book[sheet] if sheet else book.worksheets[0]
    frozen = ws.freeze_panes
    frozen_row = ws[frozen].row - 1 if frozen else 0
    ncols = min(ws.max_column, max_cols)
    nrows = min(ws.max_row, max_rows)
    chars: dict[int, float] = {}
    for dim in ws.column_dimensions.values():  # one entry may span columns (min..max)
        if dim.width and dim.min:
            for c in range(int(dim.min), int(dim.max or dim.min) + 1):
                chars[c] = float(dim.width)
    widths = [round(chars.get(c, DEFAULT_WIDTH) * CHAR_PX + 5) for c in range(1, ncols + 1)]
    out = [f'<table class="grid" style="width:{36 + sum(widths)}px">'
           '<colgroup><col style="width:36px">']
    out += [f'<col style="width:{w}px">' for w in widths]
    out.append('</colgroup><tr><th class="corner"></th>')
    out += [f'<th class="col">{get_column_letter(c)}</th>' for c in range(1, ncols + 1)]
    out.append("</tr>")
    for r in range(1, nrows + 1):
        cls = ' class="frozen"' if r == frozen_row else ""
        out.append(f'<tr{cls}><th class="row">{r}</th>')
        for c in range(1, ncols + 1):
            spill = c == ncols or ws.cell(r, c + 1).value is None
            out.append(_cell(ws.cell(r, c), spill))
        out.append("</tr>")
    out.append("</table>")
    more = ws.max_row - nrows
    tabs = "".join(f'<span class="tab{" on" if s.title == ws.title else ""}">'
                   f"{html.escape(s.title)}</span>" for s in book.worksheets)
    note = f'<p class="more">… {more:,} more rows</p>' if more > 0 else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>"
            f"{html.escape(path.name)}: {html.escape(ws.title)}</title><style>{CSS}</style>"
            f"</head><body><div class='file'>{html.escape(path.name)}</div>{''.join(out)}"
            f"{note}<div class='tabs'>{tabs}</div></body></html>")


def _cell(cell: Any, spill: bool = False) -> str:
    """A cell as a ``td``; text not wrapped runs on over an empty neighbour (``spill``), as
    in Excel."""
    text, red = format_value(cell.value, cell.number_format or "General")
    style = []
    font = cell.font
    if font is not None:
        if font.b:
            style.append("font-weight:bold")
        if font.sz and float(font.sz) != 11:
            style.append(f"font-size:{float(font.sz) * 4 / 3:.0f}px")
        colour = _colour(font.color)
        if colour:
            style.append(f"color:{colour}")
    if red:
        style.append(f"color:{red}")
    fill = _colour(cell.fill.fgColor) if cell.fill is not None and cell.fill.fill_type else None
    if fill:
        style.append(f"background:{fill}")
    if cell.border is not None and cell.border.bottom is not None and cell.border.bottom.style:
        style.append("border-bottom:1px solid #000")
    if cell.border is not None and cell.border.top is not None and cell.border.top.style:
        style.append("border-top:1px solid #000")
    align = cell.alignment
    horizontal = align.horizontal if align is not None else None
    numeric = isinstance(cell.value, int | float | dt.date) and not isinstance(cell.value, bool)
    if horizontal in ("left", "right", "center"):
        style.append(f"text-align:{horizontal}")
    elif numeric:
        style.append("text-align:right")
    if align is not None and align.wrap_text:
        style.append("white-space:normal")
    elif spill and isinstance(cell.value, str):
        style.append("overflow:visible;position:relative;z-index:1")
    if align is not None and align.vertical in ("top", "center"):
        style.append(f"vertical-align:{'middle' if align.vertical == 'center' else 'top'}")
    attr = f' style="{";".join(style)}"' if style else ""
    return f"<td{attr}>{html.escape(text)}</td>"


CSS = """
body { font-family: Calibri, Carlito, 'Liberation Sans', Arial, sans-serif; font-size: 14.7px;
       margin: 0; background: #fff; color: #000; }
.file { background: #217346; color: #fff; padding: 4px 10px; font-size: 13px; }
table.grid { border-collapse: collapse; table-layout: fixed; }
table.grid td, table.grid th { border: 1px solid #d4d4d4; padding: 1px 4px; height: 19px;
       white-space: nowrap; overflow: hidden; text-overflow: clip; vertical-align: bottom; }
table.grid th { background: #f3f3f3; color: #444; font-weight: normal; font-size: 12px;
       text-align: center; }
tr.frozen td, tr.frozen th { border-bottom: 2px solid #9a9a9a; }
.tabs { border-top: 1px solid #bbb; background: #f3f3f3; padding: 0 0 0 40px; }
.tab { display: inline-block; padding: 3px 14px; font-size: 12px; color: #333; }
.tab.on { background: #fff; color: #217346; font-weight: bold;
          border-bottom: 2px solid #217346; }
.more { color: #666; font-size: 12px; margin: 4px 40px; }
"""
