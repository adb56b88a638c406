"""The benchmark workbook: one indicator at one level, in the house style.

Sheets: **Benchmark** (one row per practice, group or commissioner, the name beside the
code, the figures with their 95% limits, the funnel judgement, the comparison with England,
percentile and potential savings; the numerator and denominator totalled where no cell is
suppressed), **Monthly** (the monthly series with its SPC limits and signals, months as
``Apr 2025``) and **Indicator** (the definition, the source, England's value with its
period, and how the table was judged).

Headers are words, not column names; a column the table has and this module does not name
is still written, under its own name made readable, so nothing is dropped. Suppressed cells
arrive as ``*`` (:data:`pbc.services.suppression.MARKER`) and stay ``*``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from pbc.indicators.definition import Indicator
from pbc.indicators.wording import compared
from pbc.reports.workbook import Column, Kind, TitleBlock, Workbook, month_label

LEVEL_NAMES = {"practice": "Practice", "group": "Group", "commissioner": "Commissioner"}


def _measure_label(ind: Indicator, which: str) -> tuple[str, Kind]:
    m = ind.numerator if which == "numerator" else ind.denominator
    if m.population is not None:
        return ("Registered patients (person-years)", "number")
    what = {"apc": "admissions", "op": "outpatient attendances", "ae": "A&E attendances",
            "prescribing": "prescribing lines"}.get(str(m.activity), str(m.activity))
    if m.sum is not None:
        return (f"{which.capitalize()}: sum of {m.sum.replace('_', ' ')} ({what})",
                "money" if "cost" in m.sum or "price" in m.sum else "number")
    return (f"{which.capitalize()}: {what}", "count")


def _labels(ind: Indicator, level: str) -> dict[str, tuple[str, Kind]]:
    unit = ind.unit
    return {
        "numerator": _measure_label(ind, "numerator"),
        "denominator": _measure_label(ind, "denominator"),
        "value": (f"Value ({unit})", "number"),
        "lower_95": ("Lower 95% limit", "number"),
        "upper_95": ("Upper 95% limit", "number"),
        "observed": ("Observed", "count"),
        "expected": ("Expected (commissioner's age-sex rates)", "number"),
        "isr": ("Indirectly standardised ratio (commissioner = 100)", "number"),
        "isr_lower_95": ("Standardised ratio, lower 95% limit", "number"),
        "isr_upper_95": ("Standardised ratio, upper 95% limit", "number"),
        "dsr_observed": ("Observed (for the standardised rate)", "count"),
        "dsr": (f"Directly standardised rate ({unit})", "number"),
        "dsr_lower_95": ("Standardised rate, lower 95% limit", "number"),
        "dsr_upper_95": ("Standardised rate, upper 95% limit", "number"),
        "dsr_denominator": ("Standard population", "number"),
        "significance": ("Compared with the commissioner (funnel)", "text"),
        "significance_unadjusted": ("Compared, without the overdispersion adjustment", "text"),
        "national_value": (f"England ({unit})", "number"),
        "ratio_to_national": ("Ratio to England (England = 100)", "number"),
        "ratio_to_national_lower_95": ("Ratio to England, lower 95% limit", "number"),
        "ratio_to_national_upper_95": ("Ratio to England, upper 95% limit", "number"),
        "percentile": (f"Percentile among {level}s", "number"),
        "decile": ("Decile (1 = lowest)", "count"),
        "saving_at_p25": ("Potential saving if at the 25th percentile (numerator units)",
                          "number"),
        "saving_at_p10": ("Potential saving if at the 10th percentile (numerator units)",
                          "number"),
        "financial_year": ("Financial year", "text"),
        "month_label": ("Month", "text"),
        "period": ("Period", "text"),
        "mean": ("Centre line (mean)", "number"),
        "lpl": ("Lower process limit", "number"),
        "upl": ("Upper process limit", "number"),
        "special_cause_type": ("SPC signal", "text"),
    }


#: columns that hold one value for the whole table: shown on the Indicator sheet instead
TABLE_WIDE = ("indicator", "judged_on", "limits", "phi", "tau2")
#: columns a reader does not need (repeats of another column)
LEFT_OUT = ("point_type", "month")


def _columns(frame: pd.DataFrame, ind: Indicator, level: str, key: str,
             names: Mapping[str, str]) -> tuple[pd.DataFrame, list[Column]]:
    labels = _labels(ind, level)
    out = frame.drop(columns=[c for c in (*TABLE_WIDE, *LEFT_OUT) if c in frame.columns])
    if "significance_unadjusted" in out.columns and "significance" in out.columns:
        order = [c for c in out.columns if c != "significance_unadjusted"]
        order.insert(order.index("significance") + 1, "significance_unadjusted")
        out = out[order]
    for col in ("significance", "significance_unadjusted"):  # in words, with polarity
        if col in out.columns:
            out[col] = [compared(ind, v) for v in out[col]]
    what = LEVEL_NAMES.get(level, level.capitalize())
    out.insert(list(out.columns).index(key) + 1, "unit_name",
               [names.get(str(c)) for c in out[key]])
    columns = [Column(key, f"{what} code"), Column("unit_name", what)]
    for col in out.columns:
        if col in (key, "unit_name"):
            continue
        label, kind = labels.get(col, (col.replace("_", " ").capitalize(), "text"))
        values = out[col]
        suppressed = bool(values.map(lambda v: isinstance(v, str)).any()) and kind != "text"
        summed = col in ("numerator", "denominator") and not suppressed
        columns.append(Column(col, label, kind, total=summed))
    return out, columns


def benchmark_workbook(path: Path, ind: Indicator, level: str, table: pd.DataFrame,
                       series: pd.DataFrame | None, about: list[tuple[str, str]], *,
                       organisation: str, financial_year: str | None, source: str,
                       names: Mapping[str, str] | None = None,
                       produced: dt.datetime | None = None,
                       notes: list[str] | None = None) -> Path:
    """Write the workbook. ``table`` and ``series`` as the benchmark service gives them
    (suppressed cells already ``*``); ``about``: (field, value) rows for the Indicator
    sheet; ``names``: code -> name of the units."""
    names = names or {}
    key = table.columns[1]
    period = (f"Financial year {financial_year}" if financial_year
              else "every financial year in the warehouse")
    title = TitleBlock(title=ind.title, organisation=organisation,
                       period=period, source=source)
    if produced is not None:
        title = replace(title, produced=produced)
    wide = []
    for col, label in (("judged_on", "Judged on"), ("limits", "Funnel limits")):
        if col in table.columns and len(table):
            wide.append((label, str(table[col].iloc[0])))
    with Workbook(path, title) as wb:
        frame, cols = _columns(table, ind, level, key, names)
        wb.table("Benchmark", frame, cols, heading=f"{LEVEL_NAMES.get(level, level)}s, "
                 f"{financial_year or period.lower()}",
                 notes=[f"{a}: {b}" for a, b in wide] + list(notes or []))
        if series is not None:
            s = series.copy()
            if "month" in s.columns:
                s.insert(list(s.columns).index("month"), "month_label",
                         [f"{month_label(int(m))} {_calendar_year(str(fy), int(m))}"
                          for fy, m in zip(s["financial_year"], s["month"], strict=True)])
            frame, cols = _columns(s, ind, level, key, names)
            first, last = (str(series["period"].min()), str(series["period"].max())) \
                if "period" in series.columns and len(series) else ("", "")
            wb.table("Monthly", frame, cols, totals=None,
                     heading=f"Monthly series {first} to {last}, with SPC limits",
                     notes=["Special cause variation as NHS England's Making Data Count "
                            "(XmR chart, limits at the mean plus or minus 2.66 moving ranges)."])
        wb.summary("Indicator", [*about, *wide], heading="About the indicator")
    return path


def _calendar_year(financial_year: str, month: int) -> int:
    """The calendar year of month ``month`` (1 = April) of ``2025-26``."""
    start = int(financial_year[:4])
    return start if month <= 9 else start + 1


def about_rows(frame: pd.DataFrame) -> list[tuple[str, Any]]:
    """(field, value) rows of :func:`pbc.services.benchmarking.about`, labels in words."""
    return [(str(f).capitalize(), str(v)) for f, v in zip(frame["field"], frame["value"],
                                                          strict=True)]
