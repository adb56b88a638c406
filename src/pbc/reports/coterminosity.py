"""Coterminosity and shared clients as workbooks in the house style (docs/workbooks.md).

Only aggregates reach these workbooks: the services (:mod:`pbc.services.coterminosity`,
:mod:`pbc.services.shared_clients`) have already limited and suppressed them; a suppressed
count is an empty cell, as in the CSV files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pbc.reports.workbook import Column, TitleBlock, Workbook

SCORE_SHEET = [
    Column("grouping", "Grouping"),
    Column("group_code", "Group or cluster"),
    Column("practices", "Practices", "count"),
    Column("patients", "Patients with a known neighbourhood", "count"),
    Column("unknown_residence", "Patients with no known neighbourhood", "count"),
    Column("main_local_authority", "Main council"),
    Column("local_authority_share", "Share in the main council", "percent"),
    Column("councils", "Councils its patients live in", "general"),
    Column("spans", "Spans several councils"),
    Column("main_neighbourhood", "Main neighbourhood"),
    Column("neighbourhood_share", "Share in the main neighbourhood", "percent"),
    Column("neighbourhood_index", "Herfindahl index across neighbourhoods", "ratio"),
    Column("below", "Below the minimum list size"),
]
SPREAD_SHEET = [
    Column("group_code", "Group"),
    Column("local_authority_code", "Council"),
    Column("neighbourhood_code", "Neighbourhood"),
    Column("patients", "Patients", "count"),
    Column("share", "Share of the group's patients", "percent"),
]
HOOD_SHEET = [
    Column("local_authority_code", "Council"),
    Column("neighbourhood_code", "Neighbourhood"),
    Column("group_code", "Group"),
    Column("patients", "Residents", "count"),
    Column("share", "Share of the neighbourhood's residents", "percent"),
]
CLUSTER_SHEET = [
    Column("practice_code", "Practice"),
    Column("current_group", "Group now"),
    Column("home_local_authority", "Home council"),
    Column("home_neighbourhood", "Home neighbourhood"),
    Column("cluster", "Suggested cluster"),
]
COUNCIL_SHEET = [
    Column("neighbourhood_code", "Neighbourhood"),
    Column("group_code", "Group"),
    Column("patients", "Residents", "count", total=False),
    Column("share", "Share of the neighbourhood's residents", "percent"),
]


def _yes(v: Any) -> str:
    return "yes" if bool(v) else ""


def coterminosity_workbook(path: Path, report: Any, *, source: str) -> Path:
    """Write a :class:`pbc.services.coterminosity.CoterminosityReport`."""
    from pbc.services.coterminosity import summary_lines

    who = report.principal.organisation
    title = TitleBlock(title="Coterminosity of practice groups with councils",
                       organisation=who, period=f"registered list on {report.on:%d %B %Y}",
                       source=source)
    with Workbook(path, title) as wb:
        wb.summary("Summary", [(f"Line {i + 1}", s)
                               for i, s in enumerate(summary_lines(report))],
                   notes=["Methods and rules: docs/local-authorities.md, Coterminosity."])
        if report.council is not None:
            frame = report.council.astype(object).where(report.council.notna(), None)
            wb.table("Residents by group", frame, COUNCIL_SHEET, totals=None, notes=[
                f"Counts from 1 to {report.threshold} are suppressed (empty), with "
                "secondary suppression so none can be worked out from the totals."])
            return path
        scores = report.scores_frame().assign(
            spans=lambda f: f["spans_councils"].map(_yes),
            below=lambda f: f["below_minimum"].map(_yes))
        wb.table("Scores", scores, SCORE_SHEET, totals=None)
        wb.table("Groups by neighbourhood", report.by_group, SPREAD_SHEET, totals=None)
        wb.table("Neighbourhoods by group", report.by_neighbourhood, HOOD_SHEET, totals=None)
        wb.table("Suggested clusters", clusters_frame(report), CLUSTER_SHEET, totals=None,
                 notes=["Each practice joins the neighbourhood of its home council holding "
                        "most of its patients; small clusters join a neighbour in the same "
                        "council (docs/local-authorities.md)."])
    return path


def clusters_frame(report: Any) -> pd.DataFrame:
    """Practice, its group now, its home council and neighbourhood, its suggested cluster."""
    rg = report.regrouping
    now = rg.current_group
    rows = []
    for practice, cluster in rg.assignment.items():
        la, hood = rg.homes.get(practice, (None, None))
        rows.append({"practice_code": practice, "current_group": now.get(practice),
                     "home_local_authority": la, "home_neighbourhood": hood,
                     "cluster": cluster})
    return pd.DataFrame(rows, columns=[c.key for c in CLUSTER_SHEET])
