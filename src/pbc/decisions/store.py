"""The decision store: every commissioning decision, in a database, with an audit trail.

SQLite by default (a file beside the warehouse), PostgreSQL in production and CI. Every
state change is one transaction that also writes its :class:`AuditEvent`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from pbc.config import database_url
from pbc.decisions import audit as _audit_tables  # noqa: F401 - the audit head's table
from pbc.decisions.models import (
    AuditEvent,
    BudgetLine,
    BudgetVersion,
    FrozenPositionRow,
    MonitoringFreeze,
    utcnow,
)
from pbc.services.principal import AccessDenied, Principal

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class DecisionError(Exception):
    """A decision that cannot be recorded as asked (the message says why)."""


@dataclass(frozen=True)
class Line:
    practice_code: str
    service_line: str
    budget_pence: int
    fair_share_pence: int | None = None
    historic_pence: int | None = None


#: the columns of a frozen position row, in order (money in pence)
FROZEN_COLUMNS = ("level", "code", "service_line", "annual_budget", "budget_to_date",
                  "spend_to_date", "variance", "forecast_outturn", "forecast_lower",
                  "forecast_upper", "forecast_note")


@dataclass(frozen=True)
class Freeze:
    """A frozen monthly position's header (see :class:`MonitoringFreeze`)."""

    id: int
    commissioner_code: str
    financial_year: str
    month: int
    period: str
    budget_version: int
    budget_status: str
    forecast_method: str
    warehouse_version: int
    frozen_by: str
    frozen_role: str
    frozen_at: Any


def rows_digest(rows: Iterable[dict[str, Any]]) -> str:
    """SHA-256 of frozen rows (in order, every column): the seal checked on every read."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([row[c] for c in FROZEN_COLUMNS], default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


#: the head revision of the migrations, once read (reading the scripts costs ~0.2 s)
_HEAD: list[str] = []


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the latest schema (Alembic ``upgrade head``).

    A database already at the head is left alone after one cheap query of its
    ``alembic_version``, so opening the store many times in one process costs little."""
    from alembic import command
    from alembic.config import Config

    if _HEAD and _revision(url) == _HEAD[0]:
        return
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head")
    if not _HEAD:
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(cfg).get_current_head()
        if head:
            _HEAD.append(head)


