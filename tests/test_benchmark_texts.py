"""Benchmarking in words: judgements with the indicator's polarity, units on savings, the
period and source in every table and chart title, England's comparator with its age, monthly
rates labelled annualised, an overdispersion note, and a printed table that fits 80 columns
with a totals row (rendered by Rich to a string, as a terminal shows it)."""

from __future__ import annotations

import datetime as dt
import io

import ibis
import pandas as pd
import pytest
from rich.console import Console

from pbc.indicators import wording
from pbc.indicators.benchmark import benchmark, monthly_series
from pbc.indicators.charts import caterpillar_chart, deciles_chart, funnel_chart, spc_chart
from pbc.indicators.definition import load_indicators

INDS = load_indicators()


def test_judgements_are_words_with_the_indicators_polarity() -> None:
    low_good, high_good = INDS["emergency_admissions"], INDS["day_case_rate"]
    neutral = INDS["elective_admissions"]
    assert low_good.low_is_good and high_good.low_is_good is False
    assert neutral.low_is_good is None
    assert wording.compared(low_good, "High (0.001)") == "Higher, worse (99.8%)"
    assert wording.compared(low_good, "Low (0.025)") == "Lower, better (95%)"
    assert wording.compared(high_good, "High (0.025)") == "Higher, better (95%)"
    assert wording.compared(high_good, "Low (0.001)") == "Lower, worse (99.8%)"
    assert wording.compared(neutral, "High (0.001)") == "Higher (99.8%)"
    assert wording.compared(neutral, "Not significant") == "Similar"
    assert wording.compared(low_good, "Not applicable") == "Not compared"
    assert wording.compared(low_good, None) == "Not compared"


def test_savings_say_their_unit_per_year() -> None:
    assert wording.saving_unit(INDS["emergency_admissions"]) == "admissions a year"
    assert wording.saving_unit(INDS["excess_bed_days"]) == "excess bed days a year"
    assert wording.saving_unit(INDS["spend_ae_per_weighted_patient"]) == "£ a year"
    assert wording.saving_unit(INDS["prescribing_cost_per_weighted_patient"]) == "£ a year"
    assert wording.saving_unit(INDS["emergency_readmissions_30d"]) == "readmissions a year"
    assert wording.saving_unit(INDS["ae_attendances"]) == "A&E attendances a year"


def test_england_comparator_carries_its_period_and_a_warning_when_older() -> None:
    ea = INDS["emergency_admissions"]  # England: 2017/18
    same = wording.national(ea, "2017-18")
    assert same is not None and "(2017/18;" in same and "Caution" not in same
    old = wording.national(ea, "2025-26")
    assert old is not None and old.endswith(
        "Caution: England's figure is 8 years older than the data (2025-26)")
    # a span of years counts from the year it ends in
    dc = wording.national(INDS["day_case_rate"], "2025-26")  # "2008-2013"
    assert dc is not None and "13 years older" in dc
    assert wording.national(INDS["excess_bed_days"], "2025-26") is None


def test_monthly_values_over_a_population_are_labelled_annualised() -> None:
    assert wording.monthly_unit(INDS["emergency_admissions"]) == \
        "per 1,000 patients, annualised"
    assert wording.monthly_unit(INDS["day_case_rate"]) == "%"  # a share: nothing to annualise


def _economy(rates: dict[str, float], patients: int = 2000) -> dict:
    """Practices of ``patients`` women aged 70, each with ``rate`` x patients emergency COPD
    admissions spread over the twelve months of 2025-26."""
    pats, spells = [], []
    for code, rate in rates.items():
        ids = [f"{code}-{i}" for i in range(patients)]
        pats += [{"patient_id": p, "practice_code": code, "sex": "F", "age": 70} for p in ids]
        for e in range(round(rate * patients)):
            month = e % 12 + 1
            day = dt.date(2025 + (month > 9), (month + 2) % 12 + 1, 10)
            spells.append({
                "spell_id": f"S{code}-{e}", "patient_id": ids[e % patients],
                "practice_code": code, "provider_code": "RTR", "admission_date": day,
                "discharge_date": day + dt.timedelta(days=2), "admission_method": "21",
                "patient_classification": "1", "primary_diagnosis": "J441",
                "hrg_code": "DZ65K", "financial_year": "2025-26", "month": month})
    practices = pd.DataFrame({"practice_code": list(rates), "group_code": "G1",
                              "commissioner_code": "Q99"})
    return {"practices": ibis.memtable(practices), "patients": ibis.memtable(pd.DataFrame(pats)),
            "apc_spells": ibis.memtable(pd.DataFrame(spells))}


@pytest.fixture(scope="module")
def result() -> object:
    from pbc.services.benchmarking import BenchmarkResult

    ind = INDS["emergency_admissions"]
    rates = {f"A81{i:03d}": r for i, r in enumerate(
        [0.05, 0.08, 0.09, 0.10, 0.10, 0.11, 0.12, 0.20])}
    tables = _economy(rates)
    table = benchmark(tables, ind)
    series = monthly_series(tables, ind, years=["2025-26"])
    return BenchmarkResult(ind, "practice", table, series)


def _render(result: object, monthly: bool = False) -> str:
    from pbc.cli import _print_benchmark

    buf = io.StringIO()
    _print_benchmark(result, monthly, Console(file=buf, width=80, color_system=None))
    return buf.getvalue()


