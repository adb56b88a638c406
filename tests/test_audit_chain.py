"""The hash-chained audit log: any edit, deletion or insertion made directly in the
database is found by ``pbc audit verify``, which names the row and exits non-zero; on SQLite
and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from case_fixtures import BASELINE, ICB, case_data, who
from pbc.cli import app
from pbc.decisions import DecisionStore, Line
from pbc.decisions.audit import row_digest
from pbc.decisions.cases import parse_case
from pbc.services import cases as svc
from pbc.services.principal import Principal

FINANCE = Principal("fin", "commissioner", ICB)


@pytest.fixture
def store(decision_url: str) -> Iterator[DecisionStore]:
    with DecisionStore(decision_url) as s:
        s.record_budgets(FINANCE, "2026-27", [Line("A81001", "ae", 1_000_00)], reason="v1")
        s.agree(FINANCE, "2026-27", 1)
        svc.add_user(s, who("administrator"), "admin", "administrator", ICB)
        cid = svc.create_case(s, who("practice"), parse_case(case_data()), "x", BASELINE,
                              ICB).id
        svc.act(s, who("practice"), cid, "submit")
        svc.act(s, who("local_authority"), cid, "consult", response="yes")
        yield s


def sql(store: DecisionStore, statement: str, **params: object) -> None:
    with store.engine.begin() as c:
        c.execute(text(statement), params)


def check(store: DecisionStore) -> svc.Verification:
    return svc.verify_audit(store, FINANCE)


def test_untouched_log_verifies_and_chains_every_change(store: DecisionStore) -> None:
    result = check(store)
    assert result.ok and result.rows == 6 and result.last_id == 6
    rows = store.audit_log()
    assert [r.action for r in rows] == ["record_budgets", "agree_budgets", "add_user",
                                        "create_case", "submit_case", "consult_case"]
    assert rows[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.row_hash for a, b in itertools.pairwise(rows))
    consult = rows[-1]
    assert '"status": "consultation"' in (consult.before_state or "")
    assert '"status": "submitted"' in (consult.after_state or "")


@pytest.mark.parametrize("column,value", [("detail", '{"reason": "v9"}'), ("actor", "x"),
                                          ("actor_role", "commissioner:Q98"),
                                          ("after_state", '{"status": "approved"}')])
def test_an_edited_row_is_named(store: DecisionStore, column: str, value: str) -> None:
    sql(store, f"UPDATE audit_log SET {column} = :v WHERE id = 4", v=value)
    result = check(store)
    assert not result.ok and result.bad_id == 4
    assert "audit row 4" in (result.problem or "") and "changed" in (result.problem or "")


def test_an_edit_with_its_hash_recomputed_breaks_the_next_link(store: DecisionStore) -> None:
    row = store.audit_log()[2]
    forged = row_digest(id=row.id, at=row.at, actor="someone else", actor_role=row.actor_role,
                        action=row.action, entity=row.entity, entity_id=row.entity_id,
                        detail=row.detail, before_state=row.before_state,
                        after_state=row.after_state, prev_hash=row.prev_hash or "")
    sql(store, "UPDATE audit_log SET actor = 'someone else', row_hash = :h WHERE id = 3",
        h=forged)
    result = check(store)
    assert result.bad_id == 4 and "does not follow row 3" in (result.problem or "")


@pytest.mark.parametrize("deleted,named", [(1, 2), (3, 4), (6, 6)])
def test_a_deleted_row_is_found(store: DecisionStore, deleted: int, named: int) -> None:
    sql(store, "DELETE FROM audit_log WHERE id = :i", i=deleted)
    result = check(store)
    assert not result.ok and result.bad_id == named
    assert f"row {named}" in (result.problem or "")


def test_inserted_rows_are_found(store: DecisionStore) -> None:
    last = store.audit_log()[-1]
    at = dt.datetime(2026, 12, 1, 12, 0, 0)
    forged = row_digest(id=7, at=at, actor="mallory", actor_role="commissioner_approver:Q99",
                        action="approve_case", entity="business_case", entity_id="1",
                        detail="{}", before_state=None, after_state=None,
                        prev_hash=last.row_hash or "")
    insert = ("INSERT INTO audit_log (id, at, actor, actor_role, action, entity, entity_id, "
              "detail, prev_hash, row_hash) VALUES (:i, :at, 'mallory', "
              "'commissioner_approver:Q99', 'approve_case', 'business_case', '1', '{}', "
              ":p, :h)")
    # a well-forged row at the end, chained to the last one: the head does not know it
    sql(store, insert, i=7, at=at, p=last.row_hash, h=forged)
    result = check(store)
    assert result.bad_id == 7 and "was inserted" in (result.problem or "")
    sql(store, "DELETE FROM audit_log WHERE id = 7")
    assert check(store).ok
    # a row slipped in before the first one
    sql(store, insert, i=0, at=at, p="0" * 64, h="f" * 64)
    result = check(store)
    assert result.bad_id == 0 and "audit row 0" in (result.problem or "")


def test_a_refused_or_failed_change_writes_no_audit_row(store: DecisionStore) -> None:
    before = len(store.audit_log())
    with pytest.raises(Exception):  # noqa: B017 - AccessDenied
        svc.act(store, who("practice"), 1, "approve")
    with pytest.raises(Exception):  # noqa: B017 - the database's unique line constraint
        store.record_budgets(FINANCE, "2027-28", [Line("A", "ae", 1), Line("A", "ae", 2)],
                             reason="dup")
    assert len(store.audit_log()) == before and check(store).ok


def test_cli_verify_names_the_row_and_exits_non_zero(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    with DecisionStore.beside(wh) as s:
        s.record_budgets(FINANCE, "2026-27", [Line("A81001", "ae", 1_000_00)], reason="v1")
        s.agree(FINANCE, "2026-27", 1)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--warehouse", str(wh), "--as",
                             "commissioner:Q99"], terminal_width=200)
    assert ok.exit_code == 0 and "intact: 2 rows" in ok.output
    log = runner.invoke(app, ["audit", "log", "--warehouse", str(wh), "--as",
                              "commissioner:Q99", "--entity", "budget_version"],
                        terminal_width=250)
    assert log.exit_code == 0 and "agree_budgets" in log.output
    with DecisionStore.beside(wh) as s:
        sql(s, "UPDATE audit_log SET detail = '{}' WHERE id = 1")
    bad = runner.invoke(app, ["audit", "verify", "--warehouse", str(wh), "--as",
                              "commissioner:Q99"], terminal_width=200)
    assert bad.exit_code == 1 and "audit row 1" in bad.output
    refused = runner.invoke(app, ["audit", "verify", "--warehouse", str(wh), "--as",
                                  "practice:A81001"], terminal_width=200)
    assert refused.exit_code == 2 and "only administrator" in refused.output
