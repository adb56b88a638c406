"""Neighbourhood profiles for the JSNA (issue 16, items 2, 5, 6): figures recomputed from
the raw rows, DSRs against pbc.stats, suppression that no reader can undo, access.

The recomputation here is plain SQL on the warehouse's tables, written from the method in
docs/local-authorities.md, not the module's code. The disclosure check is an independent
linear-programming intruder (scipy HiGHS): the published cells of a measure give equations
(each neighbourhood's total over its breakdowns, the council's cell over its
neighbourhoods); a hidden cell is recoverable if the smallest and largest values those
equations allow (whole, not negative, and at least 1 since zeros are shown) are equal. These
tables are two-way tables with margins, whose constraint matrix is totally unimodular, so
the linear programs' bounds are reached by whole numbers: a spread of 1 or more means at
least two whole values fit.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from typer.testing import CliRunner

from pbc.local_authorities.profiles import (
    ALL,
    COMPARISON_COLUMNS,
    CSV_COLUMNS,
    WHOLE_COUNCIL,
    suppress_table,
)
from pbc.services import profiles as svc
from pbc.services.principal import AccessDenied, Principal
from pbc.services.suppression import suppress_levels
from pbc.stats import ESP2013, dsr
from pbc.warehouse import Warehouse

YEAR = "2025-26"
MID = dt.date(2025, 9, 30)


# ------------------------------------------------------------------ the intruder
def recoverable(cells: dict[tuple[str, str], int | None]) -> list[tuple[str, str]]:
    """Hidden cells of one measure's published table that its shown cells pin down.

    ``cells``: (unit, breakdown) -> count or None, with unit WHOLE_COUNCIL for the council
    (the sum over units) and breakdown ALL for a unit's total (where published)."""
    units = sorted({u for u, _ in cells if u != WHOLE_COUNCIL})
    cols = sorted({c for _, c in cells if c != ALL})
    index = {(u, c): i for i, (u, c) in enumerate((u, c) for u in units for c in cols)}

    def members(u: str, c: str) -> list[int]:
        us = units if u == WHOLE_COUNCIL else [u]
        cs = cols if c == ALL else [c]
        return [index[(a, b)] for a in us for b in cs]

    a_eq, b_eq, a_ub, b_ub = [], [], [], []
    for (u, c), v in cells.items():
        row = np.zeros(len(index))
        row[members(u, c)] = 1
        if v is None:
            a_ub.append(-row)
            b_ub.append(-1.0)
        else:
            a_eq.append(row)
            b_eq.append(float(v))
    out = []
    for (u, c), v in cells.items():
        if v is not None:
            continue
        obj = np.zeros(len(index))
        obj[members(u, c)] = 1
        bounds = []
        for sign in (1, -1):
            res = linprog(sign * obj, A_ub=np.array(a_ub) if a_ub else None,
                          b_ub=b_ub or None, A_eq=np.array(a_eq) if a_eq else None,
                          b_eq=b_eq or None, bounds=(0, None), method="highs")
            if res.status == 3:
                bounds.append(-math.inf if sign == 1 else math.inf)
                continue
            assert res.status == 0, res.message
            bounds.append(sign * res.fun)
        if bounds[1] - bounds[0] < 1 - 1e-6:
            out.append((u, c))
    return out


def small_shown(cells: dict[Any, int | None], threshold: int = 7) -> list[Any]:
    return [k for k, v in cells.items() if v is not None and 1 <= v <= threshold]


