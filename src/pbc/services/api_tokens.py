"""API tokens: issue, list, revoke, and authenticate a bearer token (``pbc users token``).

A token is a random string (:func:`secrets.token_urlsafe`, 32 bytes) shown once when it is
issued; the decision store keeps only its SHA-256 (:class:`pbc.decisions.accounts.ApiToken`),
so a copy of the database gives nobody a working token. A token acts as its user, with the
user's roles (:func:`pbc.services.accounts.principals_for`).

Who may: an administrator, or the user themself (a principal that names the user and whose
role the store confirms, ``--as ROLE:ORG:USER``, or an authenticated principal of that
user). Issuing and revoking each write an audit row (the label and id, never the token).
A request the API refuses is recorded too
(:func:`pbc.services.accounts.record_access_denied`, action ``access_denied``, entity
``request``), as docs/security.md asks of every refusal of data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from pbc.decisions.accounts import ApiToken
from pbc.decisions.audit import append
from pbc.decisions.models import utcnow
from pbc.decisions.people import User
from pbc.decisions.store import DecisionError, DecisionStore
from pbc.services.cases import resolve
from pbc.services.principal import NAMED_USER, AccessDenied, Principal

ENTITY = "api_token"
#: bytes of randomness in a token (43 URL-safe characters)
TOKEN_BYTES = 32
#: ``last_used_at`` is written at most this often per token (not a write per request)
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class TokenError(DecisionError):
    """A token request that cannot be met (no such user, label taken, no such token)."""


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``token`` is the secret, shown once and never stored."""

    id: int
    user_name: str
    label: str
    token: str


@dataclass(frozen=True)
class TokenInfo:
    """A stored token as its owner or an administrator may see it (never the secret)."""

    id: int
    user_name: str
    label: str
    created_by: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_by: str | None
    revoked_at: dt.datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _may_manage(store: DecisionStore, who: Principal, user_name: str) -> Principal:
    """``who`` resolved, if it is an administrator or ``user_name`` themself; else
    AccessDenied naming who may."""
    who = resolve(store, who)
    if who.role == "administrator":
        return who
    if who.user == user_name and (who.source == NAMED_USER or who.authenticated):
        return who
    raise AccessDenied(
        f"{who} may not manage the API tokens of {user_name!r}: only an administrator or "
        f"{user_name} themself may (--as ROLE:ORG:{user_name} with a role they hold)")


def _user_exists(store: DecisionStore, user_name: str) -> None:
    with store._session() as s:
        if s.scalar(select(User.id).where(User.name == user_name)) is None:
            raise TokenError(f"there is no user {user_name!r} in the decision store (an "
                             "administrator adds one: pbc users add NAME --role ROLE --org "
                             "CODE)")


def _info(t: ApiToken) -> TokenInfo:
    return TokenInfo(t.id, t.user_name, t.label, t.created_by, t.created_at, t.last_used_at,
                     t.revoked_by, t.revoked_at)


def issue_token(store: DecisionStore, who: Principal, user_name: str,
                label: str | None = None) -> IssuedToken:
    """A new token for an existing user; its label must differ from the user's other
    tokens that are not revoked (default ``token N``)."""
    who = _may_manage(store, who, user_name)
    _user_exists(store, user_name)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with store._tx() as s:
        mine = list(s.scalars(select(ApiToken).where(ApiToken.user_name == user_name)))
        label = (label or "").strip() or f"token {len(mine) + 1}"
        if len(label) > 100:
            raise TokenError(f"label {label[:20]!r}...: at most 100 characters")
        if any(t.label == label and t.revoked_at is None for t in mine):
            raise TokenError(f"{user_name} already has a token labelled {label!r}: revoke it "
                             "(pbc users revoke-token) or choose another --label")
        row = ApiToken(token_sha256=token_sha256(token), user_name=user_name, label=label,
                       created_by=who.user or "anonymous", created_at=utcnow())
        s.add(row)
        s.flush()
        append(s, who, "issue_api_token", ENTITY, str(row.id),
               after={"user": user_name, "label": label}, source=who.source)
        return IssuedToken(row.id, user_name, label, token)


def list_tokens(store: DecisionStore, who: Principal, user_name: str) -> list[TokenInfo]:
    """The user's tokens, oldest first, revoked ones included."""
    _may_manage(store, who, user_name)
    with store._session() as s:
        rows = s.scalars(select(ApiToken).where(ApiToken.user_name == user_name)
                         .order_by(ApiToken.id))
        return [_info(t) for t in rows]


def revoke_token(store: DecisionStore, who: Principal, user_name: str, *,
                 label: str | None = None, token_id: int | None = None) -> TokenInfo:
    """Revoke one of the user's tokens, named by label (the one not yet revoked) or id.
    From then on it is refused (401)."""
    if (label is None) == (token_id is None):
        raise TokenError("say which token to revoke: --label LABEL or --id ID")
    who = _may_manage(store, who, user_name)
    with store._tx() as s:
        query = select(ApiToken).where(ApiToken.user_name == user_name)
        if token_id is not None:
            query = query.where(ApiToken.id == token_id)
        else:
            query = query.where(ApiToken.label == label, ApiToken.revoked_at.is_(None))
        row = s.scalar(query)
        if row is None:
            which = f"id {token_id}" if token_id is not None else f"label {label!r}"
            raise TokenError(f"{user_name} has no token with {which} that can be revoked "
                             f"(pbc users tokens {user_name})")
        if row.revoked_at is not None:
            raise TokenError(f"token {row.id} ({row.label!r}) of {user_name} was already "
                             f"revoked by {row.revoked_by} at {row.revoked_at:%Y-%m-%d %H:%M}")
        row.revoked_by, row.revoked_at = who.user or "anonymous", utcnow()
        s.flush()
        append(s, who, "revoke_api_token", ENTITY, str(row.id),
               before={"user": user_name, "label": row.label, "revoked": False},
               after={"user": user_name, "label": row.label, "revoked": True},
               source=who.source)
        return _info(row)


def authenticate(store: DecisionStore, token: str) -> str | None:
    """The user a presented token acts for; None when it is unknown or revoked. Notes
    when it was last used (at most once a minute)."""
    if not token or len(token) > 200:
        return None
    digest = token_sha256(token)
    with store._session() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_sha256 == digest))
        if row is None or row.revoked_at is not None:
            return None
        user, last, token_id = row.user_name, row.last_used_at, row.id
    now = utcnow()
    if last is None or now - last >= LAST_USED_RESOLUTION:
        with store._tx() as s:
            found = s.get(ApiToken, token_id)
            if found is not None:
                found.last_used_at = now
    return str(user)
