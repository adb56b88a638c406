"""People and their roles in the decision store.

A user has a unique name and one or more roles, each scoped to an organisation (a practice,
group, commissioner or local authority code): ``practice:A81001``, ``group:G01``,
``commissioner:QHM`` (finance), ``commissioner_approver:QHM``, ``commissioner_data:QHM``,
``local_authority:E06000001``, ``administrator:QHM``. Who may do what with a role is one
table, :mod:`pbc.services.permissions`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pbc.decisions.models import Base, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    roles: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="UserRole.id")


class UserRole(Base):
    __tablename__ = "user_roles"
    __table_args__ = (UniqueConstraint("user_id", "role", "organisation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(30))
    organisation: Mapped[str] = mapped_column(String(20))
    user: Mapped[User] = relationship(back_populates="roles")
