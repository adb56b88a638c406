"""The monthly position from a real (synthetic) warehouse: money kept, levels add up, access."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse

COMMISSIONER = Principal("analyst", "commissioner", "Q99")
PERIOD = "2025-09"  # month 6 of 2025-26


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    # budgets for 2025-26, set from 2024-25 spend, so that 2025-26's activity is monitored
    from conftest import budgeted_economy

    return budgeted_economy(tmp_path_factory.mktemp("monitoring"), practices=8, seed=21,
                            years=2, start_year=2024)  # type: ignore[return-value]


#: SQL: a priced row on a line its practice opted out of (the demo policy's [[opt_out]]),
#: which is the commissioner's, not the practice's, from the budget's held lines
OPTED_OUT = ("EXISTS (SELECT 1 FROM budget_commissioner_lines o WHERE o.kind = 'opt_out' "
             "AND o.practice_code = priced_activity.practice_code "
             "AND o.service_line = priced_activity.service_line)")


def _sql_pence(wh: Warehouse, sql: str) -> int:
    value = wh.query(sql)[0][0]
    return int(Decimal(str(value or 0)) * 100)


def test_nothing_is_lost_between_levels(budgeted: Warehouse) -> None:
    from pbc.services.monitoring import monthly_position

    practice = monthly_position(budgeted, COMMISSIONER, PERIOD, level="practice").frame
    group = monthly_position(budgeted, COMMISSIONER, PERIOD, level="group").frame
    comm = monthly_position(budgeted, COMMISSIONER, PERIOD, level="commissioner").frame
    total = lambda f: f[f.service_line == "all"]  # noqa: E731
    # spend to date, independently from the priced rows: attributed and unattributed
    spend = lambda where: _sql_pence(budgeted, f"""
        SELECT sum(price - marginal_rate_adjustment) FROM priced_activity
        WHERE financial_year = '2025-26' AND month <= 6 AND {where}""")  # noqa: E731
    attributed = spend(f"attributed AND NOT {OPTED_OUT}")
    opted_out = spend(f"attributed AND {OPTED_OUT}")
    unattributed = spend("NOT attributed")
    assert unattributed > 0 and opted_out > 0  # the economy has some, so the checks can fail
    assert int(total(practice).spend_to_date.sum()) == attributed
    assert int(total(comm).spend_to_date.sum()) == attributed + opted_out + unattributed
    # every practice is in a group each month here, so groups hold all practices' money
    assert int(total(group).spend_to_date.sum()) == attributed
    assert int(total(group).budget_to_date.sum()) == int(total(practice).budget_to_date.sum())
    # by service line too
    by_line = lambda f: f[f.service_line != "all"].groupby("service_line")[  # noqa: E731
        ["variance", "budget_to_date"]].sum()
    pd.testing.assert_frame_equal(by_line(practice), by_line(group))


def test_commissioner_budget_is_the_whole_envelope(budgeted: Warehouse) -> None:
    from pbc.services.monitoring import monthly_position

    comm = monthly_position(budgeted, COMMISSIONER, PERIOD, level="commissioner").frame
    annual = int(comm[comm.service_line == "all"].annual_budget.sum())
    budgets = _sql_pence(budgeted, "SELECT sum(budget) FROM indicative_budgets")
    held = _sql_pence(budgeted, "SELECT sum(amount) FROM budget_commissioner_lines")
    assert held > 0
    assert annual == budgets + held


def test_a_practice_sees_only_itself(budgeted: Warehouse) -> None:
    from pbc.services.monitoring import monthly_position

    code = str(budgeted.query("SELECT min(practice_code) FROM practices")[0][0])
    mine = monthly_position(budgeted, Principal("pm", "practice", code), PERIOD).frame
    assert set(mine.code) == {code}
    with pytest.raises(AccessDenied, match="own group"):
        monthly_position(budgeted, Principal("pm", "practice", code), PERIOD, level="group")
    with pytest.raises(AccessDenied):
        monthly_position(budgeted, Principal("x", "commissioner", "OTHER"), PERIOD)


def test_a_group_sees_its_member_practices_and_no_other(budgeted: Warehouse) -> None:
    """A group's lead, at the practice level, sees the practices its group holds budgets
    for in the year, with the figures the commissioner sees for them; never another's."""
    from pbc.services.monitoring import monthly_position

    rows = budgeted.query("SELECT DISTINCT group_code, practice_code FROM budget_phasing "
                          "WHERE financial_year = '2025-26' AND group_code IS NOT NULL "
                          "AND practice_code IS NOT NULL")
    members: dict[str, set[str]] = {}
    for g, p in rows:
        members.setdefault(str(g), set()).add(str(p))
    assert len(members) >= 2  # two groups, so another group's practice exists
    # a practice that moved group in the year is a member of both: the stranger is not
    group, other = next((g, o) for g in sorted(members) for o in sorted(members)
                        if o != g and members[o] - members[g])
    lead = Principal("lead", "group", group)
    everyone = monthly_position(budgeted, COMMISSIONER, PERIOD, level="practice").frame
    mine = monthly_position(budgeted, lead, PERIOD, level="practice").frame
    assert set(mine.code) == members[group]
    expected = everyone[everyone.code.isin(members[group])].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, expected)
    # one member, as the API and the dashboard ask for it
    one = sorted(members[group])[0]
    assert set(monthly_position(budgeted, lead, PERIOD, level="practice",
                                holder=one).frame.code) == {one}
    # the commissioner asking for the group's members gets the same practices
    theirs = monthly_position(budgeted, COMMISSIONER, PERIOD, level="practice",
                              members_of=group).frame
    pd.testing.assert_frame_equal(theirs, expected)
    stranger = sorted(members[other] - members[group])[0]
    with pytest.raises(AccessDenied, match=f"may not see practice {stranger}"):
        monthly_position(budgeted, lead, PERIOD, level="practice", holder=stranger)
    with pytest.raises(AccessDenied, match=f"group {other}'s member practices"):
        monthly_position(budgeted, lead, PERIOD, level="practice", members_of=other)
    with pytest.raises(AccessDenied, match="commissioner"):
        monthly_position(budgeted, lead, PERIOD, level="commissioner")


