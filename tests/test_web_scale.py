"""The web app at national scale: long tables in pages, a cache that a refusal does not empty,
the background warm-up, and the settings each worker process of ``pbc serve --workers N``
builds its app from (docs/web.md, "At national scale")."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from conftest import copy_economy
from pbc.decisions import DecisionStore
from pbc.decisions.models import AuditEvent
from pbc.services.accounts import set_password
from pbc.services.cases import add_user
from pbc.services.principal import Principal
from pbc.web.app import create_app
from pbc.web.settings import WebSettings
from test_web_pages import PASSWORD, signed_in


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory, web_economy_template: Path) -> Any:
    wh: Any = copy_economy(web_economy_template, tmp_path_factory.mktemp("scale") / "e")
    admin = Principal("admin", "administrator", "Q99", source="x")
    with DecisionStore.beside(wh.root) as store:
        add_user(store, Principal("admin", "administrator", "Q99"), "admin", "administrator",
                 "Q99")
        for name, role, org in (("pm", "practice", "A81001"), ("fin", "commissioner", "Q99"),
                                ("nopassword", "practice", "A81002")):
            add_user(store, admin, name, role, org)
        for name in ("pm", "fin"):
            set_password(store, admin, name, PASSWORD)
    return wh


def _app(wh: Any, **kw: Any) -> Any:
    return create_app(WebSettings(wh.root, secure_cookies=False, login_failures_allowed=50,
                                  **kw))




def _codes(body: str) -> list[str]:
    table = re.search(r'id="table-practices".*?</table>', body, re.S)
    assert table
    return re.findall(r'<a href="/practices/([A-Z0-9]+)">', table.group(0))


def _audit_rows(wh: Any) -> int:
    with DecisionStore.beside(wh.root) as store, store._session() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def test_long_tables_come_in_pages_and_download_whole(economy: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """6,553 practices are not one page: the overview shows PAGE_SIZE rows at a time, with
    Previous/Next links (htmx, keeping the sort and filter); the CSV holds every row."""
    from pbc.web import pages

    monkeypatch.setattr(pages, "PAGE_SIZE", 3)  # 4 practices: two pages
    client = signed_in(_app(economy), "fin")
    first = client.get("/overview?table=practices&sort=code&dir=asc",
                       headers={"HX-Request": "true"})
    assert first.status_code == 200
    assert _codes(first.text) == ["A81000", "A81001", "A81002"]
    assert "1 to 3 shown" in first.text and 'class="nhsuk-pagination"' in first.text
    nxt = re.search(r'nhsuk-pagination__link--next" href="([^"]+)"', first.text)
    assert nxt and "page=2" in nxt.group(1) and "sort=code" in nxt.group(1)
    second = client.get(nxt.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert _codes(second.text) == ["A81003"] and "Previous" in second.text
    assert "nhsuk-pagination__link--next" not in second.text
    csv = pd.read_csv(pd.io.common.StringIO(client.get("/download/practices.csv").text))
    assert sorted(csv["Practice"]) == ["A81000", "A81001", "A81002", "A81003"]
    # a page past the end shows the last one
    last = client.get("/overview?table=practices&sort=code&dir=asc&page=9",
                      headers={"HX-Request": "true"})
    assert _codes(last.text) == ["A81003"]


def test_a_refusal_does_not_make_every_page_compute_again(economy: Any,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The cache is keyed by the data's version: a 403 writes an audit row (kept), but
    that row changes no result, so the commissioner's overview is still served from memory
    (at national scale it takes minutes to compute)."""
    import pbc.services.monitoring as monitoring
    import pbc.services.monitoring_pack as monitoring_pack

    app = _app(economy)
    fin, pm = signed_in(app, "fin"), signed_in(app, "pm")
    table = {"headers": {"HX-Request": "true"}}
    assert fin.get("/overview?table=practices", **table).status_code == 200
    before = _audit_rows(economy)
    assert pm.get("/practices/A81002/case-finding").status_code == 403
    assert _audit_rows(economy) == before + 1  # the refusal is in the audit log

    def no(*a: Any, **k: Any) -> Any:
        raise AssertionError("computed again")

    monkeypatch.setattr(monitoring, "monthly_position", no)
    monkeypatch.setattr(monitoring_pack, "build_packs", no)
    assert fin.get("/overview?table=practices", **table).status_code == 200


