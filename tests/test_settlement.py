"""Year-end settlement (pbc settle): the policy's risk-sharing rules applied to real
outturns; hand-worked with fixed outturns, then end to end on a synthetic warehouse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pbc.budgets.policy import PolicyError, read_policy
from pbc.services import settlement
from pbc.services.monitoring import Outturn
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse, WarehouseError

COMMISSIONER = Principal("analyst", "commissioner", "Q99")
DEMO_POLICY = (Path(__file__).resolve().parents[1] / "src" / "pbc" / "reference" / "budgets"
               / "demo_policy.toml")
RULES = """
[risk_sharing]
overspend = "carry_forward"
[risk_sharing.risk_pool]
contribution_share = 0.02
fallback = "{fallback}"
groups = ["G01"]
[risk_sharing.real_budget.G02]
savings_share = 0.5
overspend_share = 0.5
overspend_cap = 1000
"""


def _policy(tmp_path: Path, fallback: str = "commissioner", year: str = "2025-26") -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(DEMO_POLICY.read_text(encoding="utf-8").replace(
        'financial_year = "2026-27"', f'financial_year = "{year}"')
        + RULES.format(fallback=fallback), encoding="utf-8")
    return path


@pytest.fixture
def fixed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outturns in pence, by hand: P1 and P2 in G01's pool, P3 and P4 in G02 (real budget),
    P5 in no group."""
    practices = [Outturn("P1", 100_000_00, 110_000_00, "actual"),
                 Outturn("P2", 100_000_00, 99_000_00, "actual"),
                 Outturn("P3", 120_000_00, 125_000_00, "actual"),
                 Outturn("P4", 80_000_00, 81_000_00, "actual"),
                 Outturn("P5", 50_000_00, 50_500_00, "actual")]
    groups = [Outturn("G01", 200_000_00, 209_000_00, "actual"),
              Outturn("G02", 200_000_00, 206_000_00, "actual")]

    def outturns(_wh: object, _who: object, _fy: str, *, level: str = "practice",
                 method: str = "") -> list[Outturn]:
        return practices if level == "practice" else groups

    monkeypatch.setattr(settlement, "year_outturns", outturns)
    monkeypatch.setattr(settlement, "_groups_at_year_end", lambda _wh, _fy: {
        "P1": "G01", "P2": "G01", "P3": "G02", "P4": "G02", "P5": None})


def _by_code(result: settlement.Settlement) -> dict[str, dict[str, object]]:
    return {str(r["code"]): r for r in result.frame.to_dict("records")}


@pytest.mark.usefixtures("fixed")
def test_hand_worked_settlement(tmp_path: Path) -> None:
    result = settlement.settle(Warehouse(tmp_path / "wh"), COMMISSIONER, _policy(tmp_path))
    rows = _by_code(result)
    assert set(rows) == {"P1", "P2", "G02", "P5"}  # G02's practices settle as the group
    # the pool: 2% of £100,000 each = £4,000; P1's £10,000 overspend uses it all and the
    # commissioner bears the other £6,000; P2's £1,000 underspend is the commissioner's
    p1, p2 = rows["P1"], rows["P2"]
    assert (p1["holder"], p1["pool"], p1["commissioner"]) == (2_000_00, 2_000_00, 6_000_00)
    assert (p2["holder"], p2["pool"], p2["commissioner"]) == (2_000_00, -2_000_00, -1_000_00)
    # the real budget: half of the £6,000 overspend is £3,000, capped at £1,000
    g2 = rows["G02"]
    assert (g2["variance"], g2["holder"], g2["commissioner"]) == (6_000_00, 1_000_00, 5_000_00)
    assert g2["note"] == "cap applied"
    # outside any arrangement, P5's £500 overspend is carried forward to its next budget
    p5 = rows["P5"]
    assert (p5["holder"], p5["carried_forward"], p5["commissioner"]) == (500_00, 500_00, 0)
    assert not result.forecast


