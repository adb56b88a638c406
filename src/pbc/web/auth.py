"""Who is signed in: the session cookie, the chosen role, CSRF checks and refusals.

A signed-in browser holds only a random session identifier in the cookie ``pbc_session``
(HttpOnly, SameSite=Strict, Secure unless the settings turn it off for local HTTP); the
decision store keeps its SHA-256, its user, its CSRF token and its idle expiry
(:mod:`pbc.services.accounts`). A user with several roles chooses one (``/role``); the
choice is kept in the cookie ``pbc_role`` and checked against the store's roles on every
request, so it can only ever name a role the user holds. Every form carries the session's
CSRF token (``csrf_token``), checked on every POST.

Single sign-on (NHS CIS2 or another OIDC provider) would replace only :func:`viewer`'s
first step: a verified subject mapped to a user name (docs/web.md); the roles, the
sessions and every check after it stay as they are.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import Request
from starlette.responses import Response

from pbc.decisions import DecisionStore
from pbc.services.accounts import (
    WEB_SESSION,
    SignedIn,
    principals_for,
    record_access_denied,
    session_for,
)
from pbc.services.principal import Principal
from pbc.web.settings import WebSettings

SESSION_COOKIE = "pbc_session"
ROLE_COOKIE = "pbc_role"
#: the login form's own CSRF token (double-submit: before sign-in there is no session)
LOGIN_COOKIE = "pbc_login_csrf"


class NotSignedIn(Exception):
    """A page asked for without a live session: the browser is sent to /login."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class ChooseRole(Exception):
    """A user with several roles who has not chosen one yet: sent to /role."""


class Forbidden(Exception):
    """A page the principal may not see (403; the attempt is in the audit log)."""

    def __init__(self, who: Principal | None, message: str, who_may: str = "") -> None:
        super().__init__(message)
        self.who, self.message, self.who_may = who, message, who_may


@dataclass(frozen=True)
class Viewer:
    """The signed-in user, their session and the principal they act as now."""

    session: SignedIn
    principal: Principal
    roles: list[Principal]


def settings_of(request: Request) -> WebSettings:
    settings: WebSettings = request.app.state.settings
    return settings


def store_of(request: Request) -> DecisionStore:
    """The decision store of the app (opened once, on first use)."""
    state = request.app.state
    store: DecisionStore | None = getattr(state, "decision_store", None)
    if store is None:
        settings = settings_of(request)
        store = (DecisionStore(settings.database_url) if settings.database_url
                 else DecisionStore.beside(settings.warehouse))
        state.decision_store = store
    return store


def idle(request: Request) -> dt.timedelta:
    return dt.timedelta(minutes=settings_of(request).session_idle_minutes)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def role_key(p: Principal) -> str:
    return f"{p.role}:{p.organisation}"


def signed_in(request: Request) -> SignedIn | None:
    sid = request.cookies.get(SESSION_COOKIE)
    return session_for(store_of(request), sid, idle=idle(request)) if sid else None


def viewer(request: Request, *, need_role: bool = True) -> Viewer:
    """The signed-in viewer, or :class:`NotSignedIn` / :class:`ChooseRole`."""
    session = signed_in(request)
    if session is None:
        raise NotSignedIn(request.url.path)
    roles = principals_for(store_of(request), session.user_name, source=WEB_SESSION)
    if not roles:
        raise Forbidden(None, f"{session.user_name} holds no role in the decision store",
                        "an administrator gives roles: pbc users add NAME --role ROLE "
                        "--org CODE")
    chosen = request.cookies.get(ROLE_COOKIE)
    principal = next((p for p in roles if role_key(p) == chosen), None)
    if principal is None and len(roles) == 1:
        principal = roles[0]
    if principal is None:
        if need_role:
            raise ChooseRole()
        principal = roles[0]
    return Viewer(session, principal, roles)


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict",
                        secure=settings_of(request).secure_cookies, path="/")


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, httponly=True, samesite="strict",
                           secure=settings_of(request).secure_cookies, path="/")


def check_csrf(expected: str, form: Any) -> bool:
    """Whether the form's ``csrf_token`` is the expected one (in constant time)."""
    given = form.get("csrf_token") if form is not None else None
    return isinstance(given, str) and bool(expected) and secrets.compare_digest(given, expected)


def deny(request: Request, v: Viewer, reason: str, who_may: str) -> Forbidden:
    """Record the refused request in the audit log and make the 403 to raise (not for the
    cache's warm-up, :mod:`pbc.web.warmup`: nobody asked)."""
    if not getattr(request.state, "pbc_warmup", False):
        record_access_denied(store_of(request), v.principal, "web_page", request.url.path,
                             reason)
    return Forbidden(v.principal, reason, who_may)


def login_url(path: str) -> str:
    return "/login" + (f"?next={quote(path, safe='/')}" if path not in ("", "/") else "")
