"""Group agreements and membership: the commissioner's agreement with a group of practices,
and practices joining and leaving groups, with dates.

A **group agreement** records the terms between the commissioner and a group (its text, the
day it starts, the day it is to be reviewed, and who signed it, in what role and when).
Practice-based commissioning groups ("consortia" or "localities") held such agreements with
their primary care trust, reviewed at least yearly (DH, *Practice based commissioning:
practical implementation*, 2006).

A **membership** is a window in which a practice belongs to a group: ``valid_from`` (its
first day) and ``valid_to`` (its last day; empty while open), exactly the rows of the
warehouse's ``practice_groups`` table (docs/data-contracts.md), keyed as that table is by
(practice, ``valid_from``). Joining opens a window; leaving closes one. Two windows of one
practice may not overlap (:func:`overlapping`): a practice is in one group on any day.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Date, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pbc.decisions.models import Base, utcnow
from pbc.decisions.store import DecisionError


class GroupError(DecisionError):
    """A group agreement or membership change that cannot be recorded (the message says why)."""


class GroupAgreement(Base):
    """The agreement between a commissioner and a group; ``signatories`` is JSON: a list of
    ``{"name", "role", "signed_on"}``."""

    __tablename__ = "group_agreements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_code: Mapped[str] = mapped_column(String(20), index=True)
    commissioner_code: Mapped[str] = mapped_column(String(20), index=True)
    terms: Mapped[str] = mapped_column(Text)
    starts_on: Mapped[dt.date] = mapped_column(Date)
    review_on: Mapped[dt.date] = mapped_column(Date)
    signatories: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class GroupMembership(Base):
    """A practice's membership of a group from ``valid_from`` to ``valid_to`` (inclusive;
    None: open), as recorded by pbc; a row of ``practice_groups`` once loaded."""

    __tablename__ = "group_memberships"
    __table_args__ = (UniqueConstraint("practice_code", "valid_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    practice_code: Mapped[str] = mapped_column(String(20), index=True)
    group_code: Mapped[str] = mapped_column(String(20), index=True)
    commissioner_code: Mapped[str] = mapped_column(String(20), index=True)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    joined_by: Mapped[str] = mapped_column(String(100))
    joined_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    left_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    left_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    def state(self) -> dict[str, Any]:
        return {"practice_code": self.practice_code, "group_code": self.group_code,
                "valid_from": self.valid_from.isoformat(),
                "valid_to": self.valid_to.isoformat() if self.valid_to else None}


@dataclass(frozen=True)
class Window:
    """One membership window (a ``practice_groups`` row)."""

    practice_code: str
    group_code: str
    valid_from: dt.date
    valid_to: dt.date | None
    origin: str = "warehouse"  # warehouse (delivered) | decision (recorded in pbc)

    def covers(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    def describe(self) -> str:
        to = self.valid_to.isoformat() if self.valid_to else "open"
        return f"{self.practice_code} in {self.group_code} from {self.valid_from} to {to}"


def merge_windows(delivered: Iterable[Window], recorded: Iterable[Window]) -> list[Window]:
    """The delivered ``practice_groups`` rows with pbc's recorded memberships over them: a
    recorded window replaces a delivered one with the same key (practice, ``valid_from``).
    Sorted by practice and start."""
    out = {(w.practice_code, w.valid_from): w for w in delivered}
    out.update({(w.practice_code, w.valid_from): w for w in recorded})
    return sorted(out.values(), key=lambda w: (w.practice_code, w.valid_from))


def overlapping(windows: Iterable[Window]) -> tuple[Window, Window] | None:
    """The first two windows of one practice that share a day (None: no overlap)."""
    by_practice: dict[str, list[Window]] = {}
    for w in windows:
        by_practice.setdefault(w.practice_code, []).append(w)
    for ws in by_practice.values():
        ws = sorted(ws, key=lambda w: w.valid_from)
        for a, b in itertools.pairwise(ws):
            if a.valid_to is None or a.valid_to >= b.valid_from:
                return a, b
    return None
