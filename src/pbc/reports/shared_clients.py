"""Shared clients of NHS and social care as a workbook in the house style
(docs/workbooks.md): aggregates only, already suppressed by
:mod:`pbc.services.shared_clients` (a suppressed count and its costs are empty cells)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pbc.reports.workbook import Column, TitleBlock, Workbook

#: counts are not totalled: a suppressed cell would make a column's sum a false figure
TABLE = [
    Column("code", "Neighbourhood, segment or council"),
    Column("care_type", "Care type"),
    Column("people", "People", "count", total=False),
    Column("nhs_cost", "NHS hospital cost (tariff value)", "money", total=False),
    Column("social_care_cost", "Social care cost", "money", total=False),
]
OPPORTUNITIES = [
    Column("code", "Opportunity"),
    Column("description", "Who", width=60),
    Column("people", "People", "count", total=False),
    Column("emergency_admissions", "Emergency admissions", "count", total=False),
    Column("nhs_cost", "NHS hospital cost (tariff value)", "money", total=False),
    Column("social_care_cost", "Social care cost", "money", total=False),
]
SHEETS = (("neighbourhood", "By neighbourhood"), ("risk_segment", "By risk segment"),
          ("council", "Council"))


def shared_clients_workbook(path: Path, report: Any, *, source: str) -> Path:
    """Write a :class:`pbc.services.shared_clients.SharedClients`."""
    from pbc.services.shared_clients import summary_lines

    title = TitleBlock(title="Shared clients of NHS and social care",
                       organisation=report.la_code, period=report.financial_year,
                       source=source)
    note = (f"Counts of people from 1 to {report.threshold} are suppressed (empty), with "
            "secondary suppression; a hidden count hides its costs.")
    with Workbook(path, title) as wb:
        wb.summary("Summary", [(f"Line {i + 1}", s)
                               for i, s in enumerate(summary_lines(report))],
                   notes=["Methods and rules: docs/local-authorities.md, Shared clients."])
        for table, sheet in SHEETS:
            frame = report.table(table)
            if table == "risk_segment" and not report.scored:
                continue
            frame = frame.astype(object).where(frame.notna(), None)
            wb.table(sheet, frame, TABLE, totals=None, notes=[note])
        opps = report.table("opportunity")
        described = {o.name: o.description for o in report.opportunities}
        opps = opps.assign(description=opps["code"].map(described))
        opps = opps.astype(object).where(opps.notna(), None)
        wb.table("Opportunities", opps, OPPORTUNITIES, totals=None, notes=[
            note, "Opportunities: groups of shared clients for joint commissioning, the "
            "largest combined cost first.", *report.notes])
    return path
