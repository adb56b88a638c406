"""A practice's case-finding list as a workbook in the house style: the patients at highest
risk of an emergency admission, ranked, with the reasons a clinician can act on; the
reference date and the model version in the title block; readable by owner and group only
(patients' rows)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from pbc.reports.workbook import Column, TitleBlock, Workbook

COLUMNS = [
    Column("practice_rank", "Rank in the practice", "general"),
    Column("patient_id", "Patient"),
    Column("age", "Age", "general"),
    Column("sex", "Sex"),
    Column("risk", "Risk of an emergency admission in the next 12 months", "percent"),
    Column("segment", "Risk segment"),
    Column("population_rank", "Rank among all the commissioner's patients", "general"),
    Column("top_factors", "Main reasons", width=60),
    Column("emergency_admissions_12m", "Emergency admissions in the last 12 months", "general"),
    Column("long_term_conditions", "Long-term conditions", "general"),
]


def case_finding_workbook(path: Path, rows: pd.DataFrame, *, practice: str, source: str,
                          mode: int | None = None) -> Path:
    """Write the list (``rows`` as :func:`pbc.risk.casefinding.case_finding_frame` gives
    them, one practice, one model and reference date)."""
    frame = rows.assign(risk=rows["risk_percent"].astype(float) / 100)
    ref = sorted({str(pd.Timestamp(d).date()) for d in rows["reference_date"]}) \
        if len(rows) else []
    models = sorted({str(m) for m in rows["model_version"]}) if len(rows) else []
    if len(ref) > 1 or len(models) > 1:
        raise ValueError(f"{path}: a list holds one model's scores at one date, not "
                         f"{', '.join(ref + models)}")
    period = (f"the 12 months after {dt.date.fromisoformat(ref[0]).strftime('%d %B %Y')}"
              if ref else "no patients scored")
    title = TitleBlock(title="Patients at highest risk of emergency admission",
                       organisation=practice, period=period, source=source,
                       version=f"Risk model {models[0]}" if models else None)
    with Workbook(path, title, mode=mode) as wb:
        wb.table("Case-finding list", frame, COLUMNS, totals=None, notes=[
            "Confidential: patients' details, for the practice's clinical team only.",
            "Risk is the model's probability of at least one emergency admission in the next "
            "12 months; reasons are the largest contributions to this patient's score.",
            "How well the model works, and for whom less well: pbc risk report."])
    return path
