"""Opt-outs: a practice or group hands a service line back to the commissioner for a year.

Lifecycle (who may take each step: :mod:`pbc.services.permissions`)::

    proposed --confirm--> confirmed --(next budget version set for the year)--> in the budget
        \\                    |
         +----withdraw-------+--> withdrawn       (only while the year's budget is not agreed)

The practice (or the group's lead) proposes an opt-out for its own practice or group; the
commissioner's approver confirms it. Only a confirmed opt-out is applied, and only by the
**next** budget version set for that year (``pbc budgets set``): it drops the line from the
holder's indicative budget (from every member practice's, for a group: membership on 1
April), and the commissioner holds the money instead (docs/decisions.md, "Opt-outs"). The
Department of Health's practice-based commissioning guidance lets practices take on, or
hand back, the services they hold indicative budgets for (DH, *Practice based
commissioning: budget setting refinements and clarification of health funding
flexibilities and incentive schemes*, 2006).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pbc.decisions.models import Base, utcnow
from pbc.decisions.store import DecisionError

OptOutStatus = Literal["proposed", "confirmed", "withdrawn"]
#: statuses an opt-out may still be withdrawn from, and the ones that count as active
ACTIVE = ("proposed", "confirmed")


class OptOutError(DecisionError):
    """An opt-out that cannot be recorded or changed as asked (the message says why)."""


class OptOut(Base):
    """One opt-out decision: ``holder_kind`` ``holder_code`` hands ``service_line`` back to
    ``commissioner_code`` for ``financial_year``."""

    __tablename__ = "opt_outs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder_kind: Mapped[str] = mapped_column(String(10))  # practice | group
    holder_code: Mapped[str] = mapped_column(String(20), index=True)
    commissioner_code: Mapped[str] = mapped_column(String(20), index=True)
    service_line: Mapped[str] = mapped_column(String(40))
    financial_year: Mapped[str] = mapped_column(String(7), index=True)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    proposed_by: Mapped[str] = mapped_column(String(100))
    proposed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    confirmed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    withdrawn_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    withdrawal_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    def state(self) -> dict[str, Any]:
        """What an audit row records as the opt-out's before / after."""
        return {"status": self.status, "holder": f"{self.holder_kind} {self.holder_code}",
                "service_line": self.service_line, "financial_year": self.financial_year,
                "reason": self.reason, "withdrawal_reason": self.withdrawal_reason}

    def describe(self) -> str:
        """One line naming the decision, for budget statements and explanations."""
        when = f"{self.proposed_at:%Y-%m-%d}"
        by = (f", confirmed by {self.confirmed_by} on {self.confirmed_at:%Y-%m-%d}"
              if self.confirmed_at is not None else "")
        return (f"opt-out {self.id}: {self.holder_kind} {self.holder_code} handed "
                f"{self.service_line} back to commissioner {self.commissioner_code} for "
                f"{self.financial_year} (proposed by {self.proposed_by} on {when}{by}; "
                f"reason: {self.reason})")
