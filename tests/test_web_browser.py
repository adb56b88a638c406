"""The web app end to end: the monthly pack as PDF and Excel (through the app), then a real
browser (Playwright driving Debian's chromium) against the app served by uvicorn on
127.0.0.1: a practice manager signs in, reads the dashboard, downloads the Excel pack and
the PDF; a practice user asking for another practice's case-finding list gets 403 and the
attempt is in the audit log; axe-core finds no serious or critical violations on the main
pages; screenshots of the main pages are saved in build/screenshots/web-*.png."""

from __future__ import annotations

import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import copy_economy, require
from pbc.decisions import DecisionStore
from pbc.decisions.models import AuditEvent
from pbc.pricing.schema import TARIFF_VALUE_SQL
from pbc.services.accounts import set_password
from pbc.services.cases import add_user
from pbc.services.principal import Principal
from pbc.web.app import create_app
from pbc.web.settings import WebSettings
from workbooks import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, chromium_ready

PASSWORD = "correct horse battery"
PERIOD = "2025-09"
ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / "src" / "pbc" / "web" / "static" / "vendor" / "axe-core" / "axe.min.js"
USERS = (("admin", "administrator", "Q99"), ("pm", "practice", "A81001"),
         ("fin", "commissioner", "Q99"), ("other", "practice", "A81000"),
         ("approver", "commissioner_approver", "Q99"))
CASE_FILE = ROOT / "src" / "pbc" / "reference" / "cases" / "business_case.toml"


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory, web_economy_template: Path) -> Any:
    wh: Any = copy_economy(web_economy_template, tmp_path_factory.mktemp("browser") / "e")
    council = str(wh.query("SELECT min(local_authority_code) FROM local_authorities")[0][0])
    wh.council = council
    with DecisionStore.beside(wh.root) as store:
        add_user(store, Principal("admin", "administrator", "Q99"), "admin", "administrator",
                 "Q99")
        admin = Principal("admin", "administrator", "Q99", source="x")
        for name, role, org in (*USERS[1:], ("council", "local_authority", council)):
            add_user(store, admin, name, role, org)
        for name in (*(u[0] for u in USERS), "council"):
            set_password(store, admin, name, PASSWORD)
    return wh


@pytest.fixture(scope="module")
def app(economy: Any) -> Any:
    return create_app(WebSettings(economy.root, secure_cookies=False,
                                  login_failures_allowed=50))


def _login(client: TestClient, user: str) -> TestClient:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    r = client.post("/login", data={"username": user, "password": PASSWORD,
                                    "csrf_token": token.group(1)}, follow_redirects=False)
    assert r.status_code == 303
    return client


OPTED_OUT = ("SELECT practice_code, service_line FROM budget_phasing WHERE kind = 'opt_out' "
             "AND practice_code IS NOT NULL")


def spend(wh: Any, code: str) -> Decimal:
    """The practice's spend April to September 2025, independently from the priced activity
    (a line the practice opted out of is the commissioner's)."""
    value = wh.query(
        f"SELECT sum({TARIFF_VALUE_SQL}) FROM priced_activity WHERE practice_code = ? AND "
        "financial_year = '2025-26' AND month <= 6 AND attributed AND price IS NOT NULL AND "
        f"(practice_code, service_line) NOT IN ({OPTED_OUT})", [code])[0][0]
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _pounds(d: Decimal) -> str:
    return f"-£{-d:,.2f}" if d < 0 else f"£{d:,.2f}"


# ------------------------------------------------------------------ reading a PDF
def pdf_text(data: bytes) -> str:
    """The text of a PDF (pypdf)."""
    import pypdf

    return "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages)


def test_practice_pack_pdf_and_excel(app: Any, economy: Any) -> None:
    client = _login(TestClient(app), "pm")
    r = client.get(f"/practices/A81001/pack.pdf?month={PERIOD}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-") and r.content.rstrip().endswith(b"%%EOF")
    assert "A81001" in r.headers["content-disposition"]
    text = pdf_text(r.content)
    assert "A81001" in text
    assert _pounds(spend(economy, "A81001")) in text, text[:2000]
    x = client.get(f"/practices/A81001/pack.xlsx?month={PERIOD}")
    assert x.status_code == 200 and x.headers["content-type"].startswith(
        "application/vnd.openxmlformats")
    wb = openpyxl.load_workbook(io.BytesIO(x.content), data_only=True)
    cells = {str(c.value) for ws in wb for row in ws.iter_rows() for c in row if c.value}
    assert any("A81001" in c for c in cells)
    assert float(spend(economy, "A81001")) in {
        float(c.value) for ws in wb for row in ws.iter_rows() for c in row
        if isinstance(c.value, int | float)}


