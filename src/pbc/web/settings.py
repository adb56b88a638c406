"""What one running web app serves: the warehouse, the decision store, cookie security."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WebSettings:
    """``warehouse``: the warehouse folder served; ``database_url``: the decision store
    (None: the warehouse's own SQLite store, or ``PBC_DATABASE_URL``, as the CLI);
    ``secure_cookies``: send the session cookie only over HTTPS (off only for local
    development and tests over plain HTTP on the loopback address)."""

    warehouse: Path
    database_url: str | None = None
    secure_cookies: bool = True
    #: a signed-in session ends after this long without a request
    session_idle_minutes: int = 30
    #: failed logins for one user name (or one client) within the window before refusing
    login_failures_allowed: int = 5
    login_window_minutes: int = 15
    #: compute the landing pages' results in a background thread at start-up and when the
    #: data change (:mod:`pbc.web.warmup`); ``pbc serve`` turns it on
    warm_up: bool = False
    #: how often the warm-up looks for changed data (seconds)
    warm_every_seconds: float = 10.0

    def to_json(self) -> str:
        """The settings for another process (``pbc serve --workers N``)."""
        import dataclasses
        import json

        return json.dumps({**dataclasses.asdict(self), "warehouse": str(self.warehouse)})

    @classmethod
    def from_json(cls, text: str) -> WebSettings:
        import json

        data = json.loads(text)
        return cls(**{**data, "warehouse": Path(data["warehouse"])})
