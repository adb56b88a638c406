"""Every workbook pbc writes, opened with openpyxl as another program would: the house
style (title block, frozen header, autofilter, formats, widths, totals), names beside
codes, and the budget statement's figures reconciled with the warehouse's budget tables.

With Debian's chromium, the run also saves screenshots (PNG) of a statement, a group
statement, a benchmark workbook, an export, a case-finding list and each chart type in
``build/screenshots/`` (``make screenshots`` copies a set into ``docs/screenshots/``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from conftest import require
from pbc.decisions import DecisionStore, Line
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse, WarehouseError
from workbooks import (
    SCREENSHOTS,
    check_house_style,
    chromium_ready,
    header_row,
    mode,
    money_columns_formatted,
    png_size,
    pounds,
    read_table,
    screenshot_sheets,
    summary,
    title_block,
    totals_row,
)

COMMISSIONER = Principal("analyst", "commissioner", "Q99")
POLICY = Path(__file__).resolve().parents[1] / "src" / "pbc" / "reference" / "budgets" / \
    "demo_policy.toml"
FY, PRIOR = "2026-27", "2025-26"


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    from pbc.services.pricing import run_pricing
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse.load import load

    base = tmp_path_factory.mktemp("workbooks")
    generate(SynthConfig(practices=6, groups=2, local_authorities=1, seed=5, years=2,
                         start_year=2024), base / "in")
    wh = Warehouse(base / "wh")
    load(base / "in", wh)
    run_pricing(wh)
    return wh


@pytest.fixture(scope="module")
def last_year(priced: Warehouse) -> dict[str, int]:
    """Last year's budget of A81000 (pence per service line), recorded as a draft: 98% of
    its spend that year on each line this year's policy covers."""
    from pbc.budgets import read_policy
    from pbc.pricing.schema import TARIFF_VALUE_SQL

    scope = "', '".join(read_policy(POLICY).scope)
    lines = dict(priced.query(
        f"SELECT service_line, CAST(round(sum({TARIFF_VALUE_SQL}) * 98) AS BIGINT) "
        f"FROM priced_activity WHERE practice_code = 'A81000' AND financial_year = '{PRIOR}' "
        f"AND price IS NOT NULL AND service_line IN ('{scope}') GROUP BY 1"))
    with DecisionStore.beside(priced.root) as store:
        store.record_budgets(COMMISSIONER, PRIOR, [
            Line("A81000", str(k), int(v)) for k, v in lines.items()],
            reason="last year's, for the test")
    return {str(k): int(v) for k, v in lines.items()}