def test_another_practices_pack_is_403_and_audited(app: Any, economy: Any) -> None:
    client = _login(TestClient(app), "pm")
    for fmt in ("pdf", "xlsx"):
        r = client.get(f"/practices/A81000/pack.{fmt}?month={PERIOD}")
        assert r.status_code == 403, fmt
    with DecisionStore.beside(economy.root) as store, store._session() as s:
        denied = s.scalars(select(AuditEvent).where(AuditEvent.action == "access_denied")
                           ).all()
    assert {"/practices/A81000/pack.pdf", "/practices/A81000/pack.xlsx"} <= {
        e.entity_id for e in denied if e.actor == "pm"}
    # a group's pack: not for a practice's user; the commissioner reads any practice's or
    # group's pack
    assert client.get(f"/groups/G01/pack.xlsx?month={PERIOD}").status_code == 403
    fin = _login(TestClient(app), "fin")
    assert fin.get(f"/practices/A81000/pack.xlsx?month={PERIOD}").status_code == 200
    group = fin.get(f"/groups/G01/pack.xlsx?month={PERIOD}")
    assert group.status_code == 200 and "group-G01" in group.headers["content-disposition"]
    assert fin.get(f"/groups/NOPE/pack.xlsx?month={PERIOD}").status_code == 403


