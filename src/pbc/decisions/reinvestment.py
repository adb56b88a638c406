"""Draws of approved business cases on their proposer's freed resources (the table).

A case funded from freed resources (``funding = "freed_resources"`` in its file) draws its
investment, year by year, on the proposer's reinvestment ledger
(:mod:`pbc.monitoring.freed`) when it is approved; :mod:`pbc.services.reinvestment` checks
the draw against what is reinvestable and writes these rows in the approval's transaction.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pbc.decisions.models import Base, utcnow


class ReinvestmentDraw(Base):
    """One year's draw of an approved case on its proposer's freed resources (pence)."""

    __tablename__ = "reinvestment_draws"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("business_cases.id"), index=True)
    level: Mapped[str] = mapped_column(String(10))  # practice | group
    code: Mapped[str] = mapped_column(String(20), index=True)
    financial_year: Mapped[str] = mapped_column(String(7))
    plan: Mapped[str] = mapped_column(String(250))
    amount_pence: Mapped[int] = mapped_column(BigInteger)
    approved_by: Mapped[str] = mapped_column(String(100))
    approved_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