def _revision(url: str) -> str | None:
    """The database's Alembic revision (None: not versioned yet, or unreadable)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(url)
    try:
        with engine.connect() as con:
            return con.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


class DecisionStore:
    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        if create:
            migrate(url)
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            _serialise_sqlite(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Close the store's database connections (its engine's pool)."""
        self.engine.dispose()

    def __enter__(self) -> DecisionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def beside(cls, warehouse_root: Path) -> DecisionStore:
        """The default store: a SQLite file next to the warehouse, or the database at
        ``PBC_DATABASE_URL`` when it is set (PostgreSQL in production and CI)."""
        url = database_url()
        if url:
            return cls(url)
        warehouse_root.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{warehouse_root / 'decisions.sqlite'}")

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._session() as session, session.begin():
            yield session

    @staticmethod
    def _audit(session: Session, who: Principal, action: str, entity: str, entity_id: str,
               **detail: Any) -> None:
        """Append the change's audit row, hash-chained (:func:`pbc.decisions.audit.append`)."""
        from pbc.decisions.audit import append

        append(session, who, action, entity, entity_id, **detail)

    # ------------------------------------------------------------------ budgets
    def record_budgets(
        self, who: Principal, financial_year: str, lines: Iterable[Line], *, reason: str,
        policy_sha256: str | None = None,
    ) -> int:
        """Record a new version of a year's budgets; returns its version number.

        While no version is agreed, the new version is a draft. Once one is agreed, a new
        version is a *restatement*: it needs a reason, and the agreed one is superseded."""
        _commissioner_only(who, "set budgets")
        if not reason.strip():
            raise DecisionError("a budget version needs a reason")
        with self._tx() as s:
            latest = s.scalar(select(func.max(BudgetVersion.version)).where(
                BudgetVersion.financial_year == financial_year)) or 0
            agreed = s.scalars(select(BudgetVersion).where(
                BudgetVersion.financial_year == financial_year,
                BudgetVersion.status == "agreed")).all()
            version = BudgetVersion(
                financial_year=financial_year, version=latest + 1,
                status="agreed" if agreed else "draft", reason=reason,
                policy_sha256=policy_sha256, created_by=who.user,
            )
            if agreed:  # a restatement replaces the agreed version, keeping history
                for old in agreed:
                    old.status = "superseded"
                version.agreed_by, version.agreed_at = who.user, utcnow()
            s.add(version)
            s.flush()  # the version's id, for its lines
            rows = [{**line.__dict__, "version_id": version.id} for line in lines]
            if rows:  # one multi-row INSERT, not an object per line (52,424 nationally)
                s.execute(insert(BudgetLine), rows)
            total = sum(row["budget_pence"] for row in rows)
            self._audit(s, who, "restate_budgets" if agreed else "record_budgets",
                        "budget_version", f"{financial_year} v{latest + 1}", reason=reason,
                        lines=len(rows), total_pence=total)
            return latest + 1

    def all_versions(self) -> list[BudgetVersion]:
        """Every budget version of every year (without lines)."""
        with self._session() as s:
            return list(s.scalars(select(BudgetVersion).order_by(
                BudgetVersion.financial_year, BudgetVersion.version)).all())

    def next_version(self, financial_year: str) -> int:
        """The number the next version of a year's budgets will get."""
        with self._session() as s:
            latest = s.scalar(select(func.max(BudgetVersion.version)).where(
                BudgetVersion.financial_year == financial_year)) or 0
        return int(latest) + 1

    def agree(self, who: Principal, financial_year: str, version: int) -> None:
        """Agree (freeze) a draft version."""
        _commissioner_only(who, "agree budgets")
        with self._tx() as s:
            v = self._version(s, financial_year, version)
            if v.status != "draft":
                raise DecisionError(
                    f"{financial_year} version {version} is {v.status}; only a draft can be "
                    "agreed (restate an agreed budget with a new version and a reason)")
            if s.scalar(select(func.count()).select_from(BudgetVersion).where(
                    BudgetVersion.financial_year == financial_year,
                    BudgetVersion.status == "agreed")):
                raise DecisionError(f"{financial_year} already has an agreed version")
            v.status, v.agreed_by, v.agreed_at = "agreed", who.user, utcnow()
            for other in s.scalars(select(BudgetVersion).where(
                    BudgetVersion.financial_year == financial_year,
                    BudgetVersion.status == "draft", BudgetVersion.id != v.id)):
                other.status = "superseded"
            self._audit(s, who, "agree_budgets", "budget_version",
                        f"{financial_year} v{version}")

    def current(self, financial_year: str, *, with_lines: bool = True
                ) -> BudgetVersion | None:
        """The agreed version if there is one, else the latest draft (``with_lines=False``:
        without loading its lines, for callers that need only its number and status)."""
        with self._session() as s:
            rows = s.scalars(select(BudgetVersion).where(
                BudgetVersion.financial_year == financial_year,
                BudgetVersion.status != "superseded").order_by(
                BudgetVersion.version.desc())).all()
            agreed = [r for r in rows if r.status == "agreed"]
            candidates = agreed or list(rows)
            if not candidates:
                return None
            chosen = candidates[0]
            if with_lines:
                _ = chosen.lines  # load while the session is open
            return chosen

    def lines(self, financial_year: str, version: int) -> list[Line]:
        with self._session() as s:
            v = self._version(s, financial_year, version)
            return [Line(x.practice_code, x.service_line, x.budget_pence, x.fair_share_pence,
                         x.historic_pence) for x in v.lines]

    def history(self, financial_year: str) -> list[BudgetVersion]:
        with self._session() as s:
            return list(s.scalars(select(BudgetVersion).where(
                BudgetVersion.financial_year == financial_year).order_by(BudgetVersion.version)))

    # ------------------------------------------------------------------ frozen positions
    def freeze_position(
        self, who: Principal, *, commissioner_code: str, financial_year: str, month: int,
        period: str, budget_version: int, budget_status: str, forecast_method: str,
        warehouse_version: int, rows: list[dict[str, Any]],
    ) -> Freeze:
        """Publish a month's position: stored once, never changed. A second freeze of the
        same commissioner, year and month is refused (the first one stands; what later
        data change is shown as restatements)."""
        _commissioner_only(who, "freeze a monitoring position")
        if who.organisation != commissioner_code:
            raise AccessDenied(f"{who} may not freeze commissioner {commissioner_code}'s "
                               "position")
        if not rows:
            raise DecisionError(f"{period}: the position has no rows; nothing to freeze")
        with self._tx() as s:
            old = s.scalar(select(MonitoringFreeze).where(
                MonitoringFreeze.commissioner_code == commissioner_code,
                MonitoringFreeze.financial_year == financial_year,
                MonitoringFreeze.month == month))
            if old is not None:
                raise DecisionError(
                    f"{period} ({financial_year} month {month}) was frozen on "
                    f"{old.frozen_at:%Y-%m-%d %H:%M} by {old.frozen_by} from warehouse "
                    f"version {old.warehouse_version}; a frozen position is never changed: "
                    f"pbc monitor restatements --month {period} shows what later data change")
            freeze = MonitoringFreeze(
                commissioner_code=commissioner_code, financial_year=financial_year,
                month=month, period=period, budget_version=budget_version,
                budget_status=budget_status, forecast_method=forecast_method,
                warehouse_version=warehouse_version, rows_sha256=rows_digest(rows),
                frozen_by=who.user or "anonymous",
                frozen_role=f"{who.role}:{who.organisation}")
            freeze.rows = [FrozenPositionRow(**{c: r[c] for c in FROZEN_COLUMNS}) for r in rows]
            s.add(freeze)
            s.flush()
            self._audit(s, who, "freeze_position", "monitoring_freeze",
                        f"{commissioner_code} {period}", warehouse_version=warehouse_version,
                        budget_version=budget_version, rows=len(rows),
                        authenticated=who.authenticated, source=who.source)
            return _freeze(freeze)

    def freezes(self, financial_year: str, commissioner_code: str | None = None
                ) -> list[Freeze]:
        """The frozen positions of a year (of one commissioner, or all), by month."""
        query = select(MonitoringFreeze).where(
            MonitoringFreeze.financial_year == financial_year)
        if commissioner_code is not None:
            query = query.where(MonitoringFreeze.commissioner_code == commissioner_code)
        with self._session() as s:
            return [_freeze(f) for f in s.scalars(query.order_by(
                MonitoringFreeze.month, MonitoringFreeze.commissioner_code))]

    def frozen_rows(self, freeze_id: int) -> list[dict[str, Any]]:
        """A frozen position's rows, checked against the hash taken when it was frozen
        (a row altered in the database since is refused, never shown as frozen)."""
        with self._session() as s:
            freeze = s.get(MonitoringFreeze, freeze_id)
            if freeze is None:
                raise DecisionError(f"no frozen position {freeze_id}")
            rows = [{c: getattr(r, c) for c in FROZEN_COLUMNS} for r in freeze.rows]
            if rows_digest(rows) != freeze.rows_sha256:
                raise DecisionError(
                    f"the frozen position of {freeze.period} (id {freeze_id}) no longer "
                    "matches the hash taken when it was frozen: it has been altered in the "
                    "decision store")
            return rows

    def audit_log(self) -> list[AuditEvent]:
        with self._session() as s:
            return list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))

    @staticmethod
    def _version(s: Session, financial_year: str, version: int) -> BudgetVersion:
        v = s.scalar(select(BudgetVersion).where(
            BudgetVersion.financial_year == financial_year, BudgetVersion.version == version))
        if v is None:
            raise DecisionError(f"no budget version {version} for {financial_year}")
        return v


def _serialise_sqlite(engine: Engine) -> None:
    """SQLite: every transaction starts with ``BEGIN IMMEDIATE`` (and waits up to 30 s for
    another writer), so two writers never both read the audit head, or a case, and then
    collide when they write; the second waits and then sees the first's change."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite: let us emit BEGIN ourselves
        dbapi_connection.execute("PRAGMA busy_timeout = 30000")

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _freeze(f: MonitoringFreeze) -> Freeze:
    return Freeze(f.id, f.commissioner_code, f.financial_year, f.month, f.period,
                  f.budget_version, f.budget_status, f.forecast_method, f.warehouse_version,
                  f.frozen_by, f.frozen_role, f.frozen_at)


def _commissioner_only(who: Principal, what: str) -> None:
    """The permission table's ``manage_budgets`` roles (the commissioner's finance role)."""
    from pbc.services.permissions import PERMISSIONS

    if who.role not in PERMISSIONS["manage_budgets"].roles:
        raise AccessDenied(f"{who} may not {what}: only the commissioner can (give --as "
                           "commissioner:CODE)")
