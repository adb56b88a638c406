"""The budgets stage at the national practice count gives what it gave practice by practice:
explanations built for every practice at once carry every term of every line, the text
wrapped as textwrap wraps it, group statements written from each group's own rows hold the
cells written from every practice's, and budget lines recorded in one INSERT read back as
given (issue 17; docs/performance.md, "The budgets stage at the national practice count")."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import openpyxl
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pbc.budgets import group_budgets, parse_policy, phase_budgets, set_budgets
from pbc.budgets.explain import explain_all, wrap
from pbc.budgets.money import format_pounds
from pbc.decisions import DecisionStore, Line
from pbc.reports.budget_statement import StatementContext, group_statement
from pbc.services.budgets import budget_phasing, write_statements
from pbc.services.principal import Principal

LINES = ("elective_inpatient", "ae")
CODES = [f"P{i:03d}" for i in range(7)]


def _economy() -> tuple[object, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Seven practices, two lines, caps binding, one opt-out, a new practice, and groups
    whose members move during the year: the result, the practices, the membership windows
    and a seasonal profile."""
    policy = parse_policy({
        "financial_year": "2025/26", "scope": list(LINES),
        "envelope": {line: {"uplift_percent": 3} for line in LINES},
        "top_slice": [{"name": "reserve", "percent": 1}],
        "fair_share": {line: {"method": "weighted_capitation"} for line in LINES},
        "pace_of_change": {"pace": 0.5, "floor_percent": -2, "ceiling_percent": 6},
        "opt_out": [{"code": "P001", "service_lines": ["ae"], "reason": "test opt-out"}],
    })
    wp = [100.0, 250.0, 80.0, 400.0, 120.0, 10.0, 300.0]
    pounds = [1000.0, 900.0, 2000.0, 1500.0, 700.0, 0.0, 2500.0]  # P005 is new
    fair = pd.concat([pd.DataFrame({"practice_code": CODES, "service_line": line,
                                    "weighted_population": wp}) for line in LINES])
    spend = pd.concat([pd.DataFrame({"practice_code": CODES, "service_line": line,
                                     "spend": [p * (k + 1) for p in pounds]})
                       for k, line in enumerate(LINES)])
    practices = pd.DataFrame({"practice_code": CODES,
                              "group_code": ["G1", "G1", "G2", "G2", "G3", "G3", "G1"]})
    windows = pd.DataFrame({
        "practice_code": ["P000", "P001", "P002", "P003", "P004", "P005", "P006", "P006"],
        "group_code": ["G1", "G1", "G2", "G2", "G3", "G3", "G1", "G2"],
        "valid_from": ["2020-01-01"] * 7 + ["2025-10-01"],
        "valid_to": [None] * 6 + ["2025-09-30", None]})
    result = set_budgets(policy, fair, spend, practices=practices, practice_groups=windows)
    profile = pd.DataFrame([(line, m, (m + k) / sum(x + k for x in range(1, 13)))
                            for k, line in enumerate(LINES) for m in range(1, 13)],
                           columns=["service_line", "month", "share"])
    return result, practices, windows, profile


def test_every_term_of_every_line_is_in_each_explanation() -> None:
    """Each practice's explanation, built with every other at once, has every step of the
    budget formula for each of its lines, with the frame's figure: a term dropped (or
    shown from another practice's row) fails here."""
    result, *_ = _economy()
    frame = result.frame  # type: ignore[attr-defined]
    every = explain_all(result)  # type: ignore[arg-type]
    assert sorted(every) == CODES
    money = ("fair_share", "prior_spend", "historic", "target", "calculated_budget",
             "top_slice_share", "budget")
    steps = ("method", "population", "need_index",
             "weighted_population", "weighted_share", "envelope", "top_slices",
             "unattributed", "available", "fair_share", "prior_spend", "uplift", "historic",
             "pace", "target", "floor", "ceiling", "cap", "scale_factor",
             "calculated_budget", "top_slice_share", "opted_out", "budget",
             "distance_from_target")
    for row in frame.itertuples():
        explanation = every[row.practice_code]
        line = explanation.line(row.service_line)
        assert [s.key for s in line.steps] == list(steps)
        shown = {s.key: s.value for s in line.steps}
        for col in money:
            assert shown[col] == format_pounds(int(getattr(row, col))), (row, col)
        for col in ("floor", "ceiling"):
            v = getattr(row, col)
            assert shown[col] == ("none" if pd.isna(v) else format_pounds(int(v)))
        assert shown["population"] == ("n/a" if pd.isna(row.population)
                                       else f"{row.population:,.0f}")
        assert shown["opted_out"] == ("yes" if row.opted_out else "no")
        text = explanation.to_text()
        for s in line.steps:
            assert s.label in text and s.value in text
    assert "test opt-out" in every["P001"].to_text()
    assert every["P005"].line("ae").step("cap").value == "fair share (new)"


