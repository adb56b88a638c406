"""End to end on a small synthetic economy: load -> price -> budgets -> benchmark -> risk.

Every stage's invariants, checked on real (synthetic) data through the services the CLI and
the web app use: rows and money reconcile, budgets add up to the penny, access holds.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse
from workbooks import read_table

COMMISSIONER = Principal("analyst", "commissioner", "Q99")
POLICY = Path(__file__).resolve().parents[1] / "src" / "pbc" / "reference" / "budgets" / \
    "demo_policy.toml"


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    from pbc.services.pricing import run_pricing
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse.load import load

    base = tmp_path_factory.mktemp("pipeline")
    generate(SynthConfig(practices=8, groups=2, local_authorities=2, seed=21, years=2,
                         start_year=2024), base / "in")
    wh = Warehouse(base / "wh")
    load(base / "in", wh)
    run_pricing(wh)
    return wh


def test_every_row_is_priced_or_has_a_reason(priced: Warehouse) -> None:
    rows_in = dict(priced.query(
        "SELECT source_table, sum(rows_accepted) FROM reconciliation WHERE stage = 'load' "
        "AND source_table IN ('apc_spells', 'op_attendances', 'ae_attendances', 'prescribing') "
        "GROUP BY 1"))
    out = dict(priced.query("SELECT CASE activity_type WHEN 'apc' THEN 'apc_spells' "
                            "WHEN 'op' THEN 'op_attendances' WHEN 'ae' THEN 'ae_attendances' "
                            "ELSE 'prescribing' END, count(*) FROM priced_activity GROUP BY 1"))
    assert out == rows_in  # no row lost or invented between load and price
    assert priced.query("SELECT count(*) FROM priced_activity WHERE price IS NULL AND "
                        "unpriced_reason IS NULL")[0][0] == 0
    assert priced.query("SELECT count(*) FROM priced_activity WHERE price < 0")[0][0] == 0


def test_money_priced_equals_attributed_plus_unattributed(priced: Warehouse) -> None:
    """The price stage's reconciliation rows hold figures from outside priced_activity: rows
    in from the source tables, money in from before attribution (prescribing: the loaded
    actual cost), and they balance with what priced_activity holds."""
    rows = {r[0]: r[1:] for r in priced.query(
        "SELECT source_table, rows_in, money_in, money_out, money_unattributed "
        "FROM reconciliation WHERE stage = 'price'")}
    assert set(rows) == {"apc_spells", "op_attendances", "ae_attendances", "prescribing"}
    for table, (rows_in, money_in, money_out, unattributed) in rows.items():
        assert rows_in == priced.query(f"SELECT count(*) FROM {table}")[0][0], table
        assert Decimal(money_in) == Decimal(money_out) + Decimal(unattributed), table
    cost = priced.query("SELECT sum(actual_cost) FROM prescribing")[0][0]
    assert Decimal(rows["prescribing"][1]) == Decimal(cost)
    by_type = dict(priced.query("SELECT activity_type, sum(price) FROM priced_activity "
                                "GROUP BY 1"))
    assert Decimal(by_type["prescribing"]) == Decimal(cost)


def test_unattributed_activity_is_priced_not_dropped(priced: Warehouse) -> None:
    n, money = priced.query("SELECT count(*), sum(price) FROM priced_activity "
                            "WHERE NOT attributed")[0]
    assert n > 0 and money > 0


def test_budgets_add_up_and_explain(priced: Warehouse, tmp_path: Path) -> None:
    from pbc.services.budgets import explanation, set_indicative_budgets

    run = set_indicative_budgets(priced, POLICY, COMMISSIONER, statements=tmp_path / "st")
    s = run.result.summary
    retained = run.result.commissioner_retained
    opted = retained[retained.kind == "opt_out"].amount.sum() if len(retained) else 0
    assert int(run.result.frame.budget.sum()) + int(opted) == int(s.available.sum())
    monthly = run.monthly.groupby(["practice_code", "service_line"]).budget.sum()
    annual = run.result.frame.set_index(["practice_code", "service_line"]).budget
    assert (monthly.reindex(annual.index) == annual).all()   # phasing sums exactly
    code = run.result.frame.practice_code.iloc[0]
    assert "Indicative budget" in explanation(priced, code)
    fy = run.result.policy.financial_year
    assert (tmp_path / "st" / f"indicative_budgets_{fy}_v{run.version}.csv").exists()
    assert (tmp_path / "st" / f"practice_{code}_{fy}_v{run.version}.xlsx").exists()
    with pytest.raises(AccessDenied):
        set_indicative_budgets(priced, POLICY, Principal("pm", "practice", code))


def test_benchmark_every_indicator(priced: Warehouse) -> None:
    from pbc.services.benchmarking import list_indicators, run_benchmark

    for ind in list_indicators():
        frame = run_benchmark(priced, ind.id, level="group")
        assert len(frame) == 2, ind.id
        assert (frame.denominator >= 0).all()


def test_indicators_are_plausible_against_the_generator(priced: Warehouse) -> None:
    from pbc.services.benchmarking import run_benchmark

    ea = run_benchmark(priced, "emergency_admissions", level="commissioner",
                       financial_year="2025/26")
    assert 75 <= ea.value.iloc[0] <= 115            # generator: ≈90-100 per 1,000
    assert 75 <= ea.ratio_to_national.iloc[0] <= 115  # England 2017/18: 101 per 1,000
    dc = run_benchmark(priced, "day_case_rate", level="commissioner", financial_year="2025/26")
    assert 70 <= dc.value.iloc[0] <= 86             # generator: ≈77-80%
    fu = run_benchmark(priced, "outpatient_follow_up_ratio", level="commissioner",
                       financial_year="2025/26")
    assert 1.9 <= fu.value.iloc[0] <= 2.5          # generator: 2.2 follow-ups per first


def test_cli_price_and_benchmark(priced: Warehouse, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "pbc.cli"]
    out = subprocess.run([*cmd, "benchmark", "--indicator", "ae_attendances", "--warehouse",
                          str(priced.root), "--out", str(tmp_path / "b.xlsx"),
                          "--charts", str(tmp_path / "charts"), "--level", "group"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    import openpyxl

    book = openpyxl.load_workbook(tmp_path / "b.xlsx", read_only=True)
    assert book.sheetnames == ["Benchmark", "Monthly", "Indicator"]
    # 2 groups x 24 months (2024/25, 2025/26)
    assert len(read_table(tmp_path / "b.xlsx", "Monthly")) == 2 * 24
    charts = sorted(p.name for p in (tmp_path / "charts").iterdir())
    assert charts == [f"ae_attendances_group_{c}.svg" for c in
                      ("caterpillar", "deciles", "funnel", "spc_G01")]
    assert "<svg" in (tmp_path / "charts" / charts[0]).read_text()[:200]
    bad = subprocess.run([*cmd, "benchmark", "--indicator", "nope", "--warehouse",
                          str(priced.root)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown indicator" in bad.stderr


def test_budgets_count_the_list_on_the_last_day_of_the_prior_year(priced: Warehouse) -> None:
    """People who left or died before the budget year are not on the list budgets use."""
    from pbc.services.budgets import _frames

    frames = _frames(priced, "2025-26", person_level=False)
    everyone = priced.query("SELECT count(*) FROM patients")[0][0]
    on_list = priced.query("""
        SELECT count(*) FROM patients
        WHERE coalesce(registered_from, DATE '1900-01-01') <= DATE '2026-03-31'
          AND coalesce(registered_to, DATE '9999-12-31') >= DATE '2026-03-31'
          AND coalesce(date_of_death, DATE '9999-12-31') > DATE '2026-03-31'""")[0][0]
    assert on_list < everyone  # the synthetic economy has leavers and deaths
    assert int(frames["list_sizes"].patients.sum()) == on_list