def test_the_warm_up_computes_the_landing_pages_for_users_who_can_sign_in(
        economy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm-up runs in the background from the app's start-up and ``/healthz`` says
    when it is ready; after it, a first visit computes nothing: the commissioner's
    overview, the practice's dashboard, case finding and budget come from the cache. It
    warms only the roles of users with a password and writes no audit row."""
    import pbc.services.budgets as budgets
    import pbc.services.monitoring as monitoring
    import pbc.services.monitoring_pack as monitoring_pack
    import pbc.services.risk as risk
    from pbc.web import warmup
    from pbc.web.auth import store_of

    assert _app(economy).state.settings.warm_up is False  # off unless asked (pbc serve)
    app = _app(economy, warm_up=True, warm_every_seconds=0.2)
    assert [(r, o) for _, r, o in warmup.roles_to_warm(store_of(warmup.warm_request(app)))
            ] == [("commissioner", "Q99"), ("practice", "A81001")]  # A81002: no password
    before = _audit_rows(economy)
    with TestClient(app) as client:  # runs the app's start-up (the warm-up thread)
        deadline = time.monotonic() + 120
        while client.get("/healthz").json()["warm_up"] != "ready":
            assert time.monotonic() < deadline, "not warm within 120 s"
            time.sleep(0.2)
        assert app.state.warm_up.seconds is not None
        assert _audit_rows(economy) == before

        def no(*a: Any, **k: Any) -> Any:
            raise AssertionError("computed on the first visit")

        for module, name in ((monitoring, "monthly_position"),
                             (monitoring_pack, "build_packs"),
                             (monitoring_pack, "shared_packs"), (risk, "case_finding_list"),
                             (budgets, "explanation")):
            monkeypatch.setattr(module, name, no)
        fin, pm = signed_in(app, "fin"), signed_in(app, "pm")
        assert fin.get("/overview").status_code == 200
        for path in ("/practices/A81001", "/practices/A81001/case-finding",
                     "/practices/A81001/budget"):
            assert pm.get(path).status_code == 200, path
    assert TestClient(_app(economy)).get("/healthz").json() == {"status": "ok",
                                                                "warm_up": "off"}


def test_each_worker_builds_its_app_from_the_same_settings(
        economy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pbc serve --workers N`` hands uvicorn a factory; each worker process reads the
    settings from the environment and serves the same warehouse the same way."""
    import uvicorn
    from typer.testing import CliRunner

    from pbc.cli import app as cli
    from pbc.web.app import SETTINGS_VARIABLE, create_app_from_environment

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append((target, kw)))
    monkeypatch.delenv(SETTINGS_VARIABLE, raising=False)
    r = CliRunner().invoke(cli, ["serve", "--warehouse", str(economy.root), "--workers", "3",
                                 "--insecure-cookies", "--port", "8123"])
    assert r.exit_code == 0, r.output
    target, kw = calls[0]
    assert target == "pbc.web.app:create_app_from_environment"
    assert kw["factory"] is True and kw["workers"] == 3 and kw["port"] == 8123
    import os

    settings = WebSettings.from_json(os.environ[SETTINGS_VARIABLE])
    assert settings == WebSettings(economy.root.resolve(), secure_cookies=False, warm_up=True)
    worker = create_app_from_environment()
    assert worker.state.settings == settings
    monkeypatch.delenv(SETTINGS_VARIABLE)
    with pytest.raises(RuntimeError, match="pbc serve"):
        create_app_from_environment()