# ------------------------------------------------------------------ in a real browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(app: Any) -> Iterator[str]:
    """The app served by uvicorn (as ``pbc serve``) on 127.0.0.1 and a free port."""
    import uvicorn

    require(chromium_ready(), "Debian's chromium (/usr/bin/chromium) and playwright")
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _signed_in_page(browser: Any, server: str, user: str) -> Any:
    """A fresh browser context, signed in through the login form."""
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  accept_downloads=True)
    page = context.new_page()
    page.goto(server + "/")
    assert page.url.startswith(server + "/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def _axe(page: Any) -> list[str]:
    """Serious and critical axe-core violations on the page (axe vendored, injected)."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} at "
            f"{[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def _shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"web-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.mark.browser
def test_a_practice_manager_reads_the_dashboard_and_downloads_the_packs(
        browser: Any, server: str, economy: Any, tmp_path: Path) -> None:
    page = _signed_in_page(browser, server, "pm")
    assert page.url == f"{server}/practices/A81001"
    page.goto(f"{server}/practices/A81001?month={PERIOD}")
    assert page.locator("h1").inner_text().startswith("A81001")
    assert page.locator("#spend-to-date").inner_text() == _pounds(spend(economy, "A81001"))
    # the benchmark panel arrives after the page (htmx) and its charts are drawn (vega)
    page.wait_for_selector("#benchmark-panels [data-pbc-spec] svg", timeout=60_000)
    from pbc.web.panel_pages import PANEL_INDICATORS

    drawn = page.locator("#benchmark-panels [data-drawn] svg")
    assert drawn.count() >= len(PANEL_INDICATORS)
    assert "A81001" in page.locator("#benchmark-panels").inner_text()
    with page.expect_download() as got:
        page.get_by_role("link", name="Download the monthly pack (Excel)").click()
    xlsx = tmp_path / got.value.suggested_filename
    got.value.save_as(xlsx)
    assert xlsx.name == f"pbc-pack-practice-A81001-{PERIOD}.xlsx"
    wb = openpyxl.load_workbook(xlsx, data_only=True)
    assert float(spend(economy, "A81001")) in {
        float(c.value) for ws in wb for row in ws.iter_rows() for c in row
        if isinstance(c.value, int | float)}
    with page.expect_download() as got:
        page.get_by_role("link", name="Download the monthly pack (PDF)").click()
    pdf = tmp_path / got.value.suggested_filename
    got.value.save_as(pdf)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    text = pdf_text(data)
    assert "A81001" in text and _pounds(spend(economy, "A81001")) in text
    page.context.close()


@pytest.mark.browser
def test_another_practices_case_finding_is_403_and_in_the_audit_log(
        browser: Any, server: str, economy: Any) -> None:
    page = _signed_in_page(browser, server, "pm")
    response = page.goto(f"{server}/practices/A81000/case-finding")
    assert response.status == 403
    assert page.locator("h1").inner_text() == "You may not see this page"
    _shot(page, "denied")
    with DecisionStore.beside(economy.root) as store, store._session() as s:
        rows = s.scalars(select(AuditEvent).where(
            AuditEvent.action == "access_denied", AuditEvent.actor == "pm",
            AuditEvent.entity_id == "/practices/A81000/case-finding")).all()
    assert rows, "the refused request is not in the audit log"
    page.context.close()


@pytest.mark.browser
def test_a_case_proposed_in_the_browser_goes_through_the_council_to_approval(
        browser: Any, server: str, economy: Any, tmp_path: Path) -> None:
    """A practice manager uploads a case file and submits it; it touches social care, so
    the council's officer sees it awaiting the council's response on the council page
    (whose tables show no count from 1 to 7) and responds; the approver approves it. Each
    step through the pages' own forms, in chromium; the history says who did what."""
    case_file = tmp_path / "case.toml"
    case_file.write_text(CASE_FILE.read_text(encoding="utf-8").replace(
        'local_authority = "E06009000"', f'local_authority = "{economy.council}"'),
        encoding="utf-8")
    pm = _signed_in_page(browser, server, "pm")
    pm.goto(server + "/cases/new")
    pm.set_input_files("#case_file", str(case_file))
    pm.get_by_role("button", name="Upload the case file").click()
    pm.wait_for_load_state()
    match = re.search(r"/cases/(\d+)$", pm.url)
    assert match, pm.url
    case = match.group(1)
    assert pm.locator("#case-status").inner_text() == "draft"
    pm.get_by_role("button", name="Submit the case").click()
    pm.wait_for_load_state()
    assert pm.locator("#case-status").inner_text() == "consultation"
    _shot(pm, "case")
    pm.context.close()

    la = _signed_in_page(browser, server, "council")
    la.goto(f"{server}/councils/{economy.council}")
    assert la.get_by_role("link", name=re.compile(case)).count() >= 1  # awaiting its response
    cells = la.locator("#table-la-profile td, #table-la-shared-clients td").all_inner_texts()
    assert len(cells) > 50
    shown = [c.strip().replace(",", "") for c in cells]
    assert not [c for c in shown if re.fullmatch(r"[1-7]", c)], "a count of 1-7 is shown"
    assert "*" in shown  # suppressed cells are marked, never shown
    _shot(la, "council")
    la.goto(f"{server}/cases/{case}")
    la.fill("#consult-response", "The council supports the pilot.")
    la.get_by_role("button", name="Record the council's response").click()
    la.wait_for_load_state()
    assert la.locator("#case-status").inner_text() == "submitted"
    la.context.close()

    approver = _signed_in_page(browser, server, "approver")
    approver.goto(f"{server}/cases/{case}")
    approver.fill("#approve-note", "Approved for one year.")
    approver.get_by_role("button", name="Approve").click()
    approver.wait_for_load_state()
    assert approver.locator("#case-status").inner_text() == "approved"
    history = approver.locator("#table-case-history").inner_text()
    for who in ("pm", "council", "approver"):
        assert who in history, history
    approver.context.close()


MAIN_PAGES = (("fin", "/overview", "overview"), ("pm", f"/practices/A81001?month={PERIOD}",
                                                  "dashboard"),
              ("pm", "/practices/A81001/budget", "budget"),
              ("pm", "/practices/A81001/case-finding", "case-finding"),
              ("pm", "/cases", "cases"), ("pm", "/cases/new", "case-new"),
              ("pm", "/indicators/emergency_admissions", "indicator"),
              ("fin", "/groups/G01", "group"), ("council", "/councils/{council}", "council"))


@pytest.mark.browser
def test_axe_finds_no_serious_or_critical_violations_on_the_main_pages(
        browser: Any, server: str, economy: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    # the check itself finds what it should: an unlabelled field, a page with no language
    page.set_content("<html><body><main><input type=text></main></body></html>")
    assert {v.split(" ")[0] for v in _axe(page)} >= {"label", "html-has-lang"}
    page.goto(server + "/login")
    problems = {"login": _axe(page)}
    _shot(page, "login")
    context.close()
    pages: dict[str, Any] = {}
    for user, path, name in MAIN_PAGES:
        if user not in pages:
            pages[user] = _signed_in_page(browser, server, user)
        page = pages[user]
        response = page.goto(server + path.format(council=economy.council))
        assert response.status == 200, (path, response.status)
        page.wait_for_load_state("networkidle")
        problems[name] = _axe(page)
        assert _shot(page, name).stat().st_size > 10_000
    for page in pages.values():
        page.context.close()
    assert not any(problems.values()), problems
