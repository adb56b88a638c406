"""The workbook house style, read back with openpyxl as another program would."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbc.reports.workbook import (
    MONTH_LABELS,
    Column,
    TitleBlock,
    Workbook,
    month_label,
    months_wide,
)

TITLE = TitleBlock(title="Indicative budget statement", organisation="A81001 Example Surgery",
                   period="Financial year 2025-26", source="pbc warehouse version 000007",
                   version="Version 2, agreed", produced=dt.datetime(2025, 3, 14, 9, 30))
COLUMNS = [Column("service_line", "Service line"), Column("spells", "Spells", "count"),
           Column("budget", "Budget", "money"), Column("share", "Share of budget", "percent")]


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"service_line": ["elective", "non_elective", "=1+1"],
                         "spells": [10, 20, 0],
                         "budget": [Decimal("1000.10"), Decimal("2500.25"), Decimal("-0.35")],
                         "share": [0.25, 0.75, 0.0]})


def test_a_table_sheet_reads_as_a_finished_table(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    with Workbook(path, TITLE) as wb:
        wb.table("Budget", _frame(), COLUMNS, notes=["Money in pounds."])
    book = openpyxl.load_workbook(path, data_only=True)
    ws = book["Budget"]
    assert ws["A1"].value == "Indicative budget statement: Budget"
    block = {ws.cell(r, 1).value: ws.cell(r, 2).value for r in range(2, 7)}
    assert block == {"Organisation": "A81001 Example Surgery",
                     "Period": "Financial year 2025-26", "Version": "Version 2, agreed",
                     "Produced": "14 March 2025 09:30 UTC",
                     "Source": "pbc warehouse version 000007"}
    header = 8
    assert [ws.cell(header, c).value for c in range(1, 5)] == [
        "Service line", "Spells", "Budget", "Share of budget"]
    assert ws.freeze_panes == f"A{header + 1}"
    assert ws.auto_filter.ref == f"A{header}:D{header + 3}"
    assert ws.cell(header + 1, 3).number_format == "£#,##0.00;[Red]-£#,##0.00"
    assert ws.cell(header + 1, 2).number_format == "#,##0"
    assert ws.cell(header + 1, 4).number_format == "0.0%"
    assert ws.cell(header + 3, 1).value == "=1+1"  # text stays text
    total = header + 4
    assert ws.cell(total, 1).value == "Total"
    assert ws.cell(total, 2).value == 30
    assert ws.cell(total, 3).value == pytest.approx(3500.00)
    assert ws.cell(total, 4).value is None  # shares are not summed
    formulas = openpyxl.load_workbook(path)["Budget"]
    assert formulas.cell(total, 3).value == f"=SUM(C{header + 1}:C{header + 3})"
    assert ws.cell(total + 2, 1).value == "Money in pounds."
    assert ws.column_dimensions["A"].width >= len("non_elective")
    assert ws.page_setup.orientation == "landscape"


def test_a_summary_sheet_and_the_sheet_order(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    with Workbook(path, TITLE) as wb:
        wb.summary("Summary", [("Budget 2025-26", (Decimal("1234567.89"), "money")),
                               ("Change on last year", "up 3.2%")], notes=["In short."])
        wb.table("Budget", _frame(), COLUMNS)
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Summary", "Budget"]
    ws = book["Summary"]
    assert ws["A8"].value == "Budget 2025-26"
    assert ws["B8"].value == pytest.approx(1234567.89)
    assert ws["B8"].number_format.startswith("£#,##0.00")
    assert ws["B9"].value == "up 3.2%"
    assert ws["A11"].value == "In short."


def test_a_failure_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    path.write_bytes(b"the agreed statement")
    with pytest.raises(KeyError, match="no column nope"), Workbook(path, TITLE) as wb:
        wb.table("Budget", _frame(), [Column("nope", "Nope")])
    assert path.read_bytes() == b"the agreed statement"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xlsx"]


def test_two_sheets_with_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="two sheets named"), \
            Workbook(tmp_path / "x.xlsx", TITLE) as wb:
        wb.table("Budget", _frame(), COLUMNS)
        wb.table("Budget", _frame(), COLUMNS)


def test_months_are_april_to_march_and_every_month_is_shown() -> None:
    assert month_label(1) == "Apr" and month_label(12) == "Mar"
    with pytest.raises(ValueError):
        month_label(13)
    long = pd.DataFrame({"line": ["a", "a", "b"], "month": [1, 12, 6],
                         "budget": [10.0, 5.0, 7.0]})
    wide, cols = months_wide(long, ["line"], "budget")
    assert list(wide.columns) == ["line", *MONTH_LABELS, "Year"]
    assert wide.set_index("line").loc["a", "Mar"] == 5.0
    assert wide.set_index("line").loc["b", "Sep"] == 7.0
    assert wide.set_index("line").loc["b", "Apr"] == 0
    assert list(wide.Year) == [15.0, 7.0]
    assert [c.label for c in cols][-1] == "Year"


@settings(max_examples=25, deadline=None)
@given(st.lists(st.decimals(min_value=-10**9, max_value=10**9, places=2,
                            allow_nan=False, allow_infinity=False), min_size=1, max_size=30))
def test_the_totals_row_is_the_sum_to_the_penny(tmp_path_factory: pytest.TempPathFactory,
                                                amounts: list[Decimal]) -> None:
    path = tmp_path_factory.mktemp("wb") / "t.xlsx"
    frame = pd.DataFrame({"code": [f"P{i}" for i in range(len(amounts))], "amount": amounts})
    with Workbook(path, TITLE) as wb:
        wb.table("T", frame, [Column("code", "Practice"), Column("amount", "Amount", "money")])
    ws = openpyxl.load_workbook(path, data_only=True)["T"]
    total_row = 8 + len(amounts) + 1
    assert ws.cell(total_row, 1).value == "Total"
    assert Decimal(str(ws.cell(total_row, 2).value)) == sum(amounts, Decimal(0))
