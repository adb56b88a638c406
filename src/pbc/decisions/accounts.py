"""Web accounts in the decision store: passwords, sessions, login attempts and API tokens.

A person signs in to ``pbc serve`` as a user of :mod:`pbc.decisions.people` (their roles
say what they may see). Secrets are never stored: a password is kept as its Argon2 hash,
and a session identifier or an API token only as its SHA-256 (the presented value is
hashed and looked up). Sessions live on the server (the cookie holds only the random
identifier), each with its own CSRF token; login attempts are recorded so that repeated
failures can be throttled; API tokens (``pbc users token``) can be revoked.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pbc.decisions.models import Base, utcnow


class Credential(Base):
    """A user's password, as an Argon2id hash (argon2-cffi's encoded form)."""

    __tablename__ = "user_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    set_by: Mapped[str] = mapped_column(String(100))
    set_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class WebSession(Base):
    """A signed-in browser session: the SHA-256 of its random identifier, and its CSRF
    token (sent in every form and checked on every state-changing request)."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_name: Mapped[str] = mapped_column(String(100), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class LoginAttempt(Base):
    """One attempt to sign in, successful or not (the throttle counts recent failures by
    user name and by client address)."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(100), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    succeeded: Mapped[bool] = mapped_column(Boolean)


class ApiToken(Base):
    """A bearer token for the REST API (``Authorization: Bearer TOKEN``), kept as the
    SHA-256 of the token; it acts as its user, with the user's roles."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_name: Mapped[str] = mapped_column(String(100), index=True)
    label: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
