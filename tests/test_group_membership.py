"""Group agreements and membership: recorded and audited, overlaps refused; the decision
store's migration 0004 up and down on SQLite and PostgreSQL. (That a recorded join, loaded
into practice_groups, moves attribution is tested on a real economy in test_optouts.py.)"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect

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
