"""Group agreements and membership: recorded and audited, overlaps refused, and loaded into
the warehouse's practice_groups through the loader so that attribution follows (a
practice's activity after its join date counts for the new group); the decision store's
migration 0004 up and down on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from case_fixtures import small_warehouse
from pbc.decisions import DecisionStore
from pbc.decisions.groups import GroupError, Window, overlapping
from pbc.decisions.store import MIGRATIONS
from pbc.services import groups
from pbc.services.cases import verify_audit
from pbc.services.principal import Principal

FINANCE = Principal("analyst", "commissioner", "Q99")
APPROVER = Principal("j.smith", "commissioner_approver", "Q99")
TABLES = {"opt_outs", "group_agreements", "group_memberships"}


def test_overlap_rule() -> None:
    d = dt.date
    a = Window("A81001", "G01", d(2025, 4, 1), d(2025, 9, 30))
    b = Window("A81001", "G02", d(2025, 10, 1), None)
    assert overlapping([b, a]) is None
    c = Window("A81001", "G03", d(2025, 9, 30), None)
    assert overlapping([a, b, c]) == (a, c)
    assert overlapping([a, Window("A81002", "G02", d(2025, 5, 1), None)]) is None


def test_agreement_membership_and_refusals(tmp_path: Path) -> None:
    wh = small_warehouse(tmp_path / "wh")
    lead = Principal("lead", "group", "G01")
    with DecisionStore.beside(wh.root) as store:
        a = groups.agree(store, wh, APPROVER, "G01", terms="budgets delegated to the group",
                         starts_on="2026-04-01", review_on="2027-03-31",
                         signatories=[groups.Signatory.parse("Dr A Khan;group lead;2026-03-20"),
                                      groups.Signatory.parse("J Smith;director;2026-03-21")])
        assert [s.role for s in a.signatories] == ["group lead", "director"]
        with pytest.raises(GroupError, match="review date 2026-04-01 must come after"):
            groups.agree(store, wh, APPROVER, "G01", terms="t", starts_on="2026-04-01",
                         review_on="2026-04-01",
                         signatories=[groups.Signatory.parse("A;b;2026-03-01")])
        with pytest.raises(GroupError, match="expected NAME;ROLE;YYYY-MM-DD"):
            groups.Signatory.parse("Dr A Khan, lead")
        groups.join(store, wh, lead, "A81003", "G01", "2026-07-01", "closer to G01's hub")
        # a second, overlapping membership is refused, naming the first and the way out
        with pytest.raises(GroupError, match=r"A81003 cannot join G02 from 2026-09-01: it "
                           r"would overlap its membership A81003 in G01 from 2026-07-01 to "
                           r"open .*pbc group leave A81003 --group G01 --last-day 2026-08-31"):
            groups.join(store, wh, FINANCE, "A81003", "G02", "2026-09-01", "x")
        with pytest.raises(GroupError, match="already in group G01 on 2026-05-01"):
            groups.join(store, wh, lead, "A81001", "G01", "2026-05-01", "x")
        with pytest.raises(GroupError, match="G01 is practice A81001's default group"):
            groups.leave(store, wh, lead, "A81001", "G01", "2026-05-01", "x")
        left = groups.leave(store, wh, lead, "A81003", "G01", "2026-12-31", "back to G02")
        assert left.valid_to == dt.date(2026, 12, 31)
        view = groups.show(store, wh, FINANCE, "G01")
        assert [w.describe() for w in view.windows] == [
            "A81003 in G01 from 2026-07-01 to 2026-12-31"]
        assert view.agreements[0].review_on == dt.date(2027, 3, 31)
        log = [(e.action, e.entity) for e in store.audit_log()]
        assert log == [("agree_group", "group_agreement"), ("join_group", "group_membership"),
                       ("leave_group", "group_membership")]
        assert verify_audit(store, FINANCE).ok


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small priced economy (two years from 2024) with its delivered practice_groups."""
    from pbc.services.pricing import run_pricing
    from pbc.synth import SynthConfig, generate
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    base = tmp_path_factory.mktemp("groups")
    generate(SynthConfig(practices=4, groups=2, local_authorities=2, seed=5, years=2,
                         start_year=2024), base / "in")
    wh = Warehouse(base / "wh")
    load(base / "in", wh)
    run_pricing(wh)
    return base


def test_membership_change_moves_attribution(economy: Path) -> None:
    from pbc.cli import app
    from pbc.services.pricing import run_pricing
    from pbc.warehouse import Warehouse

    wh = Warehouse(economy / "wh")
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
        assert [e.action for e in store.audit_log()] == ["join_group", "load_memberships"]


def _alembic(url: str, direction: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    getattr(command, direction)(cfg, revision)


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migration_0004_up_and_down(decision_url: str, tmp_path: Path) -> None:
    _alembic(decision_url, "upgrade", "0003")
    assert not TABLES & _tables(decision_url)
    _alembic(decision_url, "upgrade", "head")
    assert _tables(decision_url) >= TABLES
    wh = small_warehouse(tmp_path / "wh")
    with DecisionStore(decision_url, create=False) as store:
        groups.join(store, wh, FINANCE, "A81003", "G01", "2026-04-01", "test")
        assert verify_audit(store, FINANCE).ok
    _alembic(decision_url, "downgrade", "0003")
    left = _tables(decision_url)
    assert not TABLES & left and {"business_cases", "audit_log", "users"} <= left
    _alembic(decision_url, "upgrade", "head")
    assert _tables(decision_url) >= TABLES