@pytest.mark.usefixtures("fixed")
def test_pool_shortfall_shared_by_the_members_pro_rata_to_budget(tmp_path: Path) -> None:
    result = settlement.settle(Warehouse(tmp_path / "wh"), COMMISSIONER,
                               _policy(tmp_path, "pro_rata_budget"))
    rows = _by_code(result)
    # the £6,000 the pool cannot cover falls £3,000 on each member (equal budgets)
    assert (rows["P1"]["holder"], rows["P1"]["commissioner"]) == (5_000_00, 0)
    assert (rows["P2"]["holder"], rows["P2"]["pool"]) == (5_000_00, -5_000_00)


@pytest.mark.usefixtures("fixed")
def test_write_off_and_the_rules_that_are_refused(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    path = _policy(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace(
        'overspend = "carry_forward"', 'overspend = "write_off"'), encoding="utf-8")
    p5 = _by_code(settlement.settle(wh, COMMISSIONER, path))["P5"]
    assert (p5["holder"], p5["carried_forward"], p5["commissioner"]) == (0, 0, 500_00)
    with pytest.raises(AccessDenied, match="--as commissioner"):
        settlement.settle(wh, Principal("pm", "practice", "P1"), path)
    bare = tmp_path / "bare.toml"
    bare.write_text(DEMO_POLICY.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(WarehouseError, match=r"no \[risk_sharing\] section"):
        settlement.settle(wh, COMMISSIONER, bare)
    path.write_text(path.read_text(encoding="utf-8").replace('"G01"', '"G09"'),
                    encoding="utf-8")
    with pytest.raises(WarehouseError, match=r"group\(s\) \['G09'\]"):
        settlement.settle(wh, COMMISSIONER, path)


def test_a_group_in_both_arrangements_is_refused(tmp_path: Path) -> None:
    text = _policy(tmp_path).read_text(encoding="utf-8").replace('"G01"', '"G02"')
    path = tmp_path / "both.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match="both in the risk pool and on a real budget"):
        read_policy(path)


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    from conftest import budgeted_economy

    return budgeted_economy(tmp_path_factory.mktemp("settle"), practices=8, seed=21, years=2,
                            start_year=2024, extra_policy=RULES.format(
                                fallback="commissioner"))  # type: ignore[return-value]


def test_cli_settles_a_whole_year_to_the_penny(budgeted: Warehouse, tmp_path: Path) -> None:
    from pbc.services.monitoring import year_outturns

    out = tmp_path / "settlement.csv"
    run = subprocess.run(
        [sys.executable, "-m", "pbc.cli", "settle", "--warehouse", str(budgeted.root),
         "--policy", str(_policy(tmp_path)), "--csv", str(out)],
        capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Year-end settlement 2025-26" in run.stdout
    frame = pd.read_csv(out, dtype={"group_code": str, "code": str})
    pence = {c: (frame[c] * 100).round().astype("int64") for c in
             ("variance", "holder", "pool", "commissioner")}
    assert (pence["holder"] + pence["pool"] + pence["commissioner"]
            == pence["variance"]).all()
    assert set(frame.outturn_basis) == {"actual"}
    assert set(frame.arrangement) == {"risk pool", "real budget"}
    # every pound of variance is settled once: G02 as a group, every other practice alone
    practices = {o.code: o for o in year_outturns(budgeted, COMMISSIONER, "2025-26")}
    groups = {o.code: o for o in year_outturns(budgeted, COMMISSIONER, "2025-26",
                                               level="group")}
    pooled = frame[frame.arrangement == "risk pool"]
    group_of = settlement._groups_at_year_end(budgeted, "2025-26")
    assert sorted(pooled.code) == sorted(c for c in practices if group_of[c] != "G02")
    assert set(group_of.values()) == {"G01", "G02"}  # two pools' worth of practices
    expected = (sum(practices[c].outturn - practices[c].budget for c in pooled.code)
                + groups["G02"].outturn - groups["G02"].budget)
    assert int(pence["variance"].sum()) == expected
