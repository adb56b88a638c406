"""Decision store tables (SQLAlchemy 2): budget versions, their lines, and the audit log.

Money is stored as integer pence, never as a float (docs/money.md).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class BudgetVersion(Base):
    """One version of the indicative budgets for a financial year.

    ``draft`` versions may be replaced; an ``agreed`` version is frozen; a restatement
    creates a new version (with a reason) and marks the old one ``superseded``.
    """

    __tablename__ = "budget_versions"
    __table_args__ = (UniqueConstraint("financial_year", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    financial_year: Mapped[str] = mapped_column(String(7), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))  # draft | agreed | superseded
    reason: Mapped[str] = mapped_column(Text)
    policy_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    agreed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    agreed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    lines: Mapped[list[BudgetLine]] = relationship(
        back_populates="budget_version", cascade="all, delete-orphan", order_by="BudgetLine.id"
    )


class BudgetLine(Base):
    __tablename__ = "budget_lines"
    __table_args__ = (UniqueConstraint("version_id", "practice_code", "service_line"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("budget_versions.id"), index=True)
    practice_code: Mapped[str] = mapped_column(String(12))
    service_line: Mapped[str] = mapped_column(String(40))
    budget_pence: Mapped[int] = mapped_column(BigInteger)
    fair_share_pence: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    historic_pence: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    budget_version: Mapped[BudgetVersion] = relationship(back_populates="lines")


class AuditEvent(Base):
    """One row per state change, written in the same transaction as the change, and
    hash-chained to the row before it (:mod:`pbc.decisions.audit`)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    actor_role: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(60))
    entity: Mapped[str] = mapped_column(String(60))
    entity_id: Mapped[str] = mapped_column(String(60))
    detail: Mapped[str] = mapped_column(Text, default="{}")
    before_state: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    after_state: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    row_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class MonitoringFreeze(Base):
    """A month's published monitoring position (``pbc monitor freeze``): kept as it was
    shown, forever. One per commissioner, financial year and month; never updated.

    ``warehouse_version`` is the warehouse version the figures were computed from (rows
    loaded by a later version are *late*); ``rows_sha256`` is a hash of the frozen rows,
    checked whenever they are read."""

    __tablename__ = "monitoring_freezes"
    __table_args__ = (UniqueConstraint("commissioner_code", "financial_year", "month"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    commissioner_code: Mapped[str] = mapped_column(String(12))
    financial_year: Mapped[str] = mapped_column(String(7), index=True)
    month: Mapped[int] = mapped_column(Integer)  # 1 = April
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    budget_version: Mapped[int] = mapped_column(Integer)
    budget_status: Mapped[str] = mapped_column(String(12))
    forecast_method: Mapped[str] = mapped_column(String(40))
    warehouse_version: Mapped[int] = mapped_column(Integer)
    rows_sha256: Mapped[str] = mapped_column(String(64))
    frozen_by: Mapped[str] = mapped_column(String(100))
    frozen_role: Mapped[str] = mapped_column(String(60))
    frozen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    rows: Mapped[list[FrozenPositionRow]] = relationship(
        back_populates="freeze", cascade="all, delete-orphan", order_by="FrozenPositionRow.id")


class FrozenPositionRow(Base):
    """One row of a frozen position: (level, code, service_line), money in pence."""

    __tablename__ = "frozen_position_rows"
    __table_args__ = (UniqueConstraint("freeze_id", "level", "code", "service_line"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    freeze_id: Mapped[int] = mapped_column(ForeignKey("monitoring_freezes.id"), index=True)
    level: Mapped[str] = mapped_column(String(20))
    code: Mapped[str] = mapped_column(String(20))
    service_line: Mapped[str] = mapped_column(String(40))
    annual_budget: Mapped[int] = mapped_column(BigInteger)
    budget_to_date: Mapped[int] = mapped_column(BigInteger)
    spend_to_date: Mapped[int] = mapped_column(BigInteger)
    variance: Mapped[int] = mapped_column(BigInteger)
    forecast_outturn: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    forecast_lower: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    forecast_upper: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    forecast_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    freeze: Mapped[MonitoringFreeze] = relationship(back_populates="rows")
