"""Freezing a month's position and restating it as late and revised data arrive.

A year played from monthly deliveries: load the deliveries to October, price, set budgets,
freeze August and September; then load November and December and price again. The frozen
rows never change; the frozen position plus its restatements is the fresh position, to the
penny; each restatement says why.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pbc.decisions import DecisionError, DecisionStore
from pbc.monitoring.position import LEVELS
from pbc.monitoring.restatement import KEYS, LATE, REVISED, restate
from pbc.services.freeze import freeze_month, restatements
from pbc.services.monitoring import monthly_position
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.load import load

COMMISSIONER = Principal("finance.lead", "commissioner", "Q99")
DEMO_POLICY = (Path(__file__).resolve().parents[1] / "src" / "pbc" / "reference" / "budgets"
               / "demo_policy.toml")
FROZEN = ("2025-08", "2025-09")


class Year:
    """The warehouse after the later deliveries, and what was frozen before them."""

    def __init__(self, root: Path, wh: Warehouse, deliveries: list[Path],
                 frozen: dict[str, Any], before_later: Path) -> None:
        self.root, self.wh, self.deliveries = root, wh, deliveries
        self.frozen = frozen  # period -> FreezeResult
        self.before_later = before_later  # a copy of the warehouse as frozen


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> Year:
    from pbc.services.budgets import set_indicative_budgets
    from pbc.services.pricing import run_pricing
    from pbc.synth import SynthConfig, generate

    base = tmp_path_factory.mktemp("freeze")
    generate(SynthConfig(practices=4, groups=2, local_authorities=2, seed=31, years=2,
                         start_year=2024, deliveries="monthly"), base / "in")
    deliveries = sorted(p for p in (base / "in" / "deliveries").iterdir() if p.is_dir())
    wh = Warehouse(base / "wh")
    for d in deliveries[:7]:  # 2025-04 .. 2025-10
        load(d, wh)
    run_pricing(wh)
    policy = base / "policy.toml"
    policy.write_text(DEMO_POLICY.read_text(encoding="utf-8").replace(
        'financial_year = "2026-27"', 'financial_year = "2025-26"'), encoding="utf-8")
    set_indicative_budgets(wh, policy, COMMISSIONER, statements=base / "statements")
    frozen = {p: freeze_month(wh, COMMISSIONER, p) for p in FROZEN}
    # nothing loaded since: nothing to restate
    assert restatements(wh, COMMISSIONER, "2025-09").frame.empty
    shutil.copytree(wh.root, base / "as_frozen", symlinks=True)
    for d in deliveries[7:9]:  # 2025-11, 2025-12: late rows and revisions of earlier months
        load(d, wh)
    run_pricing(wh)
    return Year(base, wh, deliveries, frozen, base / "as_frozen")


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for r in frame.to_dict("records"):
        out.append({k: (None if pd.isna(v) else v) if not isinstance(v, str) else v
                    for k, v in r.items()})
    return out


def test_frozen_rows_never_change(year: Year) -> None:
    with DecisionStore.beside(year.wh.root) as store:
        for period, result in year.frozen.items():
            stored = pd.DataFrame(store.frozen_rows(result.freeze.id))
            shown = result.frame
            assert len(stored) == len(shown) == result.rows
            for col in ("spend_to_date", "budget_to_date", "annual_budget", "variance"):
                assert stored[col].tolist() == [int(x) for x in shown[col]], (period, col)
            fc = [None if pd.isna(x) else int(x) for x in shown["forecast_outturn"]]
            assert stored["forecast_outturn"].tolist() == fc
    # and a row altered behind pbc's back is refused, never shown as frozen
    import sqlite3

    db = sqlite3.connect(year.wh.root / "decisions.sqlite")
    try:
        db.execute("UPDATE frozen_position_rows SET spend_to_date = spend_to_date + 1 "
                   "WHERE id = 1")
        db.commit()
        with DecisionStore.beside(year.wh.root) as store, \
                pytest.raises(DecisionError, match="no longer matches the hash"):
            store.frozen_rows(year.frozen[FROZEN[0]].freeze.id)
    finally:
        db.execute("UPDATE frozen_position_rows SET spend_to_date = spend_to_date - 1 "
                   "WHERE id = 1")
        db.commit()
        db.close()


def test_frozen_plus_restatements_is_the_fresh_position(year: Year) -> None:
    report = restatements(year.wh, COMMISSIONER, "2025-12")
    assert {f.period for f in report.frozen} == set(FROZEN)
    assert not report.frame.empty
    with DecisionStore.beside(year.wh.root) as store:
        for f in report.frozen:
            old = pd.DataFrame(store.frozen_rows(f.id)).set_index(KEYS)["spend_to_date"]
            mine = report.frame[report.frame.period == f.period].set_index(KEYS)["difference"]
            for level in LEVELS:
                fresh = monthly_position(year.wh, COMMISSIONER, f.period, level=level,
                                         version=f.budget_version).frame
                for r in fresh.itertuples():
                    k = (r.level, r.code, r.service_line)
                    assert old.get(k, 0) + mine.get(k, 0) == int(r.spend_to_date), k


def test_each_restatement_says_why(year: Year) -> None:
    frame = restatements(year.wh, COMMISSIONER, "2025-09").frame
    whys = set(frame.why)
    assert any(LATE in w for w in whys) and any(REVISED in w for w in whys)
    v = year.frozen["2025-09"].freeze.warehouse_version
    # independently: the rows of the latest loads that fall in months 1..6
    late = year.wh.query(f"""
        SELECT DISTINCT practice_code FROM apc_spells WHERE _load_version > {v}
        AND financial_year = '2025-26' AND month <= 6 AND practice_code IS NOT NULL""")
    practice_all = frame[(frame.level == "practice") & (frame.service_line == "all")]
    flagged = set(practice_all[practice_all.why.str.contains(LATE)].code)
    assert {p for (p,) in late} & set(practice_all.code) <= flagged
    assert frame.difference.ne(0).all()
    assert (frame.old + frame.difference == frame.new).all()


def test_a_month_is_frozen_once(year: Year) -> None:
    with pytest.raises(DecisionError, match="is never changed"):
        freeze_month(year.wh, COMMISSIONER, "2025-09")


@pytest.mark.parametrize("who", [Principal("pm", "practice", "A81001"),
                                 Principal("data", "commissioner_data", "Q99"),
                                 Principal("other", "commissioner", "Q11")])
def test_only_the_commissioners_finance_role_freezes(year: Year, who: Principal) -> None:
    with pytest.raises(AccessDenied):
        freeze_month(year.wh, who, "2025-10")


def test_a_practice_sees_only_its_own_restatements(year: Year) -> None:
    code = str(year.wh.query("SELECT min(practice_code) FROM practices")[0][0])
    frame = restatements(year.wh, Principal("pm", "practice", code), "2025-09").frame
    assert set(frame.level) == {"practice"} and set(frame.code) == {code}


def test_freezing_unpriced_loads_is_refused(year: Year, tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    shutil.copytree(year.before_later, wh.root, symlinks=True)
    load(year.deliveries[7], wh)
    with pytest.raises(WarehouseError, match="run pbc price"):
        freeze_month(wh, COMMISSIONER, "2025-10")


def test_cli_monitor_group(year: Year, tmp_path: Path) -> None:
    from pbc.cli import app

    runner = CliRunner()
    w = str(year.wh.root)
    shown = runner.invoke(app, ["monitor", "--month", "2025-10", "--warehouse", w,
                                "--level", "group"])
    assert shown.exit_code == 0, shown.output
    assert "Position at the end of 2025-10" in shown.output
    assert "Restatements of frozen months" in shown.output
    out = tmp_path / "r.csv"
    listed = runner.invoke(app, ["monitor", "restatements", "--month", "2025-09",
                                 "--warehouse", w, "--csv", str(out)])
    assert listed.exit_code == 0, listed.output
    csv = pd.read_csv(out, dtype={"code": str})
    assert list(csv.columns)[:10] == ["financial_year", "frozen_month", "period", "level",
                                      "code", "service_line", "old", "new", "difference",
                                      "why"]
    again = runner.invoke(app, ["monitor", "freeze", "--month", "2025-09", "--warehouse", w])
    assert again.exit_code == 2 and "never changed" in again.output


def test_the_pack_shows_the_restatements_of_frozen_months(year: Year, tmp_path: Path) -> None:
    import openpyxl

    from pbc.cli import app

    code = str(year.wh.query("SELECT min(practice_code) FROM practices")[0][0])
    out = tmp_path / "pack.xlsx"
    run = CliRunner().invoke(app, ["monitor", "--month", "2025-10", "--warehouse",
                                   str(year.wh.root), "--as", f"practice:{code}",
                                   "--xlsx", str(out)])
    assert run.exit_code == 0, run.output
    mine = restatements(year.wh, Principal("pm", "practice", code), "2025-10").frame
    assert len(mine)  # the later deliveries restate this practice's frozen months
    ws = openpyxl.load_workbook(out, data_only=True)["Restatements"]
    header = next(r for r in range(1, ws.max_row + 1) if ws.cell(r, 1).value == "Month")
    body = [[ws.cell(r, c).value for c in range(1, 9)]
            for r in range(header + 1, ws.max_row + 1) if ws.cell(r, 3).value == code]
    assert len(body) == len(mine)
    shown = sum(round(float(r[6]) * 100) for r in body)
    assert shown == int(mine["difference"].sum())


# ------------------------------------------------------------------ the core, any figures
cells = st.lists(st.tuples(st.sampled_from(["practice", "group"]),
                           st.sampled_from(["A", "B", "C"]),
                           st.sampled_from(["all", "ae", "day_case"]),
                           st.one_of(st.integers(-3, 3), st.integers(-10**12, 10**12))),
                  max_size=12)


@settings(max_examples=150, deadline=None)
@given(cells, cells)
def test_restate_closes_to_the_penny(old_cells: list[tuple[Any, ...]],
                                     new_cells: list[tuple[Any, ...]]) -> None:
    def frame(c: list[tuple[Any, ...]]) -> pd.DataFrame:
        f = pd.DataFrame(c, columns=[*KEYS, "spend_to_date"])
        return f.drop_duplicates(KEYS)

    old, new = frame(old_cells), frame(new_cells)
    out = restate(old, new)
    o = old.set_index(KEYS)["spend_to_date"]
    n = new.set_index(KEYS)["spend_to_date"]
    d = out.set_index(KEYS)["difference"]
    for k in set(o.index) | set(n.index):
        assert int(o.get(k, 0)) + int(d.get(k, 0)) == int(n.get(k, 0))
        assert (k in d.index) == (int(o.get(k, 0)) != int(n.get(k, 0)))


# ------------------------------------------------------------------ the store, both engines
@pytest.fixture
def store(decision_url: str) -> Iterator[DecisionStore]:
    with DecisionStore(decision_url) as s:
        yield s


def test_store_keeps_a_freeze_once(store: DecisionStore) -> None:
    rows = [{"level": "practice", "code": "A81001", "service_line": "all",
             "annual_budget": 12_000_000_00, "budget_to_date": 6_000_000_00,
             "spend_to_date": 6_100_000_01, "variance": 100_000_01,
             "forecast_outturn": None, "forecast_lower": None, "forecast_upper": None,
             "forecast_note": "no profile"}]
    args: dict[str, Any] = dict(commissioner_code="QHM", financial_year="2025-26", month=6,
                                period="2025-09", budget_version=1, budget_status="agreed",
                                forecast_method="run_rate", warehouse_version=7, rows=rows)
    icb = Principal("fin", "commissioner", "QHM")
    f = store.freeze_position(icb, **args)
    assert store.frozen_rows(f.id) == rows
    with pytest.raises(DecisionError, match="never changed"):
        store.freeze_position(icb, **{**args, "warehouse_version": 8})
    with pytest.raises(AccessDenied):
        store.freeze_position(Principal("x", "commissioner", "Q11"), **{**args, "month": 7})
    assert [x.period for x in store.freezes("2025-26")] == ["2025-09"]
    assert store.audit_log()[-1].action == "freeze_position"
