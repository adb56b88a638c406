"""The web app's pages: sign-in, sessions, CSRF, throttling, access (403 with its audit row),
the commissioner overview, the practice dashboard, case finding, the budget explainer and
the downloads, each compared with the service's own output or the warehouse."""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from conftest import copy_economy
from pbc.decisions import DecisionStore
from pbc.decisions.accounts import Credential, WebSession
from pbc.decisions.models import AuditEvent, utcnow
from pbc.pricing.schema import TARIFF_VALUE_SQL
from pbc.services.accounts import set_password
from pbc.services.cases import add_user
from pbc.services.principal import Principal
from pbc.web.app import create_app
from pbc.web.settings import WebSettings

PASSWORD = "correct horse battery"
ADMIN = Principal("admin", "administrator", "Q99")
PERIOD = "2025-09"  # mid-year: budget to date is not the annual budget
OPTED_OUT = ("SELECT practice_code, service_line FROM budget_phasing WHERE kind = 'opt_out' "
             "AND practice_code IS NOT NULL")


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory, web_economy_template: Path) -> Any:
    wh: Any = copy_economy(web_economy_template, tmp_path_factory.mktemp("web") / "e")
    with DecisionStore.beside(wh.root) as store:
        add_user(store, ADMIN, "admin", "administrator", "Q99")
        admin = Principal("admin", "administrator", "Q99", source="x")
        for name, role, org in (("pm", "practice", "A81001"), ("fin", "commissioner", "Q99"),
                                ("fin", "practice", "A81000"), ("lead", "group", "G02")):
            add_user(store, admin, name, role, org)
        for name in ("admin", "pm", "fin", "lead"):
            set_password(store, admin, name, PASSWORD)
    return wh


def _app(wh: Any, **kw: Any) -> Any:
    kw.setdefault("secure_cookies", False)
    kw.setdefault("login_failures_allowed", 50)
    return create_app(WebSettings(wh.root, **kw))


@pytest.fixture(scope="module")
def app(economy: Any) -> Any:
    return _app(economy)