tables = st.integers(1, 4).flatmap(lambda units: st.integers(1, 4).flatmap(
    lambda cols: st.lists(st.lists(st.sampled_from([0, 1, 2, 3, 5, 7, 8, 9, 12, 20, 40]),
                                   min_size=cols, max_size=cols),
                          min_size=units, max_size=units)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables, st.booleans())
def test_no_small_count_is_shown_and_none_can_be_recovered(rows: list[list[int]],
                                                            partition: bool) -> None:
    units = [f"N{i}" for i in range(len(rows))]
    cols = [f"c{j}" for j in range(len(rows[0]))]
    grid = {(u, c): rows[i][j] for i, u in enumerate(units) for j, c in enumerate(cols)}
    published = suppress_table(grid, units, cols, partition=partition)
    assert small_shown(published) == []
    for c in cols:  # the council's cell is the sum of its neighbourhoods'
        if published[(WHOLE_COUNCIL, c)] is not None:
            assert published[(WHOLE_COUNCIL, c)] == sum(grid[(u, c)] for u in units)
    if partition:
        assert recoverable(published) == []
    else:  # each column stands alone
        for c in cols:
            assert recoverable({k: v for k, v in published.items() if k[1] == c}) == []


def test_the_intruder_finds_a_lone_suppressed_cell() -> None:
    """The check can fail: primary suppression alone leaves a cell to subtraction."""
    cells = {("N0", "a"): None, ("N0", "b"): 40, ("N0", ALL): 45,
             ("N1", "a"): 30, ("N1", "b"): 20, ("N1", ALL): 50,
             (WHOLE_COUNCIL, "a"): 35, (WHOLE_COUNCIL, "b"): 60, (WHOLE_COUNCIL, ALL): 95}
    assert recoverable(cells) == [("N0", "a")]


def test_cells_can_be_hidden_from_the_start() -> None:
    """suppress_levels(hide=...) hides a named cell whatever its value, and protects it."""
    base = pd.DataFrame({"neighbourhood": ["N0", "N0", "N1", "N1"],
                         "local_authority": ["L"] * 4, "column": ["a", "b"] * 2,
                         "n": [40, 50, 30, 20]})
    plain = suppress_levels(base, ["neighbourhood", "local_authority"], ["a", "b"])
    assert plain["neighbourhood"][0].total == 90
    forced = suppress_levels(base, ["neighbourhood", "local_authority"], ["a", "b"],
                             hide=[("neighbourhood", "N0", "total")])
    assert forced["neighbourhood"][0].total is None
    # N0's total is N0's cells' sum, so one of them goes too
    assert None in forced["neighbourhood"][0].cells


# ------------------------------------------------------------------ a small economy
@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse.load import load

    base = tmp_path_factory.mktemp("profiles")
    generate(SynthConfig(practices=3, groups=2, local_authorities=2, seed=11, years=1,
                         start_year=2025), base / "in")
    wh = Warehouse(base / "wh")
    load(base / "in", wh)
    return wh


def _la(wh: Warehouse) -> str:
    return str(wh.query("SELECT min(local_authority_code) FROM local_authorities")[0][0])


@pytest.fixture(scope="module")
def profile(economy: Warehouse) -> Any:
    la = _la(economy)
    return svc.neighbourhood_profile(economy, la, Principal("o", "local_authority", la))


def _raw(wh: Warehouse, sql: str) -> pd.DataFrame:
    con = wh.connect()
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def _residents_sql(la: str) -> str:
    return f"""SELECT p.* FROM patients p, neighbourhoods n
        WHERE p.neighbourhood_code = n.neighbourhood_code AND n.local_authority_code = '{la}'
          AND coalesce(p.registered_from, DATE '1900-01-01') <= DATE '{MID}'
          AND coalesce(p.registered_to, DATE '2999-12-31') >= DATE '{MID}'
          AND coalesce(p.date_of_death, DATE '2999-12-31') > DATE '{MID}'"""


def _shown(profile: Any, measure: str, breakdown: str) -> dict[str, Any]:
    return {r["neighbourhood_code"]: r for r in profile.rows
            if r["measure"] == measure and r["breakdown"] == breakdown}


def test_profile_matches_the_raw_rows(economy: Warehouse, profile: Any) -> None:
    la = profile.la_code
    assert profile.financial_year == YEAR
    res = _residents_sql(la)
    people = _raw(economy, res)
    # population by sex and age band; the denominators
    pop = people.groupby("neighbourhood_code").size()
    for hood, n in pop.items():
        assert _shown(profile, "population", ALL)[hood]["count"] == n
    assert _shown(profile, "population", ALL)[WHOLE_COUNCIL]["count"] == len(people)
    old = people[(people.sex == "F") & (people.age >= 85)].groupby("neighbourhood_code").size()
    rows = _shown(profile, "population", "F 85+")
    for hood, n in old.items():
        assert rows[hood]["count"] in (n, None)
        if rows[hood]["count"] is not None:
            assert rows[hood]["value"] == pytest.approx(100 * n / pop[hood])
    # prevalence of diabetes
    dm = _raw(economy, f"""SELECT r.neighbourhood_code, count(DISTINCT r.patient_id) AS n
        FROM ({res}) r JOIN patient_conditions c ON c.patient_id = r.patient_id
        WHERE c.condition = 'DM' AND (c.recorded_date IS NULL
          OR c.recorded_date <= DATE '2026-03-31') GROUP BY 1""")
    rows = _shown(profile, "prevalence", "DM")
    for hood, n in zip(dm.neighbourhood_code, dm.n, strict=True):
        assert rows[hood]["count"] == n
        assert rows[hood]["value"] == pytest.approx(100 * n / pop[hood])
    # A&E attendances in the year
    ae = _raw(economy, f"""SELECT r.neighbourhood_code, count(*) AS n FROM ({res}) r
        JOIN ae_attendances a ON a.patient_id = r.patient_id
        WHERE a.arrival_date BETWEEN DATE '2025-04-01' AND DATE '2026-03-31' GROUP BY 1""")
    rows = _shown(profile, "ae_attendances", ALL)
    for hood, n in zip(ae.neighbourhood_code, ae.n, strict=True):
        assert rows[hood]["count"] == n
        assert rows[hood]["value"] == pytest.approx(1000 * n / pop[hood])
    # emergency admissions, directly standardised: the same as pbc.stats.dsr on the bands
    em = _raw(economy, f"""SELECT r.neighbourhood_code, r.age FROM ({res}) r
        JOIN apc_spells s ON s.patient_id = r.patient_id
        WHERE s.admission_method IN ('21','22','23','24','25','2A','2B','2C','2D','28')
          AND s.admission_date BETWEEN DATE '2025-04-01' AND DATE '2026-03-31'""")
    rows = _shown(profile, "emergency_admissions", ALL)
    for hood, group in people.groupby("neighbourhood_code"):
        band = lambda ages: np.bincount(np.minimum(np.asarray(ages) // 5, 18),  # noqa: E731
                                        minlength=19)
        x = band(em[em.neighbourhood_code == hood].age)
        n = band(group.age).astype(float)
        assert rows[hood]["count"] == x.sum()
        want = dsr(x, np.where(n == 0, 1, n), ESP2013)
        assert rows[hood]["value"] == pytest.approx(want.value)
        assert rows[hood]["lower_95"] == pytest.approx(want.lower)
        assert rows[hood]["upper_95"] == pytest.approx(want.upper)
    # social care: the council's packages active in the year, cost to the penny
    sc = _raw(economy, f"""SELECT k.service_type, k.weekly_cost,
            least(coalesce(k.end_date, DATE '2026-03-31'), DATE '2026-03-31')
              - greatest(k.start_date, DATE '2025-04-01') + 1 AS days
        FROM social_care_packages k WHERE k.local_authority_code = '{la}'
          AND k.start_date <= DATE '2026-03-31'
          AND (k.end_date IS NULL OR k.end_date >= DATE '2025-04-01')""")
    council = _shown(profile, "social_care_packages", ALL)[WHOLE_COUNCIL]
    assert council["count"] == len(sc)
    cost = sum((Decimal(str(w)) * int(d) / 7).quantize(Decimal("0.01"), "ROUND_HALF_UP")
               for w, d in zip(sc.weekly_cost, sc.days, strict=True))
    assert _shown(profile, "social_care_cost", ALL)[WHOLE_COUNCIL]["value"] == cost


def _csv_tables(path: Path) -> dict[str, dict[tuple[str, str], int | None]]:
    out: dict[str, dict[tuple[str, str], int | None]] = {}
    with path.open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            out.setdefault(r["measure"], {})[(r["neighbourhood_code"], r["breakdown"])] = (
                None if r["count"] == "" else int(r["count"]))
            if r["suppressed"] == "true":
                assert r["count"] == r["value"] == r["lower_95"] == r["upper_95"] == ""
    return out


def test_csv_hides_small_counts_for_good(profile: Any, tmp_path: Path) -> None:
    out = svc.write_csv(profile, tmp_path / "p.csv")
    with out.open(encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == [*CSV_COLUMNS, *COMPARISON_COLUMNS]
    measures = _csv_tables(out)
    assert sum(v is None for t in measures.values() for v in t.values()) > 0
    for name, cells in measures.items():
        assert small_shown(cells) == [], name
        assert recoverable(cells) == [], name
    # a cost is hidden wherever its package count is
    assert {k for k, v in measures["social_care_cost"].items() if v is None} == \
        {k for k, v in measures["social_care_packages"].items() if v is None}
    # denominators (residents) are never 1-7
    with out.open(encoding="utf-8") as f:
        assert all(not (r["denominator"] and 1 <= int(r["denominator"]) <= 7)
                   for r in csv.DictReader(f))


def test_workbook_hides_small_counts_for_good(profile: Any, tmp_path: Path) -> None:
    import openpyxl

    out = svc.write_workbook(profile, tmp_path / "p.xlsx")
    book = openpyxl.load_workbook(out, read_only=True)
    seen = 0
    for ws in book.worksheets[1:]:
        rows = list(ws.iter_rows(values_only=True))
        top = next(i for i, r in enumerate(rows) if r and r[0] == "Neighbourhood")
        cells: dict[tuple[str, str], int | None] = {}
        for r in rows[top + 1:]:
            if not r or r[0] is None or r[1] is None:
                continue
            cells[(str(r[0]), str(r[1]))] = None if r[2] == "*" else int(r[2])
        if ws.title.startswith("Cost"):
            continue
        seen += 1
        assert small_shown(cells) == [], ws.title
        assert recoverable(cells) == [], ws.title
    assert seen >= 7


def test_chart_draws_each_neighbourhood_against_the_council(profile: Any,
                                                             tmp_path: Path) -> None:
    import json

    from pbc.indicators.charts import save_chart

    spec = json.loads(save_chart(svc.comparison_chart(profile),
                                 tmp_path / "c.vl.json").read_text(encoding="utf-8"))
    values = [v for data in spec["datasets"].values() for v in data]
    assert {v["neighbourhood_code"] for v in values} == set(profile.neighbourhoods)
    assert all(v["local_authority_value"] is not None for v in values)
    assert YEAR in spec["title"]["text"]


# ------------------------------------------------------------------ access
def test_a_council_sees_only_its_own_profile(economy: Warehouse) -> None:
    codes = [str(r[0]) for r in economy.query(
        "SELECT local_authority_code FROM local_authorities ORDER BY 1")]
    mine, other = codes[0], codes[1]
    with pytest.raises(AccessDenied, match=f"only local_authority:{other} or commissioner"):
        svc.neighbourhood_profile(economy, other, Principal("o", "local_authority", mine))
    for who in (Principal("p", "practice", "A81000"), Principal("g", "group", "G01"),
                Principal("x", "public", "anyone"), Principal("c", "commissioner", "Q00")):
        with pytest.raises(AccessDenied, match=f"local_authority:{mine}"):
            svc.neighbourhood_profile(economy, mine, who)
    # the commissioner of the economy may see any of its councils
    p = svc.neighbourhood_profile(economy, other, Principal("c", "commissioner", "Q99"))
    assert p.la_code == other


def test_a_council_gets_no_patient_level_rows(economy: Warehouse, tmp_path: Path) -> None:
    from pbc.services.export import export_table

    la = Principal("o", "local_authority", _la(economy))
    for table in ("patients", "apc_spells", "social_care_packages"):
        with pytest.raises(AccessDenied):
            export_table(economy, table, tmp_path / f"{table}.csv", la)
        assert not (tmp_path / f"{table}.csv").exists()


def test_cli_refuses_another_council_and_writes_the_files(economy: Warehouse,
                                                          tmp_path: Path) -> None:
    from pbc.cli import app

    codes = [str(r[0]) for r in economy.query(
        "SELECT local_authority_code FROM local_authorities ORDER BY 1")]
    runner = CliRunner()
    res = runner.invoke(app, ["la", "profile", codes[1], "-w", str(economy.root),
                              "--as", f"local_authority:{codes[0]}"])
    assert res.exit_code != 0
    assert f"only local_authority:{codes[1]}" in res.output
    res = runner.invoke(app, ["la", "profile", codes[0], "-w", str(economy.root),
                              "--as", f"local_authority:{codes[0]}",
                              "--csv", str(tmp_path / "p.csv"),
                              "--xlsx", str(tmp_path / "p.xlsx"),
                              "--chart", str(tmp_path / "p.vl.json")])
    assert res.exit_code == 0, res.output
    assert "risk scores" in res.output  # none in this warehouse: said, not skipped
    for name in ("p.csv", "p.xlsx", "p.vl.json"):
        assert (tmp_path / name).stat().st_size > 0


def test_demo_profiles(economy: Warehouse, tmp_path: Path) -> None:
    from rich.console import Console

    console = Console(record=True, width=200)
    written = svc.demo_profiles(economy, tmp_path, console)
    assert [p.suffix for p in written] == [".csv", ".xlsx", ".json"]
    assert "neighbourhood profile of" in console.export_text()


def _inputs(segments: bool) -> Any:
    from pbc.local_authorities.profiles import ProfileInputs

    people = [("N1", "F", 70, 3, "high")] * 40 + [("N1", "M", 30, 5, "low")] * 60 + \
        [("N2", "F", 80, 1, "high")] * 5  # a tiny neighbourhood: 5 residents
    frame = pd.DataFrame(people, columns=["unit", "sex", "age", "decile", "segment"])
    count = lambda cols: frame.groupby(cols).size().rename("n").reset_index()  # noqa: E731
    empty = pd.DataFrame({"unit": [], "measure": [], "age": [], "n": []})
    return ProfileInputs(
        count(["unit", "sex", "age"]), count(["unit", "decile"]),
        pd.DataFrame({"unit": ["N1"], "condition": ["DM"], "n": [12]}), empty,
        pd.DataFrame({"unit": ["N1", "N2"], "n": [30, 2]}),
        pd.DataFrame({"unit": [], "service_type": [], "packages": [], "cost": []}),
        count(["unit", "segment"]) if segments else None)


def test_shared_totals_and_risk_segments() -> None:
    from pbc.local_authorities.profiles import Breakdowns, build_profile

    b = Breakdowns(("DM",), ("home_care",), ("high", "low"))
    p = build_profile("E0", "Council", ["N1", "N2"], _inputs(True), b, YEAR)
    rows = {(r["measure"], r["neighbourhood_code"], r["breakdown"]): r for r in p.rows}
    for m in ("population", "deprivation", "risk_segment"):
        assert rows[(m, "N2", ALL)]["count"] is None  # 5 residents: hidden everywhere
        # and N1's or the council's, or the tiny neighbourhood's would follow
        assert None in (rows[(m, "N1", ALL)]["count"], rows[(m, WHOLE_COUNCIL, ALL)]["count"])
    assert rows[("risk_segment", "N1", "low")]["count"] == 60
    assert rows[("ae_attendances", "N2", ALL)]["value"] is None  # no shown population
    assert not any("risk scores" in n for n in p.notes)
    q = build_profile("E0", "Council", ["N1", "N2"], _inputs(False), b, YEAR)
    assert not any(r["measure"] == "risk_segment" for r in q.rows)
    assert any("no risk scores" in n for n in q.notes)