@pytest.fixture(scope="module")
def statements(priced: Warehouse, last_year: dict[str, int],
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This year's budgets set after last year's was recorded, with the statements written
    where asked."""
    from pbc.services.budgets import set_indicative_budgets

    folder = tmp_path_factory.mktemp("statements") / "out"
    run = set_indicative_budgets(priced, POLICY, COMMISSIONER, statements=folder)
    assert run.version == 1 and run.statements == folder
    return folder


def _budget_table(wh: Warehouse, where: str) -> dict[str, Decimal]:
    row = wh.query(f"SELECT sum(budget), sum(fair_share), sum(prior_spend), sum(historic) "
                   f"FROM indicative_budgets WHERE {where}")[0]
    return dict(zip(("budget", "fair_share", "prior_spend", "historic"), row, strict=True))


def test_practice_statement_is_a_finished_product(priced: Warehouse, statements: Path) -> None:
    path = statements / f"practice_A81001_{FY}_v1.xlsx"
    book = check_house_style(path, title="Indicative budget statement")
    assert book.sheetnames == ["Summary", "Budget", "Monthly phasing", "Explanation"]
    ws = book["Summary"]
    block = title_block(ws)
    assert block["Organisation"] == "A81001 Practice 2 Medical Centre"  # the name beside
    assert block["Period"] == f"Financial year {FY} (April to March)"
    assert block["Version"] == "Draft version 1 (not agreed)"
    assert "pbc warehouse version" in block["Source"] and "demo_policy.toml" in block["Source"]
    s = summary(ws)
    assert s["Practice"] == "A81001 Practice 2 Medical Centre"
    assert s["Commissioner"].startswith("Q99 ")
    assert s["Group on 1 April"].startswith("G0")
    # the summary's figures are the warehouse's budget table, to the penny
    table = _budget_table(priced, "practice_code = 'A81001'")
    assert pounds(s[f"Indicative budget {FY}"]) == table["budget"]
    assert pounds(s[f"Fair share {FY}"]) == table["fair_share"]
    assert pounds(s[f"Spend {PRIOR} (priced at the national tariff)"]) == table["prior_spend"]
    assert pounds(s[f"Historic budget (spend {PRIOR} with the uplift)"]) == table["historic"]
    assert pounds(s["Difference from fair share"]) == table["budget"] - table["fair_share"]
    assert s["Last year's budget"] == \
        f"none: the practice has no budget in {PRIOR}, version 1, draft"
    labels = {ws.cell(r, 1).value: r for r in range(1, ws.max_row + 1)}
    assert ws.cell(labels[f"Indicative budget {FY}"], 2).number_format.startswith("£#,##0.00")
    assert ws.cell(labels["Difference from fair share (%)"], 2).number_format == "0.0%"
    words = s["In words"]
    assert words.startswith(f"Practice A81001's indicative budget for {FY} is £")
    assert "fair share of £" in words and "last year's spend of £" in words
    # the Budget sheet: one row per service line, its totals are the summary's figures
    budget = book["Budget"]
    rows = read_table(path, "Budget")
    lines = priced.query("SELECT count(*) FROM indicative_budgets "
                         "WHERE practice_code = 'A81001'")[0][0]
    assert len(rows) == lines and "Non-elective (emergency) admissions" in set(rows[
        "Service line"])
    totals = totals_row(budget)
    assert pounds(totals[f"Budget {FY}"]) == table["budget"]
    assert pounds(totals[f"Fair share {FY}"]) == table["fair_share"]
    money_columns_formatted(budget, [f"Budget {FY}", f"Fair share {FY}", f"Spend {PRIOR}"])
    # the monthly phasing: Apr..Mar, each line's year is its budget, the total the budget
    monthly = book["Monthly phasing"]
    top = header_row(monthly)
    assert [monthly.cell(top, c).value for c in range(2, 15)] == [
        "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Jan", "Feb", "Mar",
        "Year"]
    assert pounds(totals_row(monthly)["Year"]) == table["budget"]
    phased = read_table(path, "Monthly phasing")
    by_line = {r["Service line"]: pounds(r["Year"]) for _, r in phased.iterrows()}
    assert by_line == {r["Service line"]: pounds(r[f"Budget {FY}"]) for _, r in rows.iterrows()}
    # the explanation: a row per step, the same steps as the explanation object
    from pbc.services.budgets import explanation

    steps = read_table(path, "Explanation")
    assert list(steps.columns) == ["Service line", "Step", "Figure", "How it was computed"]
    assert len(steps) >= 10 * lines
    budget_steps = steps[steps["Step"] == "Indicative budget"]["Figure"].tolist()
    assert len(budget_steps) == lines and all(f in explanation(priced, "A81001")
                                              for f in budget_steps)


def test_last_years_budget_is_in_the_summary(priced: Warehouse, statements: Path,
                                             last_year: dict[str, int]) -> None:
    """A81000 had a budget last year (recorded, a draft): the summary compares this year's
    with it, in words and figures, and the Budget sheet shows it by line."""
    path = statements / f"practice_A81000_{FY}_v1.xlsx"
    s = summary(openpyxl.load_workbook(path, data_only=True)["Summary"])
    last = Decimal(sum(last_year.values())) / 100
    assert pounds(s[f"Last year's budget ({PRIOR}, version 1, draft)"]) == last
    table = _budget_table(priced, "practice_code = 'A81000'")
    assert pounds(s["Change on last year's budget"]) == table["budget"] - last
    assert s["Change on last year's budget (%)"] == pytest.approx(
        float((table["budget"] - last) / last))
    assert f"last year's budget of £{last:,.2f} ({PRIOR}, version 1, draft)" in s["In words"]
    rows = read_table(path, "Budget")
    ne = rows[rows["Service line"] == "Non-elective (emergency) admissions"]
    assert pounds(ne[f"Budget {PRIOR}"].iloc[0]) == Decimal(last_year["non_elective"]) / 100
    assert pounds(totals_row(openpyxl.load_workbook(path, data_only=True)["Budget"])[
        f"Budget {PRIOR}"]) == last


def test_group_statement_lists_its_practices(priced: Warehouse, statements: Path) -> None:
    groups = priced.query("SELECT group_code, sum(budget) FROM group_budgets GROUP BY 1 "
                          "ORDER BY 1")
    assert len(groups) == 2
    names = dict(priced.query("SELECT practice_code, practice_name FROM practices"))
    for code, total in groups:
        path = statements / f"group_{code}_{FY}_v1.xlsx"
        book = check_house_style(path, title="Group budget statement")
        assert book.sheetnames == ["Summary", "Practices", "Budget", "Monthly phasing"]
        assert title_block(book["Summary"])["Organisation"].startswith(f"{code} Locality")
        s = summary(book["Summary"])
        assert pounds(s[f"Indicative budget {FY}"]) == total
        practices = read_table(path, "Practices")
        members = {r[0] for r in priced.query(
            "SELECT DISTINCT practice_code FROM budget_phasing WHERE kind = 'practice' AND "
            f"group_code = '{code}'")}
        assert set(practices["Practice code"]) == members
        assert all(practices["Practice"] == practices["Practice code"].map(names))
        assert s["Practices"].startswith(f"{len(members)} ")
        assert pounds(totals_row(book["Practices"])[f"Budget in the group {FY}"]) == total
        assert pounds(totals_row(book["Budget"])[f"Budget {FY}"]) == total
        assert pounds(totals_row(book["Monthly phasing"])["Year"]) == total
        fair = pounds(s[f"Fair share {FY}"])
        assert pounds(totals_row(book["Practices"])["Fair share in the group"]) == fair
        assert "monthly phasing by group is not in the warehouse" in s["Last year's budget"]


def test_statement_files_carry_the_version_and_are_never_overwritten(
        priced: Warehouse, statements: Path) -> None:
    """A second setting into the same folder writes version 2's files beside version 1's;
    a file of the version about to be written already there stops the setting before
    anything is stored (warehouse and decision store unchanged)."""
    from pbc.services.budgets import set_indicative_budgets

    first = {p.name: p.read_bytes() for p in statements.iterdir()}
    assert f"indicative_budgets_{FY}_v1.csv" in first
    assert f"commissioner_held_{FY}_v1.csv" in first
    run = set_indicative_budgets(priced, POLICY, COMMISSIONER, statements=statements)
    assert run.version == 2
    assert {p.name: p.read_bytes() for p in statements.iterdir()
            if p.name in first} == first
    assert all(p.name.endswith((f"{FY}_v2.xlsx", f"{FY}_v2.csv")) for p in run.files)
    # version 2 agreed, then restated: version 3 is born agreed and says so
    with DecisionStore.beside(priced.root) as store:
        store.agree(COMMISSIONER, FY, 2)
    blocker = statements / f"group_G01_{FY}_v3.xlsx"
    blocker.write_bytes(b"an agreed statement kept by the finance team")
    before = priced.manifest()["version"]
    with pytest.raises(WarehouseError, match=r"group_G01_2026-27_v3.xlsx.*never overwrites"):
        set_indicative_budgets(priced, POLICY, COMMISSIONER, statements=statements,
                               reason="restated")
    assert priced.manifest()["version"] == before
    with DecisionStore.beside(priced.root) as store:
        assert store.next_version(FY) == 3
    assert blocker.read_bytes() == b"an agreed statement kept by the finance team"
    blocker.unlink()
    run = set_indicative_budgets(priced, POLICY, COMMISSIONER, statements=statements,
                                 reason="restated")
    block = title_block(openpyxl.load_workbook(
        statements / f"practice_A81001_{FY}_v3.xlsx")["Summary"])
    assert block["Version"] == "Version 3, agreed"


def test_benchmark_workbook_is_a_finished_product(priced: Warehouse, tmp_path: Path) -> None:
    from pbc.services.benchmarking import benchmark_indicator, write_result

    result = benchmark_indicator(priced, "emergency_admissions", level="practice")
    path = tmp_path / "ea.xlsx"
    write_result(result, path)
    book = check_house_style(path, title="Emergency admissions")
    assert book.sheetnames == ["Benchmark", "Monthly", "Indicator"]
    block = title_block(book["Benchmark"])
    assert block["Period"] == f"Financial year {PRIOR}"
    assert block["Organisation"].startswith("Q99 ")
    table = read_table(path, "Benchmark")
    names = dict(priced.query("SELECT practice_code, practice_name FROM practices"))
    assert list(table.columns[:2]) == ["Practice code", "Practice"]
    assert all(table["Practice"] == table["Practice code"].map(names))
    numerator = next(c for c in table.columns if c.startswith("Numerator"))
    shown = result.table.numerator
    if (shown.between(1, 7)).any():  # suppressed: no total of a column with hidden cells
        assert totals_row(book["Benchmark"]).get(numerator) is None
    else:
        assert totals_row(book["Benchmark"])[numerator] == shown.sum()
    ws = book["Benchmark"]
    top = header_row(ws)
    col = list(table.columns).index(numerator) + 1
    assert ws.cell(top + 1, col).number_format == "#,##0"
    monthly = read_table(path, "Monthly")
    assert monthly["Month"].iloc[0] == "Apr 2024"
    assert len(monthly) == len(result.series)  # type: ignore[arg-type]
    about = summary(book["Indicator"])
    assert about["Title"] == result.indicator.title
    # judgements in words with the indicator's polarity (fewer admissions are better)
    judged = table["Compared with the commissioner (funnel)"]
    expected = {"Not significant": "Similar", "High (0.025)": "Higher, worse (95%)",
                "High (0.001)": "Higher, worse (99.8%)", "Low (0.025)": "Lower, better (95%)",
                "Low (0.001)": "Lower, better (99.8%)"}
    assert judged.tolist() == [expected[str(v)] for v in result.table.significance]


def test_benchmark_workbook_suppressed_cells_stay_hidden(tmp_path: Path) -> None:
    """A count of 3 is ``*`` and its column has no total (a SUM would show the rest)."""
    from pbc.indicators.definition import load_indicators
    from pbc.services.benchmarking import BenchmarkResult, write_result

    ind = load_indicators()["emergency_admissions"]
    table = pd.DataFrame({"indicator": [ind.id] * 3, "practice": ["A", "B", "C"],
                          "numerator": [3.0, 40.0, 50.0], "denominator": [1000.0] * 3,
                          "value": [3.0, 40.0, 50.0]})
    result = BenchmarkResult(ind, "practice", table, None, financial_year="2025-26",
                             organisation="Q1", source="test", names={"A": "Alpha"})
    path = tmp_path / "b.xlsx"
    write_result(result, path)
    book = check_house_style(path)
    rows = read_table(path, "Benchmark")
    numerator = next(c for c in rows.columns if c.startswith("Numerator"))
    assert rows[numerator].tolist()[0] == "*"
    assert rows["Practice"].iloc[0] == "Alpha" and rows["Practice"].iloc[1:].isna().all()
    assert totals_row(book["Benchmark"]).get(numerator) is None


def test_export_workbook_names_table_version_and_time(priced: Warehouse,
                                                       tmp_path: Path) -> None:
    from pbc.services.export import export_table

    path = tmp_path / "rec.xlsx"
    rows = export_table(priced, "reconciliation", path, None)
    book = check_house_style(path, plain_headers=False, title="Warehouse table reconciliation")
    block = title_block(book.worksheets[0])
    assert f"version {priced.manifest()['version']}" in block["Source"]
    assert block["Organisation"] == "every row"
    assert len(read_table(path)) == rows
    produced = dt.datetime.strptime(block["Produced"], "%d %B %Y %H:%M UTC")
    assert abs(dt.datetime.now(dt.UTC).replace(tzinfo=None) - produced) < dt.timedelta(
        minutes=5)
    # patient-level rows: limited to the practice, and readable by owner and group only
    practice = Principal("gp", "practice", "A81001")
    path = tmp_path / "mine.xlsx"
    n = export_table(priced, "patients", path, practice)
    assert mode(path) == 0o640
    book = check_house_style(path, plain_headers=False)
    assert title_block(book.worksheets[0])["Organisation"] == \
        "rows where practice_code = 'A81001'"
    table = read_table(path)
    assert len(table) == n and set(table["practice_code"]) == {"A81001"}


def test_case_finding_workbook(tmp_path: Path) -> None:
    from pbc.reports.case_finding import case_finding_workbook

    rows = pd.DataFrame({
        "practice_rank": [1, 2], "patient_id": ["P1", "=P2"], "age": [81, 67],
        "sex": ["F", "M"], "risk_percent": [42.5, 30.1], "segment": ["very high", "high"],
        "population_rank": [3, 10], "top_factors": ["2 emergency admissions", "COPD"],
        "emergency_admissions_12m": [2, 0], "long_term_conditions": [3, 1],
        "reference_date": [dt.date(2026, 4, 1)] * 2, "model_version": ["m1"] * 2})
    path = case_finding_workbook(tmp_path / "list.xlsx", rows, practice="A81001 Example",
                                 source="test", mode=0o640)
    book = check_house_style(path, title="Patients at highest risk")
    block = title_block(book.worksheets[0])
    assert block["Period"] == "the 12 months after 01 April 2026"
    assert block["Version"] == "Risk model m1"
    table = read_table(path)
    assert table["Patient"].tolist() == ["P1", "=P2"]  # text stays text
    ws = book.worksheets[0]
    col = list(table.columns).index(
        "Risk of an emergency admission in the next 12 months") + 1
    cell = ws.cell(header_row(ws) + 1, col)
    assert cell.number_format == "0.0%" and cell.value == pytest.approx(0.425)
    assert mode(path) == 0o640


# ---------------------------------------------------------------------- screenshots
@pytest.mark.browser
def test_screenshots(priced: Warehouse, statements: Path, tmp_path: Path) -> None:
    """PNG screenshots a reviewer can look at without running anything: a practice's
    statement (every sheet), a group's, a benchmark workbook, an export and each chart
    type (funnel, caterpillar, SPC, deciles; the risk model's calibration plot)."""
    require(chromium_ready(), "Debian's chromium (/usr/bin/chromium) and playwright")
    import numpy as np

    from pbc.indicators.charts import save_chart
    from pbc.risk.charts import calibration_chart
    from pbc.risk.validation import validate
    from pbc.services.benchmarking import benchmark_indicator, write_charts, write_result
    from pbc.services.export import export_table

    statement = statements / f"practice_A81000_{FY}_v1.xlsx"
    group = statements / f"group_G01_{FY}_v1.xlsx"
    result = benchmark_indicator(priced, "emergency_admissions", level="practice")
    bench = tmp_path / "emergency_admissions.xlsx"
    write_result(result, bench)
    export = tmp_path / "reconciliation.xlsx"
    export_table(priced, "reconciliation", export, None)
    shots = [(statement, s, f"statement-{i}-{s.lower().replace(' ', '-')}") for i, s in
             enumerate(("Summary", "Budget", "Monthly phasing", "Explanation"), start=1)]
    shots += [(group, "Summary", "group-statement-1-summary"),
              (group, "Practices", "group-statement-2-practices"),
              (bench, "Benchmark", "benchmark-1-table"),
              (bench, "Monthly", "benchmark-2-monthly"),
              (bench, "Indicator", "benchmark-3-indicator"),
              (export, None, "export-reconciliation")]
    written = screenshot_sheets(shots)  # type: ignore[arg-type]
    charts = write_charts(result, SCREENSHOTS, highlight="A81000", fmt="png")
    assert sorted(c.stem.removeprefix("emergency_admissions_practice_") for c in charts) == [
        "caterpillar", "deciles", "funnel", "spc_A81000"]
    rng = np.random.default_rng(1)
    risk = rng.uniform(0, 0.6, 2000)
    admitted = (rng.uniform(size=2000) < risk).astype(int)
    report = validate(admitted, risk, rng.poisson(risk * 2), title="Calibration (example)")
    charts.append(save_chart(calibration_chart(report), SCREENSHOTS / "chart-calibration.png"))
    for png in [*written, *charts]:
        width, height = png_size(png)
        assert width >= 400 and height >= 100, png


@pytest.mark.parametrize(("value", "fmt", "shown", "colour"), [
    (1234567.891, "£#,##0.00;[Red]-£#,##0.00", "£1,234,567.89", None),
    (-0.35, "£#,##0.00;[Red]-£#,##0.00", "-£0.35", "red"),
    (1234567, "#,##0", "1,234,567", None),
    (12.25, "#,##0.0", "12.3", None),  # half away from zero (Python's format: 12.2)
    (2.675, "0.00", "2.68", None),  # as written (the double is 2.67499999...)
    (0.1234, "0.0%", "12.3%", None),
    (1.23456, "0.000", "1.235", None),
    (dt.datetime(2026, 4, 1), "d mmm yyyy", "1 Apr 2026", None),
    (dt.datetime(2026, 4, 1, 9, 5), "d mmm yyyy hh:mm", "1 Apr 2026 09:05", None),
    (3, "General", "3", None), (0.5, "General", "0.5", None), ("=1+1", "General", "=1+1", None),
])
def test_preview_shows_values_as_excel_does(value: object, fmt: str, shown: str,
                                            colour: str | None) -> None:
    from pbc.reports.preview import format_value

    assert format_value(value, fmt) == (shown, colour)


def test_preview_refuses_a_format_it_cannot_show() -> None:
    from pbc.reports.preview import PreviewError, format_value

    with pytest.raises(PreviewError, match="not previewed"):
        format_value(1.5, "# ?/?")