def _token(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def login(client: TestClient, user: str, password: str = PASSWORD) -> Any:
    page = client.get("/login")
    return client.post("/login", data={"username": user, "password": password,
                                       "csrf_token": _token(page.text)},
                       follow_redirects=False)


def signed_in(app: Any, user: str, role: str | None = None) -> TestClient:
    client = TestClient(app)
    assert login(client, user).status_code == 303
    if role:
        r = client.post("/role", data={"role": role,
                                       "csrf_token": _token(client.get("/role").text)},
                        follow_redirects=False)
        assert r.status_code == 303
    return client


def _store(wh: Any) -> DecisionStore:
    return DecisionStore.beside(wh.root)


# ------------------------------------------------------------------ sign-in
def test_sign_in_good_and_bad_and_the_session_cookie(economy: Any) -> None:
    app = _app(economy, secure_cookies=True)
    client = TestClient(app, base_url="https://testserver")
    bad = login(client, "pm", "not the password")
    assert bad.status_code == 401 and "not right" in bad.text
    assert "pbc_session" not in client.cookies
    good = login(client, "pm")
    assert good.status_code == 303 and good.headers["location"] == "/"
    cookie = next(c for c in good.headers.get_list("set-cookie")
                  if c.startswith("pbc_session="))
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict"} <= flags
    sid = cookie.split(";")[0].split("=", 1)[1]
    with _store(economy) as store, store._session() as s:
        rows = s.scalars(select(WebSession).where(WebSession.user_name == "pm")).all()
    assert hashlib.sha256(sid.encode()).hexdigest() in {r.session_sha256 for r in rows}
    assert all(sid not in (r.session_sha256, r.csrf_token) for r in rows)
    # one role: straight to the practice's dashboard
    assert client.get("/", follow_redirects=False).headers["location"] == "/practices/A81001"
    # without secure_cookies (local HTTP) the cookie is not marked Secure
    plain = login(TestClient(_app(economy)), "pm")
    cookie = next(c for c in plain.headers.get_list("set-cookie")
                  if c.startswith("pbc_session="))
    assert "secure" not in cookie.lower()


def test_not_signed_in_goes_to_login(app: Any) -> None:
    r = TestClient(app).get("/practices/A81001", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/practices/A81001"


def test_login_is_throttled_by_user_name_and_by_client(economy: Any) -> None:
    app = _app(economy, login_failures_allowed=3)
    client = TestClient(app, client=("10.9.9.9", 5000))
    for _ in range(3):
        assert login(client, "lead", "wrong wrong wrong").status_code == 401
    refused = login(client, "lead")  # the right password, but too many failures
    assert refused.status_code == 429 and "too many failed sign-ins" in refused.text.lower()
    # the same client, another user name: refused for the client
    assert login(client, "admin").status_code == 429
    # another client, that user name: refused for the user name
    other = TestClient(app, client=("10.9.9.8", 5000))
    assert login(other, "lead").status_code == 429
    assert login(other, "admin").status_code == 303


def test_csrf_token_is_checked_on_every_post(app: Any) -> None:
    client = signed_in(app, "fin")
    assert client.post("/role", data={"role": "commissioner:Q99"}).status_code == 403
    assert client.post("/role", data={"role": "commissioner:Q99",
                                      "csrf_token": "forged"}).status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/role").status_code == 200  # still signed in
    # the login form's own token (before there is a session)
    assert TestClient(app).post("/login", data={"username": "pm", "password": PASSWORD}
                                ).status_code == 403
    page = client.get("/role")
    r = client.post("/logout", data={"csrf_token": _token(page.text)},
                    follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/role", follow_redirects=False).headers["location"].startswith(
        "/login")


def test_a_session_ends_after_its_idle_time(app: Any, economy: Any) -> None:
    import datetime as dt

    from pbc.services.accounts import TOUCH_EVERY

    client = signed_in(app, "pm")
    sid = hashlib.sha256(client.cookies["pbc_session"].encode()).hexdigest()
    # a request moves the idle expiry on once its last move is TOUCH_EVERY old, not on
    # every request (a write per page)
    with _store(economy) as store, store._tx() as s:
        s.execute(update(WebSession).where(WebSession.session_sha256 == sid).values(
            last_seen_at=utcnow() - TOUCH_EVERY, expires_at=utcnow() + dt.timedelta(
                seconds=30)))
    assert client.get("/practices/A81001/budget").status_code == 200
    with _store(economy) as store, store._tx() as s:
        row = s.scalar(select(WebSession).where(WebSession.session_sha256 == sid))
        assert row is not None and row.expires_at > utcnow() + dt.timedelta(minutes=5)
        seen = row.last_seen_at
    assert client.get("/practices/A81001/budget").status_code == 200
    with _store(economy) as store, store._tx() as s:
        row = s.scalar(select(WebSession).where(WebSession.session_sha256 == sid))
        assert row is not None and row.last_seen_at == seen  # not written again at once
        s.execute(update(WebSession).where(WebSession.session_sha256 == sid).values(
            expires_at=utcnow()))
    r = client.get("/practices/A81001/budget", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_a_user_with_several_roles_chooses_one(app: Any) -> None:
    client = signed_in(app, "fin")
    assert client.get("/", follow_redirects=False).headers["location"] == "/role"
    r = client.post("/role", data={"role": "administrator:Q99",
                                   "csrf_token": _token(client.get("/role").text)})
    assert r.status_code == 400  # not one of fin's roles
    client = signed_in(app, "fin", "practice:A81000")
    assert client.get("/", follow_redirects=False).headers["location"] == "/practices/A81000"


# ------------------------------------------------------------------ access
def test_another_practices_case_finding_is_refused_and_audited(app: Any, economy: Any
                                                               ) -> None:
    client = signed_in(app, "pm")
    for path in ("/practices/A81002/case-finding", "/download/case-finding.csv?code=A81002"):
        r = client.get(path)
        assert r.status_code == 403
        assert ("A81002" in r.text and "audit log" in r.text.lower()) or path.startswith(
            "/download")
        with _store(economy) as store, store._session() as s:
            last = s.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert last is not None
        assert (last.action, last.actor, last.actor_role) == ("access_denied", "pm",
                                                              "practice:A81001")
        assert last.entity_id == path.split("?")[0]
    # the commissioner may not see patients' rows either
    assert signed_in(app, "fin", "commissioner:Q99").get(
        "/practices/A81001/case-finding").status_code == 403


# ------------------------------------------------------------------ pages
def _html_rows(page: str, table: str) -> list[list[str]]:
    block = page.split(f'id="table-{table}"', 1)[1].split("</table>", 1)[0]
    body = block.split("<tbody", 1)[1]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r, re.S) for r in rows]
    return [[html.unescape(re.sub(r"<[^>]+>", "", c).strip()) for c in row] for row in cells]


def _money(d: Any) -> str:
    d = Decimal(str(d)).quantize(Decimal("0.01"))
    return f"-£{-d:,.2f}" if d < 0 else f"£{d:,.2f}"


def test_commissioner_overview_shows_every_practice_as_the_service_does(
        app: Any, economy: Any) -> None:
    from pbc.monitoring.position import TOTAL, in_pounds
    from pbc.services.monitoring import monthly_position

    client = signed_in(app, "fin", "commissioner:Q99")
    r = client.get(f"/overview?month={PERIOD}")
    assert r.status_code == 200
    pos = monthly_position(economy, Principal("fin", "commissioner", "Q99"), PERIOD,
                           level="practice")
    want = in_pounds(pos.frame[pos.frame.service_line == TOTAL]).set_index("code")
    rows = {r[0]: r for r in _html_rows(r.text, "practices")}
    assert set(rows) == set(want.index) and len(rows) == 4
    for code, row in rows.items():
        assert row[2:] == [_money(want.loc[code, c]) for c in (
            "annual_budget", "budget_to_date", "spend_to_date", "variance",
            "forecast_outturn")]
    # spend to date, independently, from the priced activity (a line the practice opted
    # out of is the commissioner's)
    sql = (f"SELECT practice_code, sum({TARIFF_VALUE_SQL}) FROM priced_activity WHERE "
           "financial_year = '2025-26' AND month <= 6 AND attributed AND price IS NOT NULL "
           f"AND (practice_code, service_line) NOT IN ({OPTED_OUT}) GROUP BY 1")
    for code, spend in economy.query(sql):
        assert rows[code][4] == _money(spend)
    assert len(_html_rows(r.text, "groups")) == 2
    loads = _html_rows(r.text, "loads")
    assert loads and all(row[-1] == "yes" for row in loads)
    # the chart: the monitoring pack's own Vega-Lite specification
    spec = json.loads(re.search(r'<script type="application/json" id="chart-spec">(.*?)'
                                r"</script>", r.text, re.S).group(1))
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    assert "cumulative spend against phased budget" in json.dumps(spec["title"])


def test_tables_sort_and_filter_through_htmx(app: Any) -> None:
    client = signed_in(app, "fin", "commissioner:Q99")
    r = client.get("/overview?table=practices&sort=spend_to_date&dir=desc",
                   headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<html" not in r.text and 'id="table-practices"' in r.text
    spend = [Decimal(row[4].replace("£", "").replace(",", ""))
             for row in _html_rows(r.text, "practices")]
    assert spend == sorted(spend, reverse=True) and len(spend) == 4
    r = client.get("/overview?table=practices&q=A81002", headers={"HX-Request": "true"})
    assert [row[0] for row in _html_rows(r.text, "practices")] == ["A81002"]


def test_practice_dashboard_and_case_finding_for_its_own_user(app: Any, economy: Any) -> None:
    from pbc.services import risk

    client = signed_in(app, "pm")
    r = client.get(f"/practices/A81001?month={PERIOD}")
    assert r.status_code == 200
    spend = economy.query(
        f"SELECT sum({TARIFF_VALUE_SQL}) FROM priced_activity WHERE practice_code = 'A81001' "
        "AND financial_year = '2025-26' AND month <= 6 AND attributed AND price IS NOT NULL AND "
        f"(practice_code, service_line) NOT IN ({OPTED_OUT})")[0][0]
    assert re.search(r'id="spend-to-date">([^<]+)<', r.text).group(1) == _money(spend)
    assert _html_rows(r.text, "practice-position") and _html_rows(r.text, "practice-drivers")
    cf = client.get("/practices/A81001/case-finding")
    assert cf.status_code == 200
    want = risk.case_finding_list(economy, Principal("pm", "practice", "A81001"), "A81001", 50)
    rows = _html_rows(cf.text, "case-finding")
    assert [row[1] for row in rows] == [str(w["patient_id"]) for w in want]
    assert [row[7] for row in rows] == [str(w["top_factors"]) for w in want]


def test_budget_explainer_is_the_services_explanation(app: Any, economy: Any) -> None:
    from pbc.services.budgets import explanation

    client = signed_in(app, "pm")
    r = client.get("/practices/A81001/budget")
    assert r.status_code == 200
    shown = re.findall(r'<p class="pbc-explanation__line">(.*?)</p>', r.text, re.S)
    assert [html.unescape(s) for s in shown] == [
        line for line in explanation(economy, "A81001").splitlines() if line.strip()]
    # a group's lead sees its own members' budgets, not another group's
    lead = signed_in(app, "lead")
    assert lead.get("/practices/A81002/budget").status_code == 200
    assert lead.get("/practices/A81001/budget").status_code == 403


def test_downloads_parse_and_hold_the_tables_rows(app: Any) -> None:
    client = signed_in(app, "fin", "commissioner:Q99")
    page = client.get("/overview").text
    for table in ("practices", "loads"):
        rows = _html_rows(page, table)
        csv = client.get(f"/download/{table}.csv")
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        frame = pd.read_csv(io.StringIO(csv.text))
        assert len(frame) == len(rows)
        xlsx = client.get(f"/download/{table}.xlsx")
        assert xlsx.status_code == 200
        sheet = pd.read_excel(io.BytesIO(xlsx.content), header=None)
        assert str(rows[0][0]) in set(sheet.astype(str).values.ravel())
    csv = pd.read_csv(io.StringIO(client.get("/download/practices.csv").text))
    assert list(csv["Practice"]) == [r[0] for r in _html_rows(page, "practices")]
    pm = signed_in(app, "pm")
    cf = pm.get("/download/case-finding.xlsx?code=A81001")
    assert cf.status_code == 200 and len(pd.read_excel(io.BytesIO(cf.content))) > 0


# ------------------------------------------------------------------ accounts (CLI)
def test_users_password_stores_an_argon2id_hash_for_an_admin_or_the_user(
        economy: Any) -> None:
    from pbc.cli import app as cli

    runner = CliRunner()
    wh = str(economy.root)
    r = runner.invoke(cli, ["users", "password", "lead", "--warehouse", wh,
                            "--password-stdin", "--as", "group:G02:lead"],
                      input="a new long password\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["users", "password", "pm", "--warehouse", wh,
                            "--password-stdin", "--as", "group:G02:lead"],
                      input="a new long password\n")
    assert r.exit_code == 2 and "only an administrator or pm" in r.output
    r = runner.invoke(cli, ["users", "password", "lead", "--warehouse", wh,
                            "--password-stdin", "--as", "administrator:Q99:admin"],
                      input="short\n")
    assert r.exit_code == 2 and "12 characters" in r.output
    with _store(economy) as store, store._session() as s:
        stored = s.scalar(select(Credential.password_hash).where(
            Credential.user_name == "lead"))
        audit = s.scalars(select(AuditEvent).where(AuditEvent.action == "set_password",
                                                   AuditEvent.entity_id == "lead")).all()
    assert stored is not None and stored.startswith("$argon2id$")
    assert audit and all("a new long password" not in (a.detail or "") for a in audit)
    assert login(TestClient(_app(economy)), "lead", "a new long password").status_code == 303
    with _store(economy) as store:  # put it back for the other tests
        set_password(store, Principal("admin", "administrator", "Q99", source="x"), "lead",
                     PASSWORD)


def test_serve_is_a_command(tmp_path: Path) -> None:
    from pbc.cli import app as cli

    r = CliRunner().invoke(cli, ["serve", "--warehouse", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no warehouse" in r.output


def test_a_decision_is_seen_at_the_next_request_despite_the_cache(app: Any, economy: Any
                                                                   ) -> None:
    """Pages keep services' results per app; agreeing the budget (a decision, with its
    audit row) must show at once. Last in the module: it agrees the shared budget."""
    from pbc.services.budgets import agree

    client = signed_in(app, "fin", "commissioner:Q99")
    url = f"/overview?month={PERIOD}&table=practices"
    before = client.get(url, headers={"HX-Request": "true"}).text
    assert "draft, not agreed" in before
    assert client.get(url, headers={"HX-Request": "true"}).text == before  # from the cache
    agree(economy, Principal("fin", "commissioner", "Q99"), "2025-26", 1)
    after = client.get(url, headers={"HX-Request": "true"}).text
    assert "draft, not agreed" not in after and "agreed)" in after


def test_concurrent_first_requests_compute_once_and_users_of_one_practice_share(
        economy: Any) -> None:
    """The page cache is single-flight (eight simultaneous first requests: one computation)
    and keyed by role and organisation, not the user's name (20 users of one practice share
    its results; access is checked per request before the cache is asked)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from starlette.requests import Request

    from pbc.web.pages import _key, cached

    request = Request({"type": "http", "app": _app(economy), "headers": []})
    calls: list[int] = []
    lock = threading.Lock()

    def slow() -> int:
        with lock:
            calls.append(1)
        time.sleep(0.3)
        return 42

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: cached(request, ("test", "x"), slow), range(8)))
    assert got == [42] * 8 and calls == [1]

    def refused() -> int:
        raise PermissionError("no")

    for _ in range(2):  # a refusal is not kept: asked again, it is computed again
        with pytest.raises(PermissionError):
            cached(request, ("test", "refused"), refused)
    assert _key(Principal("a", "practice", "A81001")) == _key(
        Principal("b", "practice", "A81001")) != _key(Principal("a", "practice", "A81002"))


def test_a_page_kept_whole_carries_each_users_own_token_and_name(economy: Any) -> None:
    """The landing pages are rendered once per role and organisation (pages.whole_page)
    with placeholders where the user's CSRF token and name go: two users of one practice
    each get their own, the page is rendered once for both, nothing of either user is
    kept, and a refused user is refused (and audited) every time."""
    from pbc.web import pages

    with DecisionStore.beside(economy.root) as store:
        admin = Principal("admin", "administrator", "Q99", source="x")
        add_user(store, admin, "pm.two", "practice", "A81001")
        set_password(store, admin, "pm.two", PASSWORD)
    app = _app(economy)
    one, two = signed_in(app, "pm"), signed_in(app, "pm.two")
    rendered: list[str] = []
    real = pages.practice_results

    def counting(*args: Any, **kw: Any) -> Any:
        rendered.append(args[2])
        return real(*args, **kw)

    pages.practice_results = counting  # type: ignore[assignment]
    try:
        first, second = one.get("/practices/A81001"), two.get("/practices/A81001")
    finally:
        pages.practice_results = real  # type: ignore[assignment]
    assert first.status_code == second.status_code == 200 and rendered == ["A81001"]
    for r, user, other in ((first, "pm", "pm.two"), (second, "pm.two", "pm")):
        assert f"{user} (practice A81001)" in r.text and f"{other} (practice" not in r.text
        assert pages.HOLE_CSRF not in r.text and pages.HOLE_USER not in r.text
    assert _token(first.text) != _token(second.text)
    kept = [v for k, v in app.state.pbc_cache.items() if k[0] == "page"]
    assert kept and all(pages.HOLE_CSRF in body and "pm.two" not in body
                        for _, body in kept)
    # the token each page carries is its own session's: a form posted with it is accepted
    r = one.post("/logout", data={"csrf_token": _token(first.text)}, follow_redirects=False)
    assert r.status_code == 303
    other = signed_in(app, "lead")
    for _ in range(2):
        assert other.get("/practices/A81001/case-finding").status_code == 403
    with _store(economy) as store, store._session() as s:
        refused = s.scalars(select(AuditEvent).where(
            AuditEvent.action == "access_denied", AuditEvent.actor == "lead",
            AuditEvent.entity_id == "/practices/A81001/case-finding")).all()
    assert len(refused) >= 2
