"""Warming the page cache: the results signed-in users will ask for, computed before they ask.

At 10% of England a practice's monitoring pack takes a minute or more to compute (every
holder's figures; :func:`pbc.services.monitoring_pack.shared_packs`), the commissioner's
overview longer: a first visitor would wait for it. So ``pbc serve`` starts a background
thread that, at start-up and whenever the data change (a new warehouse version or a new
decision: :func:`pbc.web.pages.data_version`, checked every few seconds), computes the
landing pages' results for every role held by a user who can sign in (a password set):
the commissioner's overview, each practice's dashboard, case-finding list and budget
explanation, each group's dashboard. It calls the pages' own functions with that role's
principal, so the results land in the cache under the keys the pages use; a user asking
while it runs waits for the same computation (the cache is single-flight), never for a
second one. Nothing is written: a refusal met while warming is not an audit row (nobody
asked), and an error is logged and skipped (the page will show it when asked).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request

log = logging.getLogger("pbc.web.warmup")


def warm_request(app: FastAPI) -> Request:
    """A request that no client sent: the app and a fresh state, nothing else."""
    return Request({"type": "http", "app": app, "method": "GET", "path": "/warm-up",
                    "root_path": "", "scheme": "http", "server": ("warm-up", 0),
                    "headers": [], "query_string": b"", "state": {"pbc_warmup": True}})


def roles_to_warm(store: Any) -> list[tuple[str, str, str]]:
    """(user, role, organisation): one user for each role held by users who can sign in,
    commissioners first (their overview is the longest to compute)."""
    from sqlalchemy import select

    from pbc.decisions.accounts import Credential
    from pbc.decisions.people import User, UserRole

    with store._session() as s:
        rows = s.execute(select(User.name, UserRole.role, UserRole.organisation)
                         .join(UserRole, UserRole.user_id == User.id)
                         .where(User.name.in_(select(Credential.user_name)))
                         .order_by(UserRole.role, UserRole.organisation, User.name)).all()
    seen: dict[tuple[str, str], str] = {}
    for name, role, org in rows:
        seen.setdefault((str(role), str(org)), str(name))
    order = {"commissioner": 0, "group": 1, "practice": 2}
    return sorted(((u, r, o) for (r, o), u in seen.items() if r in order),
                  key=lambda x: (order[x[1]], x[2]))


def warm(app: FastAPI) -> int:
    """Compute every landing page's results once (see the module); how many roles."""
    from pbc.services.accounts import WEB_SESSION, SignedIn
    from pbc.services.principal import Principal
    from pbc.web import auth, pages

    request = warm_request(app)
    roles = roles_to_warm(auth.store_of(request))
    for user, role, org in roles:
        who = Principal(user, role, org, authenticated=True,  # type: ignore[arg-type]
                        source=WEB_SESSION)
        v = auth.Viewer(SignedIn(user, ""), who, [who])
        try:
            if role == "commissioner":
                builders = pages.overview_results(request, v, None)[0]
                for build in builders.values():
                    build()
            elif role == "practice":
                pages.practice_results(request, v, org, None)
                pages.case_finding_table(request, v, org)
                pages.budget_text(request, org)
            else:
                pages.holder_pack(request, v, "group", org, None)
        except Exception as e:  # logged; the page shows it when asked
            log.warning("warming %s:%s: %s", role, org, e)
    return len(roles)


class WarmUp:
    """The background thread and its state for ``/healthz`` (``starting``, ``warming``,
    ``ready``)."""

    def __init__(self, app: FastAPI, every: float) -> None:
        self.app, self.every = app, every
        self.state = "starting"
        self.seconds: float | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pbc-warm-up", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        from pbc.web import auth, pages

        warmed: tuple[str, int | None] | None = None
        while not self.stopping.is_set():
            try:
                request = warm_request(self.app)
                now = pages.read_data_version(auth.settings_of(request).warehouse,
                                              auth.store_of(request))
                if now != warmed:
                    self.state = "warming"
                    t0 = time.perf_counter()
                    n = warm(self.app)
                    self.seconds = round(time.perf_counter() - t0, 1)
                    log.info("warmed %d roles in %.1f s", n, self.seconds)
                    warmed = now
                self.state = "ready"
            except Exception as e:  # keep serving; try again later
                log.warning("warm-up: %s", e)
            self.stopping.wait(self.every)
