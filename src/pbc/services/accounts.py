"""Web accounts: the principals a signed-in user may act as (one per role the decision
store gives them), passwords (Argon2id), sign-in throttling, server-side sessions, and the
audit row of a refused page.

The web app's sessions and the API's tokens both name a user; what that user may see is
what their roles allow (:mod:`pbc.services.permissions`), exactly as on the command line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from pbc.decisions import DecisionStore
from pbc.decisions.accounts import Credential, LoginAttempt, WebSession
from pbc.decisions.models import utcnow
from pbc.decisions.people import User, UserRole
from pbc.services.principal import AccessDenied, Principal

#: the source of a principal whose user signed in to the web app
WEB_SESSION = "web session (password checked)"
#: the source of a principal presenting an API token
API_TOKEN = "API bearer token"


def principals_for(store: DecisionStore, user_name: str, *, source: str) -> list[Principal]:
    """Every role the user holds, as authenticated principals (empty: no such user, or a
    user with no role), in a stable order (role, organisation)."""
    with store._session() as s:
        rows = s.execute(select(UserRole.role, UserRole.organisation).join(User).where(
            User.name == user_name).order_by(UserRole.role, UserRole.organisation)).all()
    return [Principal(user_name, str(role), str(org), authenticated=True,  # type: ignore[arg-type]
                      source=source) for role, org in rows]


# ------------------------------------------------------------------ passwords
#: the shortest password accepted (NCSC password guidance: length over complexity)
MIN_PASSWORD_LENGTH = 12


class AccountError(ValueError):
    """A request about an account that cannot be met; the message says why."""


class Throttled(AccountError):
    """Too many failed sign-ins for this user name or this client, recently."""


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()  # Argon2id, argon2-cffi's RFC 9106 low-memory profile


def set_password(store: DecisionStore, who: Principal, user_name: str, password: str) -> None:
    """Store ``user_name``'s password as an Argon2id hash (replacing any earlier one), with
    an audit row that names who set it and never the secret. Only an administrator, or the
    user themself (a principal naming that user, its role checked against the store)."""
    from pbc.decisions.audit import append
    from pbc.services.cases import resolve

    who = resolve(store, who)
    if who.role != "administrator" and who.user != user_name:
        raise AccessDenied(f"{who}: only an administrator or {user_name} themself may set "
                           f"{user_name}'s password")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if not principals_for(store, user_name, source=WEB_SESSION):
        raise AccountError(f"there is no user {user_name!r} with a role in the decision store "
                           "(an administrator adds one: pbc users add NAME --role ROLE --org "
                           "CODE)")
    encoded = _hasher().hash(password)
    with store._tx() as s:
        row = s.scalar(select(Credential).where(Credential.user_name == user_name))
        replaced = row is not None
        if row is None:
            row = Credential(user_name=user_name, password_hash=encoded,
                             set_by=who.user or "anonymous")
            s.add(row)
        else:
            row.password_hash, row.set_by, row.set_at = encoded, who.user or "anonymous", \
                utcnow()
        s.flush()
        append(s, who, "set_password", "user", user_name, replaced=replaced,
               source=who.source)


def _failures(s: Any, column: Any, value: str, since: dt.datetime) -> int:
    return int(s.scalar(select(func.count()).select_from(LoginAttempt).where(
        column == value, LoginAttempt.succeeded.is_(False), LoginAttempt.at >= since)) or 0)


def check_password(store: DecisionStore, user_name: str, password: str, *, client: str,
                   failures_allowed: int, window: dt.timedelta) -> bool:
    """Whether ``password`` is ``user_name``'s, recording the attempt (login_attempts).

    Refuses (:class:`Throttled`) without checking anything when ``failures_allowed``
    attempts for this user name, or from this client, failed within ``window``; the
    refused attempt is not recorded, so waiting out the window always lets one try again.
    An unknown user costs as much as a known one (a dummy hash is verified)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    since = utcnow() - window
    with store._session() as s:
        for column, value, what in ((LoginAttempt.user_name, user_name, "this user name"),
                                    (LoginAttempt.client, client, "this computer")):
            if _failures(s, column, value, since) >= failures_allowed:
                minutes = int(window.total_seconds() // 60)
                raise Throttled(f"too many failed sign-ins for {what} in the last {minutes} "
                                f"minutes: wait {minutes} minutes and try again, or ask an "
                                "administrator to reset the password")
        stored = s.scalar(select(Credential.password_hash).where(
            Credential.user_name == user_name))
    hasher = _hasher()
    try:
        ok = hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        ok = False
    with store._tx() as s:
        s.add(LoginAttempt(user_name=user_name[:100], client=client[:64], succeeded=ok))
    return ok


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(_hasher().hash(secrets.token_hex(16)))
    return _DUMMY[0]


# ------------------------------------------------------------------ sessions
def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    """A live web session: its user and the CSRF token its forms carry."""

    user_name: str
    csrf_token: str


def start_session(store: DecisionStore, user_name: str, *, idle: dt.timedelta
                  ) -> tuple[str, SignedIn]:
    """A new session for ``user_name``: (the random identifier for the cookie, the session).
    Only the identifier's SHA-256 is stored."""
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = utcnow()
    with store._tx() as s:
        s.add(WebSession(session_sha256=_sha256(session_id), user_name=user_name,
                         csrf_token=csrf, created_at=now, last_seen_at=now,
                         expires_at=now + idle))
    return session_id, SignedIn(user_name, csrf)


#: a session's idle expiry is moved on at most once a minute: a write on every request
#: would make every page wait for the decision store's commit (measured: a fifth of a warm
#: page's time); the idle limit is kept to within this
TOUCH_EVERY = dt.timedelta(seconds=60)


def session_for(store: DecisionStore, session_id: str, *, idle: dt.timedelta
                ) -> SignedIn | None:
    """The live session with this identifier (None: unknown, ended or idle too long); a
    use moves its idle expiry on (written at most once every :data:`TOUCH_EVERY`)."""
    now = utcnow()
    digest = _sha256(session_id)
    with store._session() as s:
        row = s.scalar(select(WebSession).where(WebSession.session_sha256 == digest))
        if row is None or row.ended_at is not None or row.expires_at <= now:
            return None
        signed, stale = SignedIn(row.user_name, row.csrf_token), \
            now - row.last_seen_at >= TOUCH_EVERY
    if stale:
        with store._tx() as s:
            s.execute(update(WebSession).where(
                WebSession.session_sha256 == digest, WebSession.ended_at.is_(None)).values(
                    last_seen_at=now, expires_at=now + idle))
    return signed


def end_session(store: DecisionStore, session_id: str) -> None:
    """Sign out: the session can no longer be used."""
    with store._tx() as s:
        row = s.scalar(select(WebSession).where(
            WebSession.session_sha256 == _sha256(session_id)))
        if row is not None and row.ended_at is None:
            row.ended_at = utcnow()


#: the audit log's ``entity_id`` column holds 60 characters (pbc.decisions.models)
ENTITY_ID_LENGTH = 60


def record_access_denied(store: DecisionStore, who: Principal, entity: str, what: str,
                         reason: str, **detail: object) -> None:
    """Write a refused request to the audit log (action ``access_denied``): who asked, for
    what and why it was refused. The one writer of refusals: the pages record entity
    ``web_page`` and the path, the API entity ``request`` and ``METHOD PATH`` (with the
    query in ``detail``). ``what`` longer than the column is cut to fit, and kept whole in
    the row's detail (``what``)."""
    from pbc.decisions.audit import append

    if len(what) > ENTITY_ID_LENGTH:
        detail = {**detail, "what": what}
    with store._tx() as s:
        append(s, who, "access_denied", entity, what[:ENTITY_ID_LENGTH], reason=reason,
               source=who.source, **detail)
