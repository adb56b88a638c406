"""Indicator library: validated definitions, and exact numerators/denominators on small data."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from delivery import VALID, write_delivery, write_table
from pbc.indicators.compute import events_by_band, indicator_by_practice
from pbc.indicators.definition import IndicatorError, load_indicators, read_indicator
from pbc.warehouse import Warehouse
from pbc.warehouse.load import load
from workbooks import read_table, summary

REQUIRED = {
    "emergency_admissions", "chronic_acsc_admissions", "acute_acsc_admissions",
    "elective_admissions", "day_case_rate", "gp_referred_first_outpatients",
    "consultant_to_consultant_share", "outpatient_follow_up_ratio", "ae_attendances",
    "emergency_readmissions_30d", "excess_bed_days", "prescribing_cost_per_weighted_patient",
}


def test_library_has_the_required_indicators() -> None:
    inds = load_indicators()
    assert set(inds) >= REQUIRED
    assert any(i.startswith("spend_") for i in inds)
    for ind in inds.values():
        assert ind.why_it_matters and ind.source and ind.review_date


@pytest.mark.parametrize(("text", "message"), [
    ("id: x\n", "title: Field required"),
    ("{}", "id: Field required"),
    ("- a list", "expected a mapping"),
    ("id: bad\ntitle: t\nwhy_it_matters: w\nnumerator: {activity: apc, filters: [nonsense]}\n"
     "denominator: {population: registered}\nunit: u\nkind: rate\nlow_is_good: true\n"
     "source: s\nreview_date: 2027-01-01\n", "unknown filter"),
    ("id: bad\ntitle: t\nwhy_it_matters: w\nnumerator: {activity: op, filters: [emergency]}\n"
     "denominator: {population: registered}\nunit: u\nkind: rate\nlow_is_good: true\n"
     "source: s\nreview_date: 2027-01-01\n", "do not apply to op"),
])
def test_bad_definition_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(IndicatorError, match=message) as e:
        read_indicator(path)
    assert "bad.yaml" in str(e.value)


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    folder = write_delivery(tmp_path / "in")
    spells = [dict(r) for r in VALID["apc_spells"]]
    # S1..S10 are emergency COPD (J441) stays of 6 days at A81001 (odd) / A81002 (even).
    spells[0].update(admission_method="11", patient_classification="2")  # S1: day case
    spells[2].update(admission_method="12", patient_classification="1")  # S3: ordinary elective
    spells[4].update(primary_diagnosis="J181")                            # S5: pneumonia (acute)
    # a readmission: P2 discharged 2025-05-09 (S1) and readmitted on 2025-06-01 (S11)
    spells.append({**spells[1], "spell_id": "S11", "patient_id": "P2",
                   "admission_date": "2025-06-01", "discharge_date": "2025-07-01"})
    write_table(folder, "apc_spells", spells)
    wh = Warehouse(tmp_path / "w")
    load(folder, wh)
    return wh


def _by_practice(wh: Warehouse, ind_id: str) -> dict[str, tuple[float, float]]:
    backend = wh.ibis()
    tables = {n: backend.table(n) for n in wh.table_names()}
    frame = indicator_by_practice(tables, load_indicators()[ind_id]).execute()
    return {r.practice_code: (r.numerator, r.denominator) for r in frame.itertuples()}


def test_emergency_admissions(warehouse: Warehouse) -> None:
    # emergency: S2, S4..S11 except S1 (day case), S3 (elective) -> odd: S5,S7,S9; even: 2,4,6,8,10
    # S11 copies S2 (even practice). S9 (P2) runs over exactly the days of P2's S1 and S10
    # (P3) over those of P3's S2: one stay each, not a second admission -> odd S5, S7;
    # even S2, S4, S6, S8, S11
    got = _by_practice(warehouse, "emergency_admissions")
    assert got == {"A81001": (2.0, 4.0), "A81002": (5.0, 4.0)}


def test_day_case_rate_and_acsc(warehouse: Warehouse) -> None:
    assert _by_practice(warehouse, "day_case_rate") == {"A81001": (1.0, 2.0),
                                                         "A81002": (0.0, 0.0)}
    chronic = _by_practice(warehouse, "chronic_acsc_admissions")
    # J441 emergency admissions (S9 and S10 continue stays, as above)
    assert chronic == {"A81001": (1.0, 4.0), "A81002": (5.0, 4.0)}
    acute = _by_practice(warehouse, "acute_acsc_admissions")
    assert acute == {"A81001": (1.0, 4.0), "A81002": (0.0, 4.0)}


def test_readmissions_within_30_days(warehouse: Warehouse) -> None:
    got = _by_practice(warehouse, "emergency_readmissions_30d")
    # P2's stay (S1 with S9) ends 2025-05-09; S11 admitted 2025-06-01: 23 days. The
    # readmission belongs to the index stay, whose last spell (S9) is at A81001
    assert got["A81001"][0] == 1.0 and got["A81002"][0] == 0.0


def test_excess_bed_days_use_the_trim_point(warehouse: Warehouse) -> None:
    # every stay is 6 days (S11: 30 days) against trim points of 12/19: only S11 exceeds (30-19)
    assert _by_practice(warehouse, "excess_bed_days") == {"A81001": (0.0, 4.0),
                                                           "A81002": (11.0, 4.0)}


def test_monthly_series_has_twelve_months(warehouse: Warehouse) -> None:
    backend = warehouse.ibis()
    tables = {n: backend.table(n) for n in warehouse.table_names()}
    frame = indicator_by_practice(tables, load_indicators()["ae_attendances"],
                                  by_month=True).execute()
    assert len(frame) == 2 * 12
    assert frame.numerator.sum() == 5 and frame[frame.month == 9].numerator.sum() == 5


def test_events_by_band_sum_to_events_on_register(warehouse: Warehouse) -> None:
    backend = warehouse.ibis()
    tables = {n: backend.table(n) for n in warehouse.table_names()}
    bands = events_by_band(tables, load_indicators()["emergency_admissions"]).execute()
    assert bands.events.sum() == 7  # as test_emergency_admissions: 2 + 5
    assert bands.patients.sum() == len(VALID["patients"])


# ------------------------------------------------------------------ benchmark tables
def _tables(wh: Warehouse) -> dict:
    backend = wh.ibis()
    return {n: backend.table(n) for n in wh.table_names()}


def test_benchmark_table_practice_level(warehouse: Warehouse) -> None:
    from pbc.indicators.benchmark import benchmark

    inds = load_indicators()
    out = benchmark(_tables(warehouse), inds["day_case_rate"])
    a = out.set_index("practice").loc["A81001"]
    assert a.value == pytest.approx(50.0)
    # Wilson 95% interval for 1/2 (Wilson 1927; PHEindicatormethods wilson_lower), in per cent
    assert a.lower_95 == pytest.approx(9.4531205, rel=1e-6)
    assert a.upper_95 == pytest.approx(90.5468795, rel=1e-6)
    assert out.set_index("practice").loc["A81002"].significance == "Not applicable"


def test_benchmark_standardised_columns(warehouse: Warehouse) -> None:
    from pbc.indicators.benchmark import benchmark

    out = benchmark(_tables(warehouse), load_indicators()["emergency_admissions"])
    assert set(out.columns) >= {"isr", "isr_lower_95", "isr_upper_95", "percentile", "decile",
                                "saving_at_p25", "saving_at_p10", "significance", "judged_on",
                                "limits", "phi", "tau2"}
    # the ratios and savings themselves are checked on hand-worked economies below
    # (test_indirect_standardised_savings_use_the_ratio)
    assert (out.judged_on == "ISR (commissioner = 100)").all()


def test_benchmark_custom_grouping(warehouse: Warehouse) -> None:
    import pandas as pd

    from pbc.indicators.benchmark import benchmark

    grouping = pd.DataFrame({"practice_code": ["A81001", "A81002"], "group_code": ["X", "X"]})
    out = benchmark(_tables(warehouse), load_indicators()["ae_attendances"], level="group",
                    grouping=grouping)
    assert list(out.grouping) == ["X"]
    assert out.numerator.iloc[0] == 5 and out.denominator.iloc[0] == len(VALID["patients"])


def test_ratio_to_national_uses_the_published_value(warehouse: Warehouse) -> None:
    from pbc.indicators.benchmark import benchmark

    ind = load_indicators()["emergency_admissions"]
    assert ind.national is not None and ind.national.value == 101
    out = benchmark(_tables(warehouse), ind).set_index("practice")
    # A81002: 5 emergency admissions / 4 registered x 1,000 = 1,250 per 1,000 = 12.4 x England
    assert out.loc["A81002", "ratio_to_national"] == pytest.approx(1250 / 101 * 100)
    assert out.loc["A81002", "ratio_to_national_lower_95"] == pytest.approx(
        out.loc["A81002", "lower_95"] / 101 * 100)
    no_national = benchmark(_tables(warehouse), load_indicators()["elective_admissions"])
    assert "ratio_to_national" not in no_national.columns


def test_monthly_series_annualises_and_classifies(warehouse: Warehouse) -> None:
    from pbc.indicators.benchmark import monthly_series

    series = monthly_series(_tables(warehouse), load_indicators()["ae_attendances"])
    assert len(series) == 2 * 12 and list(series.financial_year.unique()) == ["2025-26"]
    a = series[series.practice == "A81001"]
    assert list(a.period) == [f"2025-{m:02d}" for m in range(4, 13)] + [
        f"2026-{m:02d}" for m in range(1, 4)]
    assert list(a.month) == list(range(1, 13))
    # all five attendances fall in financial month 9 (December, 31 days): annualised rate
    dec = series[series.period == "2025-12"].set_index("practice")
    for _code, row in dec.iterrows():
        assert row.value == pytest.approx(row.numerator / row.denominator * 1000 * 365.25 / 31)
    assert series.numerator.sum() == 5
    # one spike in twelve months is above the upper process limit: special cause, concern
    spike = dec[dec.numerator > 0]
    assert (spike.special_cause_type == "Above UCL").all()
    assert (spike.point_type == "special_cause_concern").all()
    quiet = series[(series.numerator == 0)]
    assert (quiet.value >= quiet.lpl).all()


def test_monthly_series_for_a_custom_grouping(warehouse: Warehouse) -> None:
    import pandas as pd

    from pbc.indicators.benchmark import monthly_series

    grouping = pd.DataFrame({"practice_code": ["A81001", "A81002"], "group_code": ["X", "X"]})
    series = monthly_series(_tables(warehouse), load_indicators()["day_case_rate"],
                            level="group", grouping=grouping)
    assert set(series.grouping) == {"X"} and len(series) == 12
    # day case rate: a proportion of elective admissions; months without any are missing
    assert series.value.notna().sum() == (series.denominator > 0).sum()


def test_shared_populations_give_the_same_tables(warehouse: Warehouse) -> None:
    import pandas as pd

    from pbc.indicators.benchmark import benchmark
    from pbc.indicators.compute import with_populations

    tables = _tables(warehouse)
    shared = with_populations(tables, ["2025-26"])
    for ind_id in ("emergency_admissions", "ae_attendances", "day_case_rate",
                   "prescribing_cost_per_weighted_patient"):
        ind = load_indicators()[ind_id]
        pd.testing.assert_frame_equal(benchmark(tables, ind), benchmark(shared, ind))


def test_bad_grouping_file_names_file_row_and_column(tmp_path: Path) -> None:
    from pbc.services.benchmarking import read_grouping
    from pbc.warehouse import WarehouseError

    missing = tmp_path / "missing.csv"
    missing.write_text("practice_code,locality\nA81001,X\n")
    with pytest.raises(WarehouseError, match=r"missing\.csv: missing column\(s\) group_code"):
        read_grouping(missing)
    blank = tmp_path / "blank.csv"
    blank.write_text("practice_code,group_code\nA81001,X\nA81002,\n")
    with pytest.raises(WarehouseError, match=r"blank\.csv: row 3: practice_code and group_code"):
        read_grouping(blank)


def test_bad_chart_requests_are_refused(warehouse: Warehouse, tmp_path: Path) -> None:
    from pbc.services.benchmarking import benchmark_indicator, write_charts, write_result
    from pbc.warehouse import WarehouseError

    result = benchmark_indicator(warehouse, "ae_attendances")
    with pytest.raises(WarehouseError, match="chart format 'pdf'"):
        write_charts(result, tmp_path / "c", fmt="pdf")
    with pytest.raises(WarehouseError, match="'Z99999' is not a practice"):
        write_charts(result, tmp_path / "c", highlight="Z99999")
    with pytest.raises(WarehouseError, match=r"b\.txt: use \.csv or \.xlsx"):
        write_result(result, tmp_path / "b.txt")
    assert not (tmp_path / "c").exists() and not (tmp_path / "b.txt").exists()
    with pytest.raises(WarehouseError, match="unknown indicator 'nope'"):
        benchmark_indicator(warehouse, "nope")


# ------------------------------------------------ judgements on the standardised measure
# Hand-built economies (Ibis memtables on DuckDB): each practice lists bands of
# (sex, age, patients, events); every event is an emergency COPD admission (J441) in June
# 2025, spread over the band's patients.
def _economy(practices: dict[str, list[tuple[str, int, int, int]]],
             diagnosis: str = "J441") -> dict:
    import datetime as dt

    import ibis
    import pandas as pd

    pats, spells = [], []
    for code, bands in practices.items():
        for b, (sex, age, count, events) in enumerate(bands):
            ids = [f"{code}-{b}-{i}" for i in range(count)]
            pats += [{"patient_id": p, "practice_code": code, "sex": sex, "age": age}
                     for p in ids]
            for e in range(events):
                spells.append({
                    "spell_id": f"S{code}-{b}-{e}", "patient_id": ids[e % count],
                    "practice_code": code, "provider_code": "RTR",
                    "admission_date": dt.date(2025, 6, 1), "discharge_date": dt.date(2025, 6, 3),
                    "admission_method": "21", "patient_classification": "1",
                    "primary_diagnosis": diagnosis, "hrg_code": "DZ65K",
                    "financial_year": "2025-26", "month": 3})
    practices_t = pd.DataFrame({"practice_code": list(practices), "group_code": "G1",
                                "commissioner_code": "Q99"})
    return {"practices": ibis.memtable(practices_t), "patients": ibis.memtable(pd.DataFrame(pats)),
            "apc_spells": ibis.memtable(pd.DataFrame(spells))}


def test_direct_standardised_indicator_is_judged_on_its_dsr() -> None:
    from pbc.indicators.benchmark import benchmark

    # A and B have the same rates in each band (old 0.2, young 0.02), so the same DSR:
    # (0.2 x 2,500 + 0.02 x 6,500) / 200,000 x 100,000 = 315 per 100,000 (ESP2013 weights
    # 2,500 for 80-84 and 6,500 for 30-34, both sexes' 100,000 in the standard). A's old
    # list gives it a crude rate of 220/2,000 = 11,000 against B's 120/5,100 = 2,353.
    tables = _economy({"A81001": [("F", 80, 1000, 200), ("F", 30, 1000, 20)],
                       "A81002": [("F", 80, 100, 20), ("F", 30, 5000, 100)]})
    out = benchmark(tables, load_indicators()["chronic_acsc_admissions"]).set_index("practice")
    assert out.dsr.tolist() == pytest.approx([315.0, 315.0])
    assert (out.judged_on == "DSR per 100,000 (ESP2013)").all()
    # on the crude rate both would be far outside the funnel; on the DSR they are the same
    assert out.significance.tolist() == ["Not significant", "Not significant"]
    assert out.percentile.tolist() == [75.0, 75.0]
    assert out.saving_at_p25.tolist() == [0.0, 0.0]


def test_direct_standardised_savings_are_on_the_dsr() -> None:
    from pbc.indicators.benchmark import benchmark

    # C has twice A's rate in both bands: DSR 630. The 25th percentile of (315, 315, 630)
    # is 315; at A's DSR C would have half its 440 events: a saving of 220 admissions.
    # On the crude rate A (11,000 per 100,000, above the crude p25 of 6,676) would be told
    # it could save 86 admissions.
    tables = _economy({"A81001": [("F", 80, 1000, 200), ("F", 30, 1000, 20)],
                       "A81002": [("F", 80, 100, 20), ("F", 30, 5000, 100)],
                       "A81003": [("F", 80, 1000, 400), ("F", 30, 1000, 40)]})
    out = benchmark(tables, load_indicators()["chronic_acsc_admissions"]).set_index("practice")
    assert out.dsr.tolist() == pytest.approx([315.0, 315.0, 630.0])
    assert out.percentile.tolist() == pytest.approx([50.0, 50.0, 100.0])
    assert out.saving_at_p25.tolist() == pytest.approx([0.0, 0.0, 220.0])
    # O = 440 against E = baseline (780 / 177,778 derived patients) x 69,841 = 306.4
    plain = benchmark(tables, load_indicators()["chronic_acsc_admissions"],
                      overdispersion=False).set_index("practice")
    assert plain.loc["A81003", "significance"] == "High (0.001)"


def test_indirect_standardised_savings_use_the_ratio() -> None:
    from pbc.indicators.benchmark import benchmark

    # commissioner band rates: old 400/2,000 = 0.2, young 80/2,000 = 0.04
    # A: E = 1,000 x 0.2 = 200, O = 100, ratio 0.5 (low, though its crude rate is 100 per
    #    1,000, above the crude p25 of 75);  B: E = 40, O = 50, ratio 1.25;
    # C: E = 200 + 40 = 240, O = 330, ratio 1.375.
    # ratio at p25 of (0.5, 1.25, 1.375) = 0.875; at p10 = 0.65.
    # saving = O - E x ratio_p (never below 0): B 50 - 35 = 15, C 330 - 210 = 120;
    # at p10: B 50 - 26 = 24, C 330 - 156 = 174.
    tables = _economy({"A81001": [("F", 80, 1000, 100)],
                       "A81002": [("F", 30, 1000, 50)],
                       "A81003": [("F", 80, 1000, 300), ("F", 30, 1000, 30)]})
    out = benchmark(tables, load_indicators()["emergency_admissions"]).set_index("practice")
    assert out.isr.tolist() == pytest.approx([50.0, 125.0, 137.5])
    assert out.saving_at_p25.tolist() == pytest.approx([0.0, 15.0, 120.0])
    assert out.saving_at_p10.tolist() == pytest.approx([0.0, 24.0, 174.0])
    assert (out.judged_on == "ISR (commissioner = 100)").all()
    plain = benchmark(tables, load_indicators()["emergency_admissions"],
                      overdispersion=False).set_index("practice")
    assert plain.loc["A81001", "significance"] == "Low (0.001)"  # 100 against 200 expected


def test_overdispersed_funnel_uses_adjusted_limits_and_says_so() -> None:
    from pbc.indicators.benchmark import benchmark

    # ten practices of 1,000 women aged 30 (one band: E = 1,000 x the pooled rate = 70 each)
    # with 10, 20, ... 130 admissions: far more spread than Poisson chance allows.
    events = [10, 30, 50, 60, 70, 70, 80, 90, 110, 130]
    tables = _economy({f"A81{i:03d}": [("F", 30, 1000, e)] for i, e in enumerate(events)})
    out = benchmark(tables, load_indicators()["emergency_admissions"])
    assert out.expected.tolist() == pytest.approx([70.0] * 10)
    # z = sqrt(70) ln(O/70) runs from -16.2807 to 5.1793; winsorised at its 10th/90th
    # percentiles (-8.00817, 3.92135) phi = mean(z^2) = 15.93196 (worked in plain Python,
    # outside pbc); tau^2 = (k phi - (k-1)) / (sum w - sum w^2 / sum w) with w = E = 70:
    # (159.3196 - 9) / (700 - 70) = 0.238603. k phi = 159.3 is far above the 95th
    # percentile of chi-squared on 9 df (16.92), so the adjusted limits are used.
    assert out.phi.iloc[0] == pytest.approx(15.93196, abs=1e-5)
    assert out.tau2.iloc[0] == pytest.approx(0.238603, abs=1e-6)
    assert out.limits.iloc[0].startswith("overdispersion-adjusted")
    # 110 admissions against 70 expected is outside the Poisson 99.8% limits, not the
    # adjusted ones (99.8%: exp(3.0902 x sqrt(1/70 + 0.238603)) x 100 = 473.0; 95%: 267.9)
    row = out.set_index("practice").loc["A81008"]
    assert row.significance_unadjusted == "High (0.001)"
    assert row.significance == "Not significant"
    calm = benchmark(_economy({f"A81{i:03d}": [("F", 30, 1000, e)]
                               for i, e in enumerate([66, 68, 70, 70, 72, 74])}),
                     load_indicators()["emergency_admissions"])
    assert calm.limits.iloc[0] == "Poisson (PHE)"


# ------------------------------------------------------------- disclosure control on exports
def test_exports_suppress_counts_of_one_to_seven(tmp_path: Path) -> None:
    import pandas as pd

    from pbc.indicators.benchmark import benchmark, monthly_series
    from pbc.services.benchmarking import BenchmarkResult, write_charts, write_result

    ind = load_indicators()["emergency_admissions"]
    tables = _economy({"A81001": [("F", 30, 1000, 5)], "A81002": [("F", 30, 1000, 20)],
                       "A81003": [("F", 30, 1000, 30)]})
    result = BenchmarkResult(ind, "practice", benchmark(tables, ind),
                             monthly_series(tables, ind))
    (csv,) = [p for p in write_result(result, tmp_path / "b.csv") if p.name == "b.csv"]
    got = pd.read_csv(csv, dtype=str).set_index("practice")
    # A81001's 5 admissions are hidden with everything that would give them back; the
    # smallest other count (A81002's 20) is hidden too, or the commissioner total (55, on
    # the funnel's centre line) minus the others would give A81001's 5.
    for col in ("numerator", "value", "lower_95", "upper_95", "observed", "isr",
                "isr_lower_95", "isr_upper_95", "saving_at_p25"):
        assert got.loc["A81001", col] == "*", col
    assert got.loc["A81002", "numerator"] == "*"
    assert got.loc["A81003", "numerator"] == "30"
    assert got.loc["A81001", "denominator"] == "1000.0"  # a list size is not a count of events
    monthly = pd.read_csv(tmp_path / "b_monthly.csv", dtype=str)
    june = monthly[monthly.period == "2025-06"].set_index("practice")
    assert june.loc["A81001", "numerator"] == "*" and june.loc["A81001", "value"] == "*"
    assert june.loc["A81003", "numerator"] == "30"
    xlsx = write_result(result, tmp_path / "b.xlsx")[0]
    sheet = read_table(xlsx, "Benchmark").set_index("Practice code")
    assert sheet.loc["A81001", "Numerator: admissions"] == "*"
    note = summary(openpyxl.load_workbook(xlsx)["Indicator"])
    assert "suppressed" in note["Disclosure control"]
    # charts leave the commissioner too: the hidden units are not drawn
    paths = write_charts(result, tmp_path / "charts", fmt="json")
    funnel = next(p for p in paths if "funnel" in p.name)
    spec = funnel.read_text()
    assert "A81001" not in spec and "A81003" in spec
    # inside the commissioner the table itself is whole
    assert result.table.set_index("practice").loc["A81001", "numerator"] == 5


# --------------------------------------------------------------- definitions match sources
def _spell_tables(patients: list[tuple], spells: list[dict]) -> dict:
    """patients: (patient_id, practice_code, sex, age[, registered_from, registered_to]);
    spells: dicts over these defaults (an emergency COPD stay at RTR, 2025/26)."""
    import datetime as dt

    import ibis
    import pandas as pd


    cols = ["patient_id", "practice_code", "sex", "age", "registered_from", "registered_to"]
    pats = pd.DataFrame([dict(zip(cols, p, strict=False)) for p in patients])
    rows = []
    for i, s in enumerate(spells):
        row = {"spell_id": f"S{i:03d}", "practice_code": "A81001", "provider_code": "RTR",
               "admission_method": "21", "patient_classification": "1",
               "primary_diagnosis": "J441", "hrg_code": "DZ65K", **s}
        for k in ("admission_date", "discharge_date"):
            row[k] = dt.date.fromisoformat(row[k])
        d = row["discharge_date"]
        start = d.year if d.month >= 4 else d.year - 1
        row["financial_year"] = f"{start}-{(start + 1) % 100:02d}"
        row["month"] = (d.month - 4) % 12 + 1
        rows.append(row)
    codes = sorted(set(pats.practice_code) | {r["practice_code"] for r in rows})
    practices = pd.DataFrame({"practice_code": codes, "group_code": "G1",
                              "commissioner_code": "Q99"})
    return {"practices": ibis.memtable(practices), "patients": ibis.memtable(pats),
            "apc_spells": ibis.memtable(pd.DataFrame(rows))}


def _counts(tables: dict, ind_id: str, year: str | None = "2025-26") -> dict:
    frame = indicator_by_practice(tables, load_indicators()[ind_id],
                                  financial_year=year).execute()
    return {r.practice_code: (r.numerator, r.denominator) for r in frame.itertuples()}


def test_day_case_rate_counts_ordinary_and_day_case_electives_only() -> None:
    # HES: the day-case rate is day cases over day cases plus ordinary elective admissions;
    # regular day and night attenders (patient classifications 3 and 4) are not admissions
    el = {"admission_method": "11", "admission_date": "2025-06-01",
          "discharge_date": "2025-06-01"}
    tables = _spell_tables([("P1", "A81001", "F", 50)], [
        {**el, "patient_id": "P1", "patient_classification": "2"},
        {**el, "patient_id": "P1", "patient_classification": "1",
         "discharge_date": "2025-06-03"},
        {**el, "patient_id": "P1", "patient_classification": "3"},
        {**el, "patient_id": "P1", "patient_classification": "4"},
    ])
    assert _counts(tables, "day_case_rate") == {"A81001": (1.0, 2.0)}


def test_a_transfer_is_not_a_second_admission() -> None:
    # P1: an emergency COPD admission, transferred the day of discharge to another provider
    # (admission method 2B); P2: the same, with the second provider recording method 21.
    # Each is one continuous inpatient spell: one admission, not two.
    tables = _spell_tables([("P1", "A81001", "F", 70), ("P2", "A81001", "M", 70)], [
        {"patient_id": "P1", "admission_date": "2025-06-01", "discharge_date": "2025-06-03"},
        {"patient_id": "P1", "admission_date": "2025-06-03", "discharge_date": "2025-06-09",
         "admission_method": "2B", "provider_code": "RXX"},
        {"patient_id": "P2", "admission_date": "2025-07-01", "discharge_date": "2025-07-02"},
        {"patient_id": "P2", "admission_date": "2025-07-02", "discharge_date": "2025-07-05",
         "provider_code": "RXX"},
        # a new admission a week later is an admission
        {"patient_id": "P2", "admission_date": "2025-07-12", "discharge_date": "2025-07-13"},
    ])
    assert _counts(tables, "chronic_acsc_admissions")["A81001"][0] == 3
    assert _counts(tables, "emergency_admissions")["A81001"][0] == 3


def test_readmissions_count_index_stays_with_the_published_exclusions() -> None:
    e = {"admission_method": "21"}
    el = {"admission_method": "11"}
    tables = _spell_tables([(f"P{i}", "A81001", "F", 60) for i in range(1, 6)], [
        # P1: a same-day transfer (one stay, 1-9 June), then an emergency readmission 11
        # days later: 2 index stays, the first readmitted
        {**e, "patient_id": "P1", "admission_date": "2025-06-01",
         "discharge_date": "2025-06-03"},
        {"patient_id": "P1", "admission_method": "2B", "admission_date": "2025-06-03",
         "discharge_date": "2025-06-09", "provider_code": "RXX"},
        {**e, "patient_id": "P1", "admission_date": "2025-06-20",
         "discharge_date": "2025-06-22"},
        # P2: a cancer stay is not an index stay; the emergency stay after it is one
        {**el, "patient_id": "P2", "primary_diagnosis": "C180",
         "admission_date": "2025-07-01", "discharge_date": "2025-07-02"},
        {**e, "patient_id": "P2", "admission_date": "2025-07-10",
         "discharge_date": "2025-07-12"},
        # P3: nor is a maternity stay
        {"patient_id": "P3", "admission_method": "31", "primary_diagnosis": "O800",
         "admission_date": "2025-08-01", "discharge_date": "2025-08-03"},
        {**e, "patient_id": "P3", "admission_date": "2025-08-05",
         "discharge_date": "2025-08-06"},
        # P4: readmitted 29 days after discharge (within 30 days: 0 to 29)
        {**el, "patient_id": "P4", "admission_date": "2025-09-01",
         "discharge_date": "2025-09-02"},
        {**e, "patient_id": "P4", "admission_date": "2025-10-01",
         "discharge_date": "2025-10-03"},
        # P5: 30 days after discharge is not within 30 days
        {**el, "patient_id": "P5", "admission_date": "2025-11-01",
         "discharge_date": "2025-11-02"},
        {**e, "patient_id": "P5", "admission_date": "2025-12-02",
         "discharge_date": "2025-12-03"},
    ])
    # index stays: P1 2, P2 1, P3 1, P4 2, P5 2 = 8; readmitted: P1's first, P4's first = 2
    assert _counts(tables, "emergency_readmissions_30d") == {"A81001": (2.0, 8.0)}
    ind = load_indicators()["emergency_readmissions_30d"]
    # deaths cannot be excluded and the rate is not standardised: not England's indicator
    assert ind.national is None


def test_denominators_are_person_years_registered_in_the_period() -> None:
    import datetime as dt

    d = dt.date
    tables = _spell_tables([
        ("P1", "A81001", "F", 60, d(2010, 1, 1), None),         # all year
        ("P2", "A81001", "F", 60, d(2025, 10, 1), None),        # joined 1 October
        ("P3", "A81001", "M", 60, d(2010, 1, 1), d(2025, 6, 30)),  # left (or died) 30 June
        ("P4", "A81001", "M", 60, d(2010, 1, 1), d(2024, 12, 31)),  # gone before the year
        ("P5", "A81001", "F", 60, None, None),                   # dates unknown: registered
    ], [{"patient_id": "P1", "admission_date": "2025-06-01", "discharge_date": "2025-06-03"}])
    # 2025/26 has 365 days: P2 182 (1 Oct - 31 Mar), P3 91 (1 Apr - 30 Jun), P4 none
    got = _counts(tables, "emergency_admissions", "2025-26")["A81001"]
    assert got == (1.0, pytest.approx(2 + 273 / 365))
    # 2024/25 (365 days): P2 not yet registered; P4 275 days (1 Apr - 31 Dec)
    earlier = _counts(tables, "emergency_admissions", "2024-25")["A81001"]
    assert earlier == (0.0, pytest.approx(3 + 275 / 365))
    # the same person-years by age-sex band for standardisation: P1, P2, P5 are women
    bands = events_by_band(tables, load_indicators()["emergency_admissions"],
                           financial_year="2025/26").execute().set_index("sex")
    assert bands.loc["F", "patients"] == pytest.approx(2 + 182 / 365)
    assert bands.loc["M", "patients"] == pytest.approx(91 / 365)


def test_prescribing_cost_is_per_astro_pu_on_one_cost_basis() -> None:
    from decimal import Decimal

    import ibis
    import pandas as pd

    from pbc.reference.prescribing_units import astro_pu

    # a man of 80 (ASTRO(09)-PU 75+ male: 11.3) and a girl of 2 (0-4 female: 0.9), per the
    # published table, and GBP 122 of prescribing (actual cost) in 2025/26
    assert astro_pu("M", 80) == Decimal("11.3") and astro_pu("F", 2) == Decimal("0.9")
    tables = _spell_tables([("P1", "A81001", "M", 80), ("P2", "A81001", "F", 2)], [])
    tables["prescribing"] = ibis.memtable(pd.DataFrame({
        "practice_code": ["A81001"], "year_month": ["2025-06"], "bnf_code": ["0206020A0AAAAAA"],
        "items": [10], "actual_cost": [122.0], "financial_year": ["2025-26"], "month": [3]}))
    ind = load_indicators()["prescribing_cost_per_weighted_patient"]
    assert _counts(tables, ind.id) == {"A81001": (122.0, pytest.approx(12.2))}
    # England's published figure is net ingredient cost per registered patient: another
    # cost basis and another denominator, so there is no ratio to it
    assert ind.national is None


def test_prescribing_units_file_errors_name_file_row_and_column(tmp_path: Path) -> None:
    from pbc.reference.prescribing_units import PrescribingUnitsError, astro_pu_bands

    good = "sex,age_from,age_to,astro_pu\nM,0,,1\nF,0,,1\n"
    assert len(astro_pu_bands(_write(tmp_path / "ok.csv", good))) == 2
    bad = _write(tmp_path / "bad.csv", "# note\nsex,age_from,age_to,astro_pu\nM,0,,x\nF,0,,1\n")
    with pytest.raises(PrescribingUnitsError, match=r"bad\.csv: row 3: column astro_pu"):
        astro_pu_bands(bad)
    gap = _write(tmp_path / "gap.csv",
                 "sex,age_from,age_to,astro_pu\nM,0,4,1\nM,6,,2\nF,0,,1\n")
    with pytest.raises(PrescribingUnitsError, match=r"gap\.csv: sex M: .*at age 6"):
        astro_pu_bands(gap)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
