"""Migrations of the decision store: from empty, and from the schema before people, cases
and the chained audit log (0002) with budget versions and audit rows in it; and back down.
On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

from pbc.decisions import DecisionStore, Line
from pbc.decisions.audit import GENESIS, row_digest
from pbc.decisions.store import MIGRATIONS
from pbc.services import cases as svc
from pbc.services.principal import Principal

FINANCE = Principal("fin", "commissioner", "Q99")
NEW_TABLES = {"users", "user_roles", "business_cases", "audit_head"}
NEW_COLUMNS = {"before_state", "after_state", "prev_hash", "row_hash"}


def alembic(url: str, direction: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    getattr(command, direction)(cfg, revision)


@pytest.fixture
def url(decision_url: str) -> str:
    return decision_url


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_upgrade_from_empty_and_downgrade_to_nothing(url: str) -> None:
    alembic(url, "upgrade", "head")
    assert NEW_TABLES | {"budget_versions", "audit_log", "monitoring_freezes"} <= tables(url)
    with DecisionStore(url, create=False) as store:
        assert svc.verify_audit(store, FINANCE).rows == 0
    alembic(url, "downgrade", "base")
    assert tables(url) <= {"alembic_version"}
    alembic(url, "upgrade", "head")
    with DecisionStore(url) as store:
        store.record_budgets(FINANCE, "2026-27", [Line("A81001", "ae", 1)], reason="v1")
        assert svc.verify_audit(store, FINANCE).ok


OLD_AUDIT = [  # (id, at, actor, role, action, entity, entity_id, detail)
    (1, dt.datetime(2026, 3, 1, 9, 0, 0, 123456), "fin", "commissioner:Q99",
     "record_budgets", "budget_version", "2026-27 v1", '{"reason": "first"}'),
    (2, dt.datetime(2026, 3, 2, 9, 0, 0), "fin", "commissioner:Q99", "agree_budgets",
     "budget_version", "2026-27 v1", "{}"),
    (5, dt.datetime(2026, 4, 9, 17, 30, 0), "data", "commissioner_data:Q99", "export",
     "table", "patients", '{"rows": 10}'),
]


def test_upgrade_from_0002_keeps_budgets_and_chains_old_audit_rows(url: str) -> None:
    alembic(url, "upgrade", "0002")
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("INSERT INTO budget_versions (id, financial_year, version, status, "
                       "reason, created_by, created_at) VALUES (1, '2026-27', 1, 'agreed', "
                       "'first', 'fin', :at)"), {"at": dt.datetime(2026, 3, 1)})
        c.execute(text("INSERT INTO budget_lines (version_id, practice_code, service_line, "
                       "budget_pence) VALUES (1, 'A81001', 'ae', 123456789)"))
        for row in OLD_AUDIT:
            c.execute(text("INSERT INTO audit_log (id, at, actor, actor_role, action, entity, "
                           "entity_id, detail) VALUES (:i, :at, :a, :r, :x, :e, :eid, :d)"),
                      dict(zip(["i", "at", "a", "r", "x", "e", "eid", "d"], row, strict=True)))
        if engine.dialect.name == "postgresql":  # as if the rows had taken their ids
            for table, last in (("budget_versions", 1), ("audit_log", 5)):
                c.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"{last})"))
    engine.dispose()

    alembic(url, "upgrade", "head")
    with DecisionStore(url, create=False) as store:
        assert store.lines("2026-27", 1) == [Line("A81001", "ae", 123456789)]
        log = store.audit_log()
        assert [e.id for e in log] == [1, 2, 5]
        prev = GENESIS  # the chain, recomputed here in id order
        for e, old in zip(log, OLD_AUDIT, strict=True):
            expected = row_digest(id=old[0], at=old[1], actor=old[2], actor_role=old[3],
                                  action=old[4], entity=old[5], entity_id=old[6],
                                  detail=old[7], before_state=None, after_state=None,
                                  prev_hash=prev)
            assert (e.prev_hash, e.row_hash) == (prev, expected)
            prev = expected
        assert svc.verify_audit(store, FINANCE).ok
        store.record_budgets(FINANCE, "2026-27", [Line("A81001", "ae", 1)], reason="restated")
        result = svc.verify_audit(store, FINANCE)
        assert result.ok and result.rows == 4 and result.last_id == 6
        assert store.audit_log()[-1].prev_hash == prev

    alembic(url, "downgrade", "0002")
    assert not NEW_TABLES & tables(url)
    assert not NEW_COLUMNS & columns(url, "audit_log")
    engine = create_engine(url)
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM budget_versions")).scalar() == 2
        assert c.execute(text("SELECT count(*) FROM audit_log")).scalar() == 4
    engine.dispose()
    alembic(url, "upgrade", "head")  # and up again: the chain is rebuilt over all rows
    with DecisionStore(url, create=False) as store:
        assert svc.verify_audit(store, FINANCE).rows == 4


def test_pbc_database_url_chooses_the_store(url: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from pbc.cli import app

    wh = tmp_path / "wh"
    monkeypatch.setenv("PBC_DATABASE_URL", url)
    runner = CliRunner()
    result = runner.invoke(app, ["users", "add", "admin", "--role", "administrator",
                                 "--org", "Q99", "--warehouse", str(wh)])
    assert result.exit_code == 2 and "say who you are with --as" in result.output
    result = runner.invoke(app, ["users", "add", "admin", "--role", "administrator", "--org",
                                 "Q99", "--warehouse", str(wh), "--as", "administrator:Q99"])
    assert result.exit_code == 0, result.output
    assert not (wh / "decisions.sqlite").exists()
    with DecisionStore(url, create=False) as store:
        assert svc.users(store, Principal("admin", "administrator", "Q99")) == [
            ("admin", "administrator", "Q99")]
    monkeypatch.delenv("PBC_DATABASE_URL")
    with DecisionStore.beside(wh) as store:
        assert store.url.endswith("wh/decisions.sqlite") and store.audit_log() == []


def test_migrations_build_the_schema_the_models_describe(url: str) -> None:
    """Every ORM model's table, column and nullability is what the migrations create (web
    accounts, 0008, included): a table or column added to a model without a migration, or
    the other way round, fails here."""
    import importlib
    import pkgutil

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import pbc.decisions
    from pbc.decisions.models import Base

    for module in pkgutil.iter_modules(pbc.decisions.__path__):
        importlib.import_module(f"pbc.decisions.{module.name}")
    assert {"user_credentials", "web_sessions", "login_attempts", "api_tokens"} <= set(
        Base.metadata.tables)
    alembic(url, "upgrade", "head")
    engine = create_engine(url)
    try:
        with engine.connect() as con:
            diff = compare_metadata(MigrationContext.configure(con), Base.metadata)
    finally:
        engine.dispose()
    # types are compared by alembic only loosely across dialects; tables and columns are
    # what must agree
    structural = [d for d in diff if isinstance(d, tuple) and d[0] in (
        "add_table", "remove_table", "add_column", "remove_column")]
    assert structural == []
