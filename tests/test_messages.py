"""Messages a user reads: access refusals name the command to use, long paths are never cut
mid-name, and the tables pbc prints fit an 80-column terminal with a totals row (rendered by
Rich to a string at width 80, as a terminal shows them)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from rich.console import Console

from pbc.budgets import parse_policy, set_budgets
from pbc.services.principal import AccessDenied, Principal


def _console(width: int = 80) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=width, color_system=None), buf


def test_access_refusals_name_the_command_not_a_function() -> None:
    from pbc.services.risk import _require_own_practice

    group = Principal("u", "group", "G1")
    with pytest.raises(AccessDenied) as e:
        _require_own_practice(group, "A81001")
    text = str(e.value)
    assert "pbc risk list A81001 --as practice:A81001" in text and "pbc risk segments" in text
    assert "segment_counts" not in text and not re.search(r"\b[a-z]+_[a-z_]+\(", text)
    other = Principal("u", "practice", "A81002")
    with pytest.raises(AccessDenied, match=r"pbc risk list A81002 --as practice:A81002"):
        _require_own_practice(other, "A81001")


def test_budget_setting_refusal_names_the_command(tmp_path: Path) -> None:
    from pbc.services.budgets import set_indicative_budgets
    from pbc.warehouse import Warehouse

    with pytest.raises(AccessDenied, match=r"pbc budgets set --policy FILE --as "
                                           r"commissioner:CODE"):
        set_indicative_budgets(Warehouse(tmp_path / "w"), tmp_path / "p.toml",
                               Principal("u", "practice", "A81001"))


LONG = Path("/tmp") / ("a-very-long-folder-name-that-goes-on-" * 3) / "statements" / \
    "practice_A81001_budget_statement_2025-26_version_12.xlsx"


def test_a_long_path_is_never_cut_mid_name() -> None:
    from pbc.cli import _say

    con, buf = _console(40)
    _say(f"wrote {LONG}", con)
    assert f"wrote {LONG}" in buf.getvalue()  # whole, on one line, for the terminal to fold


def test_an_error_keeps_brackets_and_paths_whole(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from pbc import cli

    with pytest.raises(typer.Exit):
        cli._fail(f"{LONG}: row 3: column [x] is not a number")
    err = capsys.readouterr().err
    assert f"{LONG}: row 3: column [x] is not a number" in err


def _run() -> SimpleNamespace:
    pol = parse_policy({
        "financial_year": "2025/26", "scope": ["non_elective", "ae", "prescribing"],
        "envelope": {"non_elective": {"pounds": "12345678.91"},
                     "ae": {"pounds": "2345678.12"}, "prescribing": {"pounds": "9876543.21"}},
        "fair_share": {k: {"method": "weighted_capitation"}
                       for k in ("non_elective", "ae", "prescribing")},
        "pace_of_change": {"pace": 0.5},
        "top_slice": [{"name": "reserve", "percent": 1}],
    })
    fs = pd.DataFrame([(p, line, w) for line in ("non_elective", "ae", "prescribing")
                       for p, w in (("A", 1.0), ("B", 2.0), ("C", 1.5))],
                      columns=["practice_code", "service_line", "weighted_population"])
    sp = pd.DataFrame([(p, line, v) for line in ("non_elective", "ae", "prescribing")
                       for p, v in (("A", 4e6), ("B", 5e6), ("C", 2e6))],
                      columns=["practice_code", "service_line", "spend"])
    return SimpleNamespace(result=set_budgets(pol, fs, sp), version=3)


def test_budget_summary_fits_80_columns_to_the_penny_with_totals() -> None:
    from pbc.budgets.money import format_pounds
    from pbc.cli import print_budget_summary

    run = _run()
    con, buf = _console()
    print_budget_summary(run, con)
    text = buf.getvalue()
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= 80 and "…" not in text
    s = run.result.summary
    total = [ln for ln in lines if ln.startswith("All ")]
    assert len(total) == 1
    for col in ("historic", "fair_share", "budget"):
        assert format_pounds(int(s[col].sum())) in total[0]
    flat = " ".join(lines)
    assert f"Envelope {format_pounds(int(s.envelope.sum()))} = budgets " \
           f"{format_pounds(int(s.budget.sum()))} + top-slices" in flat
    assert "Non-elective (emergency)" in flat and "non_elective" not in flat
    assert "A&E attendances" in flat


def test_case_finding_list_fits_80_columns_and_names_segments() -> None:
    from pbc.cli import print_case_finding

    rows = [{"practice_rank": i, "patient_id": f"P{i:010d}", "age": 80, "sex": "F",
             "risk_percent": 61.234, "segment": "very_high",
             "top_factors": "3 emergency admissions in 12 months; heart failure; COPD; "
                            "12 outpatient attendances in 12 months"} for i in range(1, 4)]
    con, buf = _console()
    print_case_finding(rows, "A81001", con)
    text = buf.getvalue()
    assert max(len(ln) for ln in text.splitlines()) <= 80 and "…" not in text
    assert "Very high" in text and "very_high" not in text
    assert "P0000000003" in text and "61.2%" in text


def test_segment_counts_are_a_table_not_markdown() -> None:
    from pbc.cli import print_segment_counts
    from pbc.services.risk import SegmentCounts

    counts = SegmentCounts("group", [
        {"code": "G1", "very_high": None, "high": 1234, "moderate": 5678, "low": 23456,
         "total": 30373},
        {"code": "G2", "very_high": 12, "high": 987, "moderate": 4321, "low": 19876,
         "total": 25196}], suppressed=True)
    con, buf = _console()
    print_segment_counts(counts, con)
    text = buf.getvalue()
    assert "|" not in text and "very_high" not in text and "Very high" in text
    assert "23,456" in text and "*" in text and "are suppressed" in text
