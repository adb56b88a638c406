"""Opt-outs on a real (synthetic) warehouse: the next budget version drops the line from the
holder's budget and the commissioner holds exactly its money, the statement and the
explanation name the opt-out, monitoring shows the line as the commissioner's; withdrawal
before the budget is agreed, refused after; every change audited. And group membership on
the same economy: a recorded join, loaded into practice_groups, moves attribution."""

from __future__ import annotations

import datetime as dt
import io
import shutil
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from pbc.decisions import DecisionStore
from pbc.decisions.optouts import OptOutError
from pbc.services import optouts
from pbc.services.budgets import explanation, set_indicative_budgets
from pbc.services.cases import verify_audit
from pbc.services.monitoring import monthly_position
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse

FY, PERIOD = "2025-26", "2025-09"
FINANCE = Principal("analyst", "commissioner", "Q99")
APPROVER = Principal("j.smith", "commissioner_approver", "Q99")
LINE, GROUP_LINE = "outpatient_follow_up", "day_case"


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small economy with budgets for 2025-26 (version 1, no recorded opt-outs)."""
    from conftest import budgeted_economy

    base = tmp_path_factory.mktemp("optouts")
    budgeted_economy(base, practices=4, seed=21, years=2, start_year=2024)
    return base


def _copy(economy: Path, tmp_path: Path) -> Warehouse:
    shutil.copytree(economy, tmp_path / "e", symlinks=True)
    return Warehouse(tmp_path / "e" / "wh")


def _budgets(wh: Warehouse) -> pd.DataFrame:
    rows = wh.query("SELECT practice_code, service_line, CAST(budget * 100 AS BIGINT), "
                    "CAST(calculated_budget * 100 AS BIGINT), opted_out "
                    "FROM indicative_budgets ORDER BY 1, 2")
    return pd.DataFrame(rows, columns=["practice", "line", "budget", "calculated", "opted"])


def _held(wh: Warehouse) -> dict[tuple[str, str], int]:
    rows = wh.query("SELECT practice_code, service_line, CAST(amount * 100 AS BIGINT) FROM "
                    "budget_commissioner_lines WHERE kind = 'opt_out'")
    return {(str(p), str(s)): int(a) for p, s, a in rows}


def _set(wh: Warehouse, base: Path, name: str) -> int:
    return set_indicative_budgets(wh, base / "policy.toml", FINANCE,
                                  statements=base / name).version


def test_opt_out_moves_the_line_to_the_commissioner(economy: Path, tmp_path: Path) -> None:
    wh = _copy(economy, tmp_path)
    base = wh.root.parent
    before, held_before = _budgets(wh), _held(wh)
    practice = str(wh.query("SELECT min(practice_code) FROM practices")[0][0])
    group, members = wh.query("SELECT group_code, list(practice_code ORDER BY practice_code) "
                              "FROM practices GROUP BY 1 ORDER BY 1 DESC LIMIT 1")[0]
    assert practice not in members  # the two opt-outs touch different practices
    out = io.StringIO()
    mine = optouts.demo_optout(wh.root, tmp_path / "demo", Console(file=out, width=200),
                               financial_year=FY, practice=practice, service_line=LINE)
    assert mine.status == "confirmed" and f"Opt-out {mine.id}" in out.getvalue()
    assert (tmp_path / "demo" / "opt_out.txt").read_text().startswith(f"opt-out {mine.id}:")
    with DecisionStore.beside(wh.root) as store:
        theirs = optouts.propose(store, wh, Principal("lead", "group", group), group,
                                 service_line=GROUP_LINE, financial_year=FY,
                                 reason="the group hands day cases back")
        # proposed, not confirmed: the next version must not apply it yet
        assert optouts.recorded_opt_outs(store, "Q99", FY) == [
            optouts.show(store, FINANCE, mine.id)]
        optouts.confirm(store, APPROVER, theirs.id)
        assert verify_audit(store, FINANCE).ok
    assert _set(wh, base, "v2") == 2
    after, held_after = _budgets(wh), _held(wh)
    opted = {(practice, LINE)} | {(m, GROUP_LINE) for m in members}
    key = list(zip(before.practice, before.line, strict=True))
    is_opted = pd.Series([k in opted for k in key])
    # the opted lines: budget 0, flagged; the commissioner holds exactly what they had
    assert (after.budget[is_opted] == 0).all() and after.opted[is_opted].all()
    for k, b in zip(key, before.budget, strict=True):
        if k in opted:
            assert b > 0 and held_after[k] == b, k
    # nothing else moves: every other budget is the same to the penny
    pd.testing.assert_series_equal(after.budget[~is_opted], before.budget[~is_opted])
    assert set(held_after) - set(held_before) == opted
    # money reconciles: budgets + commissioner's lines = envelope, before and after
    assert _envelope(wh) == _envelope(Warehouse(economy / "wh"))
    # the explanation and the statement name the opt-out and the money moved
    text = explanation(wh, practice)
    assert f"opt-out {mine.id}" in text and "moved from this practice's budget" in text
    money = f"£{Decimal(held_after[(practice, LINE)]) / 100:,.2f}"
    assert money in text
    workbook = next((base / "v2").glob(f"*{practice}*.xlsx"))
    assert f"opt-out {mine.id}" in _cells(workbook)
    member_text = explanation(wh, members[0])
    assert f"opt-out {theirs.id}: group {group}" in member_text
    with DecisionStore.beside(wh.root) as store:
        version = store.current(FY, with_lines=False)
        assert version is not None and f"applied: {mine.id}, {theirs.id}" in version.reason

    # monitoring: the practice's position has no such line; the commissioner's has it all
    pos = monthly_position(wh, FINANCE, PERIOD, level="practice").frame
    assert not ((pos.code == practice) & (pos.service_line == LINE)).any()
    assert not ((pos.code.isin(members)) & (pos.service_line == GROUP_LINE)).any()
    assert ((pos.code == practice) & (pos.service_line == "ae")).any()
    attributed = _pence(wh, "attributed")
    # every opted-out line of the version: these two and the policy's own [[opt_out]]
    opted_spend = _pence(wh, "attributed AND (" + " OR ".join(
        f"(practice_code = '{p}' AND service_line = '{s}')" for p, s in sorted(held_after))
        + ")")
    assert opted_spend > _pence(wh, f"practice_code = '{practice}' AND service_line = "
                                    f"'{LINE}'") > 0
    total_of = lambda f, c: int(f[f.service_line == "all"][c].sum())  # noqa: E731
    assert total_of(pos, "spend_to_date") == attributed - opted_spend
    group_pos = monthly_position(wh, FINANCE, PERIOD, level="group").frame
    assert total_of(group_pos, "spend_to_date") == attributed - opted_spend
    comm = monthly_position(wh, FINANCE, PERIOD, level="commissioner").frame
    assert total_of(comm, "spend_to_date") == attributed + _pence(wh, "NOT attributed")
    assert total_of(comm, "annual_budget") == int(after.budget.sum()) + sum(
        _all_held(wh).values())
    # the holder's budget to date no longer has the line; the commissioner's still does
    assert total_of(pos, "budget_to_date") + sum(
        _held_to_date(wh, 2).values()) == total_of(comm, "budget_to_date")


def _envelope(wh: Warehouse) -> int:
    return int(wh.query("SELECT CAST(((SELECT sum(budget) FROM indicative_budgets) + (SELECT "
                        "sum(amount) FROM budget_commissioner_lines)) * 100 AS BIGINT)")[0][0])


def _all_held(wh: Warehouse) -> dict[tuple[str, str, str], int]:
    rows = wh.query("SELECT kind, coalesce(practice_code, ''), service_line, "
                    "CAST(sum(amount) * 100 AS BIGINT) FROM budget_commissioner_lines "
                    "GROUP BY ALL")
    return {(str(k), str(p), str(s)): int(a) for k, p, s, a in rows}


def _held_to_date(wh: Warehouse, version: int) -> dict[str, int]:
    rows = wh.query("SELECT kind, CAST(sum(budget) * 100 AS BIGINT) FROM budget_phasing "
                    "WHERE financial_year = ? AND version = ? AND kind <> 'practice' "
                    "AND month <= 6 GROUP BY 1", [FY, version])
    return {str(k): int(v) for k, v in rows}


def _pence(wh: Warehouse, where: str) -> int:
    value = wh.query("SELECT sum(price - marginal_rate_adjustment) FROM priced_activity "
                     f"WHERE financial_year = '{FY}' AND month <= 6 AND price IS NOT NULL "
                     f"AND {where}")[0][0]
    return int(Decimal(str(value or 0)) * 100)


def _cells(path: Path) -> str:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    return "\n".join(str(c) for ws in wb.worksheets for row in ws.iter_rows(values_only=True)
                     for c in row if c is not None)


def test_withdrawn_before_agreement_the_line_comes_back(economy: Path, tmp_path: Path) -> None:
    wh = _copy(economy, tmp_path)
    base = wh.root.parent
    before = _budgets(wh)
    practice = str(wh.query("SELECT max(practice_code) FROM practices")[0][0])
    gp = Principal("gp", "practice", practice)
    with DecisionStore.beside(wh.root) as store:
        view = optouts.propose(store, wh, gp, practice, service_line=LINE,
                               financial_year=FY, reason="trial")
        optouts.confirm(store, APPROVER, view.id)
    _set(wh, base, "v2")
    assert int(_budgets(wh).set_index(["practice", "line"]).budget[(practice, LINE)]) == 0
    with DecisionStore.beside(wh.root) as store:
        optouts.withdraw(store, gp, view.id, "the community service fell through")
        assert optouts.show(store, gp, view.id).status == "withdrawn"
    assert _set(wh, base, "v3") == 3
    pd.testing.assert_frame_equal(_budgets(wh), before)  # the line is back, to the penny
    with DecisionStore.beside(wh.root) as store:
        store.agree(FINANCE, FY, 3)
        again = optouts.propose(store, wh, gp, practice, service_line=LINE,
                                financial_year=FY, reason="after all")
        with pytest.raises(OptOutError, match=r"budgets are agreed \(version 3\)"):
            optouts.withdraw(store, gp, again.id, "no")
        actions = [e.action for e in store.audit_log() if e.entity == "opt_out"]
        assert actions == ["propose_opt_out", "confirm_opt_out", "withdraw_opt_out",
                           "propose_opt_out"]
        assert verify_audit(store, FINANCE).ok


def test_refusals_and_the_command_line(economy: Path, tmp_path: Path) -> None:
    from pbc.cli import app

    wh = _copy(economy, tmp_path)
    practices = [str(r[0]) for r in wh.query("SELECT practice_code FROM practices ORDER BY 1")]
    mine, other = practices[0], practices[1]
    runner = CliRunner()
    w = ["--warehouse", str(wh.root)]
    # a practice cannot opt out for another
    refused = runner.invoke(app, ["optout", other, "--service-line", "ae", "--year", FY,
                                  "--reason", "x", *w, "--as", f"practice:{mine}"])
    assert refused.exit_code == 2
    assert f"only practice:{other} may" in refused.output
    ok = runner.invoke(app, ["optout", mine, "--service-line", "ae", "--year", "2025/26",
                             "--reason", "walk-in centre", *w, "--as", f"practice:{mine}"])
    assert ok.exit_code == 0, ok.output
    assert "opt-out 1 (proposed)" in ok.output and "pbc optouts confirm 1" in ok.output
    twice = runner.invoke(app, ["optout", mine, "--service-line", "ae", "--year", FY,
                                "--reason", "again", *w, "--as", f"practice:{mine}"])
    assert twice.exit_code == 2 and "already has opt-out 1" in twice.output
    bad = runner.invoke(app, ["optout", mine, "--service-line", "dentistry", "--year", FY,
                              "--reason", "x", *w, "--as", f"practice:{mine}"])
    assert bad.exit_code == 2 and "expected one of" in bad.output
    by_practice = runner.invoke(app, ["optouts", "confirm", "1", *w, "--as",
                                      f"practice:{mine}"])
    assert by_practice.exit_code == 2
    assert "only commissioner_approver:Q99 may" in by_practice.output
    confirmed = runner.invoke(app, ["optouts", "confirm", "1", *w, "--as",
                                    "commissioner_approver:Q99"])
    assert confirmed.exit_code == 0 and "opt-out 1 (confirmed)" in confirmed.output
    listed = runner.invoke(app, ["optouts", "list", "--year", FY, *w, "--as",
                                 f"practice:{other}"])
    assert listed.exit_code == 0 and "no opt-outs" in listed.output  # not its own
    listed = runner.invoke(app, ["optouts", "list", *w, "--as", "commissioner:Q99"])
    assert "opt-out 1 (confirmed)" in listed.output
    withdrawn = runner.invoke(app, ["optouts", "withdraw", "1", "--reason", "no longer",
                                    *w, "--as", f"practice:{mine}"])
    assert withdrawn.exit_code == 0 and "withdrawn by" in withdrawn.output
    audit = runner.invoke(app, ["audit", "verify", *w, "--as", "commissioner:Q99"])
    assert audit.exit_code == 0, audit.output


def test_an_opt_out_of_a_line_the_policy_does_not_delegate_is_refused() -> None:
    from conftest import DEMO_POLICY
    from pbc.budgets import read_policy

    policy = read_policy(DEMO_POLICY)
    policy = policy.model_copy(update={"scope": tuple(x for x in policy.scope if x != "ae")})
    view = optouts.OptOutView(7, "practice", "A81001", "Q99", "ae", policy.financial_year,
                              "x", "confirmed", "gp", "j.smith", None, None, "opt-out 7: ...")
    with pytest.raises(OptOutError, match=r"^opt-out 7: \.\.\.: but the .* does not "
                                          r"delegate ae"):
        optouts.with_recorded_opt_outs(policy, [view])
    kept = view.__class__(**{**view.__dict__, "service_line": "day_case"})
    added = optouts.with_recorded_opt_outs(policy, [kept]).opt_out[-1]
    assert (added.code, added.service_lines, added.reason) == ("A81001", ("day_case",),
                                                               "opt-out 7: ...")


def test_membership_change_moves_attribution(economy: Path, tmp_path: Path) -> None:
    """A recorded join, loaded into practice_groups through the loader, moves attribution
    at the next pricing: the practice's activity from its join date counts for the new
    group."""
    from pbc.cli import app
    from pbc.services.pricing import run_pricing

    wh = _copy(economy, tmp_path)
    runner = CliRunner()

    # a practice with no delivered window, and the group it is not in
    practice, home = wh.query("SELECT practice_code, group_code FROM practices WHERE "
                              "practice_code NOT IN (SELECT practice_code FROM "
                              "practice_groups) ORDER BY 1 LIMIT 1")[0]
    other = wh.query("SELECT min(group_code) FROM groups WHERE group_code <> ?", [home])[0][0]
    delivered = wh.query("SELECT count(*) FROM practice_groups")[0][0]
    money = "SELECT sum(price) FROM priced_activity WHERE price IS NOT NULL"
    total_before = wh.query(money)[0][0]

    def groups_by_day() -> dict[str, set[str]]:
        rows = wh.query("SELECT activity_date >= DATE '2025-10-01', group_code FROM "
                        "priced_activity WHERE practice_code = ? AND financial_year = "
                        "'2025-26' GROUP BY ALL", [practice])
        out: dict[str, set[str]] = {}
        for late, g in rows:
            out.setdefault("after" if late else "before", set()).add(str(g))
        return out

    assert groups_by_day() == {"before": {str(home)}, "after": {str(home)}}
    w = ["--warehouse", str(wh.root)]
    joined = runner.invoke(app, ["group", "join", practice, "--group", other, "--from",
                                 "2025-10-01", "--reason", "nearer hub", *w, "--as",
                                 f"group:{other}"])
    assert joined.exit_code == 0, joined.output
    refused = runner.invoke(app, ["group", "load", *w, "--as", f"group:{other}"])
    assert refused.exit_code == 2 and "only commissioner:Q99 may" in refused.output
    loaded = runner.invoke(app, ["group", "load", *w, "--as", "commissioner:Q99"])
    assert loaded.exit_code == 0, loaded.output
    assert f"{delivered + 1} rows, 1 recorded in pbc" in loaded.output
    # the table itself, loaded by the loader: its manifest names it and it is verified
    rows = wh.query("SELECT group_code, valid_from, valid_to FROM practice_groups WHERE "
                    "practice_code = ?", [practice])
    assert rows == [(other, dt.date(2025, 10, 1), None)]
    assert wh.query("SELECT count(*) FROM practice_groups")[0][0] == delivered + 1
    assert "practice_groups" in wh.manifest()["tables"]
    wh.verify()
    run_pricing(wh)
    seen = groups_by_day()
    assert seen == {"before": {str(home)}, "after": {str(other)}}
    assert wh.query(money)[0][0] == total_before  # pricing moved no money, only groups
    with DecisionStore.beside(wh.root) as store:
        assert verify_audit(store, FINANCE).ok
        assert [e.action for e in store.audit_log()][-2:] == ["join_group", "load_memberships"]