def test_no_budget_for_the_year_is_an_error(budgeted: Warehouse) -> None:
    from pbc.services.monitoring import monthly_position
    from pbc.warehouse import WarehouseError

    with pytest.raises(WarehouseError, match="no budgets are set for 2024-25"):
        monthly_position(budgeted, COMMISSIONER, "2024-09")


def test_cli_writes_the_documented_csv(budgeted: Warehouse, tmp_path: Path) -> None:
    out = tmp_path / "position.csv"
    run = subprocess.run(
        [sys.executable, "-m", "pbc.cli", "monitor", "--warehouse", str(budgeted.root),
         "--month", PERIOD, "--level", "group", "--csv", str(out), "--method", "ratio_model"],
        capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    frame = pd.read_csv(out, dtype=str)
    assert list(frame.columns)[:14] == [
        "level", "code", "service_line", "financial_year", "month", "budget_version",
        "annual_budget", "budget_to_date", "spend_to_date", "variance", "forecast_outturn",
        "forecast_method", "forecast_lower", "forecast_upper"]
    assert set(frame.forecast_method) == {"ratio_model"}
    assert frame.spend_to_date.str.fullmatch(r"-?\d+\.\d\d").all()  # pounds, two places
    assert "budget version 1 (DRAFT, not yet agreed)" in " ".join(run.stdout.split())
    bad = subprocess.run(
        [sys.executable, "-m", "pbc.cli", "monitor", "--warehouse", str(budgeted.root),
         "--month", "2025-13"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "2025-13" in bad.stderr + bad.stdout


def test_freed_resources_of_a_complete_year(budgeted: Warehouse, tmp_path: Path) -> None:
    from pbc.monitoring.freed import ReinvestmentError
    from pbc.services.monitoring import freed_resources_report, read_plans

    report = freed_resources_report(budgeted, COMMISSIONER, "2025/26")
    frame = report.frame
    assert set(frame.outturn_basis) == {"actual"}  # all twelve months are loaded
    # outturn is each practice's whole-year tariff value, from the priced rows themselves,
    # without the lines it opted out of (the commissioner's)
    actual = {str(c): int(Decimal(str(v)) * 100) for c, v in budgeted.query(f"""
        SELECT practice_code, sum(price - marginal_rate_adjustment) FROM priced_activity
        WHERE financial_year = '2025-26' AND attributed AND NOT {OPTED_OUT} GROUP BY 1""")}
    assert dict(zip(frame.code, frame.outturn, strict=True)) == actual
    for r in frame.itertuples():
        assert r.freed == max(r.budget - r.outturn, 0)
        assert r.reinvestable == -(-r.freed * 7 // 10)  # 70%, rounded up to the penny
    assert (frame.freed > 0).any()  # some practice underspent, so the check can fail
    # a plan in the next year that asks for more than is reinvestable is refused
    rich = frame.sort_values("reinvestable").iloc[-1]
    plans = tmp_path / "plans.csv"
    plans.write_text("code,financial_year,plan,amount,approved\n"
                     f"{rich.code},2026-27,falls clinic,"
                     f"{(rich.reinvestable + 1) / 100:.2f},true\n", encoding="utf-8")
    with pytest.raises(ReinvestmentError, match="falls clinic asks for"):
        freed_resources_report(budgeted, COMMISSIONER, "2025-26", plans=read_plans(plans))
    plans.write_text("code,financial_year,plan,amount\n"
                     f"{rich.code},2026-27,falls clinic,{rich.reinvestable / 100:.2f}\n",
                     encoding="utf-8")
    ok = freed_resources_report(budgeted, COMMISSIONER, "2025-26", plans=read_plans(plans))
    assert [(d.plan, d.vintage, d.amount) for d in ok.draws] == [
        ("falls clinic", "2025-26", int(rich.reinvestable))]
    bad = tmp_path / "bad.csv"
    bad.write_text("code,financial_year,plan,amount\nA,2025-26,x,lots\n", encoding="utf-8")
    with pytest.raises(ValueError, match="row 2, column amount"):
        read_plans(bad)


def test_cli_freed_resources(budgeted: Warehouse, tmp_path: Path) -> None:
    out = tmp_path / "freed.csv"
    run = subprocess.run(
        [sys.executable, "-m", "pbc.cli", "freed-resources", "--warehouse", str(budgeted.root),
         "--year", "2025-26", "--csv", str(out)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    frame = pd.read_csv(out, dtype=str)
    for col in ("code", "level", "budget", "outturn", "freed", "reinvestable", "drawn",
                "lapsed", "closing"):
        assert col in frame.columns
    assert "70%" in run.stdout