def test_benchmark_table_has_its_year_and_judgements_in_words(result: object) -> None:
    table = result.table.set_index("practice")  # type: ignore[attr-defined]
    assert set(table.financial_year) == {"2025-26"}
    # with limits widened for overdispersion A81007 (ISR 188) is outside the 95% limits
    # only; A81000 (ISR 47) outside the 99.8%
    assert table.loc["A81007", "compared"] == "Higher, worse (95%)"
    assert table.loc["A81000", "compared"] == "Lower, better (99.8%)"
    assert set(table.saving_unit) == {"admissions a year"}


def test_printed_benchmark_fits_80_columns_with_period_source_and_totals(
        result: object) -> None:
    text = _render(result)
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert "…" not in text  # nothing cut short: cells wrap
    flat = " ".join(ln.strip() for ln in lines)
    assert "Emergency admissions per 1,000 registered patients, by practice, 2025-26 " \
           "(April 2025 to March 2026)" in flat
    assert "Source: admitted patient care spells in the commissioner's warehouse" in flat
    assert "Higher, worse (95%)" in flat and "Lower, better (99.8%)" in flat
    assert "Saving: admissions a year at the peers' 10th percentile" in flat
    # judged on the ISR: the value column is the crude rate, and says so
    assert "Value: crude rate per 1,000 patients" in flat
    assert "ISR: indirectly standardised ratio, commissioner = 100" in flat
    # the totals row: the commissioner's crude rate, 1,700 admissions / 16,000 patients
    # (person-years) x 1,000 = 106.3, and the savings added up
    table = result.table  # type: ignore[attr-defined]
    total = [ln for ln in lines if ln.startswith("All ")]
    assert len(total) == 1
    rate = table.numerator.sum() / table.denominator.sum() * 1000
    assert f"{rate:,.1f}" in total[0]
    assert f"{table.saving_at_p10.sum():,.1f}" in total[0]
    assert "Caution: England's figure is 8 years older than the data (2025-26)" in flat


def test_overdispersion_is_noted_when_many_fall_outside(result: object) -> None:
    table = result.table  # type: ignore[attr-defined]
    assert str(table.limits.iloc[0]).startswith("overdispersion-adjusted")
    outside = int(table.significance_unadjusted.str.endswith("(0.001)").sum())
    assert outside >= 2
    flat = " ".join(ln.strip() for ln in _render(result).splitlines())
    assert f"{outside} of 8 practices fall outside the unadjusted 99.8% limits" in flat
    assert "limits widened for it (Spiegelhalter" in flat


def test_monthly_print_shows_every_row_annualised(result: object) -> None:
    series = result.series  # type: ignore[attr-defined]
    assert len(series) == 96  # 8 practices x 12 months: more than the 24 shown before
    text = _render(result, monthly=True)
    flat = " ".join(ln.strip() for ln in text.splitlines())
    for code in series.practice.unique():
        for period in ("2025-04", "2026-03"):
            assert any(code in ln and period in ln for ln in text.splitlines())
    assert "annualised" in flat and "April 2025 to March 2026" in flat
    assert max(len(ln) for ln in text.splitlines()) <= 80


def test_every_chart_title_has_the_period_and_source(result: object) -> None:
    ind = INDS["emergency_admissions"]
    table, series = result.table, result.series  # type: ignore[attr-defined]
    specs = {"funnel": funnel_chart(table, ind), "caterpillar": caterpillar_chart(table, ind),
             "deciles": deciles_chart(series, ind), "spc": spc_chart(series, ind, "A81001")}
    for name, chart in specs.items():
        title = chart.to_dict()["title"]
        period = "2025-26 (April 2025 to March 2026)" if name in ("funnel", "caterpillar") \
            else "April 2025 to March 2026"
        assert title["text"].endswith(period), (name, title["text"])
        assert any(s.startswith("Source: admitted patient care spells") for s in
                   title["subtitle"]), name
    for name in ("deciles", "spc"):
        spec = specs[name].to_dict()
        assert any("annualised" in s for s in spec["title"]["subtitle"])
        y_titles = [layer["encoding"]["y"].get("title") for layer in spec["layer"]
                    if "y" in layer.get("encoding", {})]
        assert "per 1,000 patients, annualised" in y_titles
    # the caterpillar draws its 95% intervals
    layers = {layer.get("name"): layer for layer in specs["caterpillar"].to_dict()["layer"]}
    assert layers["intervals"]["mark"]["type"] == "rule"
    assert layers["intervals"]["encoding"]["x2"]["field"] == "upper"


def test_workbook_indicator_sheet_has_period_source_and_caution() -> None:
    from pbc.services.benchmarking import about

    rows = dict(about(INDS["emergency_admissions"], financial_year="2025-26")
                .itertuples(index=False))
    assert rows["period"] == "2025-26 (April 2025 to March 2026)"
    assert rows["data"].startswith("admitted patient care spells")
    assert rows["England value"] == "101 (2017/18)"
    assert rows["England comparator"] == \
        "Caution: England's figure is 8 years older than the data (2025-26)"
    same = dict(about(INDS["emergency_admissions"], financial_year="2017-18")
                .itertuples(index=False))
    assert "England comparator" not in same