words = st.text(alphabet="ab -\t\n\u00a0x", min_size=0, max_size=90)


@settings(max_examples=300, deadline=None)
@given(text=words, width=st.integers(8, 80), first=st.sampled_from(["", "  ", " " * 6]),
       later=st.sampled_from(["", "    ", " " * 6]), hyphens=st.booleans())
def test_wrap_gives_textwraps_lines(text: str, width: int, first: str, later: str,
                                    hyphens: bool) -> None:
    assert wrap(text, width, initial_indent=first, subsequent_indent=later,
                break_on_hyphens=hyphens) == textwrap.wrap(
        text, width, initial_indent=first, subsequent_indent=later,
        break_on_hyphens=hyphens)


def _cells(path: Path) -> dict[str, list[tuple[object, ...]]]:
    book = openpyxl.load_workbook(path)
    return {ws.title: list(ws.iter_rows(values_only=True)) for ws in book.worksheets}


def test_group_statements_from_each_groups_rows_hold_the_same_cells(tmp_path: Path) -> None:
    """write_statements splits the phased budgets by group once; each group's workbook has
    the cells of the one written from every practice's rows (the path before), including a
    practice that moves group in October."""
    result, practices, windows, profile = _economy()
    frame = result.frame  # type: ignore[attr-defined]
    monthly = phase_budgets(frame, profile)
    assert not group_budgets(frame, practices, practice_groups=windows,
                             financial_year="2025-26", monthly=monthly).empty
    phasing = budget_phasing(result, monthly, practices, windows, "Q1",  # type: ignore[arg-type]
                             profile, 1)
    context = StatementContext(financial_year="2025-26", version=1, status="draft",
                               commissioner_code="Q1", source="test",
                               produced=dt.datetime(2025, 3, 1, tzinfo=dt.UTC))
    files = write_statements(result, monthly, phasing, tmp_path / "new",  # type: ignore[arg-type]
                             context, profile=profile)
    groups = sorted(p for p in files if p.name.startswith("group_"))
    assert [p.name for p in groups] == [f"group_{g}_2025-26_v1.xlsx" for g in ("G1", "G2", "G3")]
    everyone = phasing[phasing["kind"] == "practice"]
    for path in groups:
        code = path.name.split("_")[1]
        old = group_statement(tmp_path / "old" / path.name, code, frame, everyone, profile,
                              context)
        assert _cells(path) == _cells(old), code


def test_budget_lines_recorded_at_once_read_back_as_given(tmp_path: Path) -> None:
    who = Principal("finance", "commissioner", "Q1")
    lines = [Line(f"P{i:04d}", line, 100 * i + k, 90 * i, None if i % 3 else 80 * i)
             for i in range(400) for k, line in enumerate(LINES)]
    with DecisionStore(f"sqlite:///{tmp_path / 'decisions.sqlite'}") as store:
        assert store.record_budgets(who, "2025-26", lines, reason="v1") == 1
        assert store.record_budgets(who, "2025-26", lines[:3], reason="v2") == 2
        assert store.lines("2025-26", 1) == lines  # in the order given
        assert store.lines("2025-26", 2) == lines[:3]
        event = next(e for e in store.audit_log() if e.action == "record_budgets")
        assert json.loads(event.detail) == {
            "reason": "v1", "lines": len(lines),
            "total_pence": sum(x.budget_pence for x in lines)}
