"""Business cases in the web app: the new-case form and upload, the case page (savings as
the service computes them, the audit history), the lifecycle's forms (submit, the
council's response, the approver's decision), optimistic locking (a stale version: 409,
nothing changed), refusals (403 with an audit row) and CSRF."""

from __future__ import annotations

import html
import json
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from conftest import copy_economy
from pbc.budgets.money import format_pounds
from pbc.decisions import DecisionStore
from pbc.decisions.cases import BusinessCase, CaseFile, parse_case
from pbc.decisions.models import AuditEvent
from pbc.services.accounts import set_password
from pbc.services.cases import add_user, projection, read_baseline, show
from pbc.services.principal import AccessDenied, Principal
from pbc.web.app import create_app
from pbc.web.case_pages import case_toml
from pbc.web.settings import WebSettings

PASSWORD = "correct horse battery"
ADMIN = Principal("admin", "administrator", "Q99")
EXAMPLE = (Path(__file__).resolve().parents[1] / "src" / "pbc" / "reference" / "cases"
           / "business_case.toml")


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory, web_economy_template: Path) -> Any:
    wh: Any = copy_economy(web_economy_template, tmp_path_factory.mktemp("webcases") / "e")
    council = str(wh.query("SELECT min(local_authority_code) FROM local_authorities")[0][0])
    with DecisionStore.beside(wh.root) as store:
        add_user(store, ADMIN, "admin", "administrator", "Q99")
        admin = Principal("admin", "administrator", "Q99", source="x")
        for name, role, org in (("pm", "practice", "A81001"), ("pm2", "practice", "A81002"),
                                ("appr", "commissioner_approver", "Q99"),
                                ("fin", "commissioner", "Q99"),
                                ("la", "local_authority", council)):
            add_user(store, admin, name, role, org)
            set_password(store, admin, name, PASSWORD)
    wh.council = council
    return wh


@pytest.fixture(scope="module")
def app(economy: Any) -> Any:
    return create_app(WebSettings(economy.root, secure_cookies=False,
                                  login_failures_allowed=50))


def _token(page: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m, page[:500]
    return m.group(1)


def signed_in(app: Any, user: str) -> TestClient:
    client = TestClient(app)
    page = client.get("/login")
    r = client.post("/login", data={"username": user, "password": PASSWORD,
                                    "csrf_token": _token(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    return client


def _store(wh: Any) -> DecisionStore:
    return DecisionStore.beside(wh.root)


def _case_count(wh: Any) -> int:
    with _store(wh) as store, store._session() as s:
        return int(s.scalar(select(func.count()).select_from(BusinessCase)) or 0)


def _last_audit(wh: Any) -> AuditEvent:
    with _store(wh) as store, store._session() as s:
        last = s.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert last is not None
    return last


def _actions(page: str) -> list[str]:
    """The steps the page offers (its action forms)."""
    return re.findall(r'<form method="post" action="/cases/\d+/\w+"[^>]*id="action-(\w+)"',
                      page)


def _text_of(page: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S)
    assert m, f"no #{element_id}"
    return html.unescape(re.sub(r"<[^>]+>", "", m.group(1))).strip()


def _form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "Falls clinic", "category": "service_redesign", "summary": "A clinic.",
        "service_lines": ["non_elective", "ae"], "hrg_prefixes": "", "condition_codelist": "",
        "baseline_year": "", "investment_year_1": "2026-27", "investment_amount_1": "1,000.50",
        "investment_year_2": "2027-28", "investment_amount_2": "£250",
        "change_description": "Fewer falls admitted", "reduction": "0.1",
        "reduction_sd": "0.02", "touches_social_care": "no", "local_authority": "",
        "provider_is_proposer": "no", "provider": "the community trust",
        "alternatives": "", "conflict_of_interest": "", "funding": "commissioner"}
    data.update(overrides)
    return data


def propose(client: TestClient, **overrides: Any) -> Any:
    token = _token(client.get("/cases/new").text)
    return client.post("/cases/new", data={**_form(**overrides), "csrf_token": token},
                       follow_redirects=False)


def new_case(client: TestClient, **overrides: Any) -> int:
    r = propose(client, **overrides)
    assert r.status_code == 303, r.text[:2000]
    m = re.fullmatch(r"/cases/(\d+)", r.headers["location"])
    assert m
    return int(m.group(1))


def step(client: TestClient, case_id: int, action: str, version: int | None = None,
         **fields: str) -> Any:
    page = client.get(f"/cases/{case_id}").text
    read = version if version is not None else int(_text_of(page, "case-version"))
    return client.post(f"/cases/{case_id}/{action}",
                       data={"csrf_token": _token(page), "version": str(read), **fields},
                       follow_redirects=False)


def _status(wh: Any, case_id: int) -> tuple[str, int]:
    with _store(wh) as store, store._session() as s:
        case = s.get(BusinessCase, case_id)
        assert case is not None
        return case.status, case.version


# ------------------------------------------------------------------ proposing
def test_a_practice_proposes_by_form_and_the_page_shows_the_services_savings(
        app: Any, economy: Any) -> None:
    client = signed_in(app, "pm")
    assert client.get("/cases/new").status_code == 200
    case_id = new_case(client)
    page = client.get(f"/cases/{case_id}")
    assert page.status_code == 200 and "Falls clinic" in page.text
    # the stored case file is TOML that reads back to the case the form described
    with _store(economy) as store:
        view = show(store, Principal("pm", "practice", "A81001"), case_id)
    stored = parse_case(tomllib.loads(view.case_file))
    assert stored.proposer == "A81001" and stored.proposer_kind == "practice"
    assert stored.investment == {"2026-27": Decimal("1000.50"), "2027-28": Decimal("250")}
    assert stored.scope.service_lines == ["non_elective", "ae"]
    assert stored.expected_change.reduction == Decimal("0.1")
    # the savings, recomputed here from the warehouse (baseline and projection)
    baseline, commissioner = read_baseline(economy, stored)
    want = projection(stored, baseline)
    assert commissioner == "Q99" and baseline.spend_pence > 0
    assert _text_of(page.text, "case-net") == format_pounds(want.net_pence)
    assert _text_of(page.text, "case-lower") == format_pounds(want.lower_pence)
    assert _text_of(page.text, "case-upper") == format_pounds(want.upper_pence)
    assert _text_of(page.text, "case-gross") == format_pounds(want.gross_pence)
    assert _text_of(page.text, "case-investment") == format_pounds(100050 + 25000)
    years = re.findall(r"<tr[^>]*>(.*?)</tr>", page.text.split('id="table-case-years"')[1]
                       .split("</table>")[0].split("<tbody")[1], re.S)
    assert len(years) == 2 and format_pounds(want.years[0].net_pence) in years[0]
    for a in want.assumptions:
        assert html.escape(a, quote=False) in page.text or a in html.unescape(page.text)
    history = page.text.split('id="table-case-history"')[1].split("</table>")[0]
    assert "create" in history and ">pm<" in history
    assert _text_of(page.text, "case-status") == "draft"
    # the practice may submit its draft, not approve it
    assert _actions(page.text) == ["submit"]


def test_a_practice_proposes_by_uploading_a_case_file(app: Any, economy: Any) -> None:
    client = signed_in(app, "pm")
    text = EXAMPLE.read_text(encoding="utf-8").replace("E06009000", economy.council)
    before = _case_count(economy)
    token = _token(client.get("/cases/new").text)
    r = client.post("/cases/new", data={"csrf_token": token},
                    files={"case_file": ("copd.toml", text.encode(), "application/toml")},
                    follow_redirects=False)
    assert r.status_code == 303, r.text[:2000]
    case_id = int(r.headers["location"].rsplit("/", 1)[1])
    assert _case_count(economy) == before + 1
    with _store(economy) as store:
        view = show(store, Principal("pm", "practice", "A81001"), case_id)
    assert view.case_file == text  # kept as written
    assert view.touches_social_care and view.local_authority_code == economy.council
    # a file that is not TOML: its error, next to the upload field; nothing stored
    bad = client.post("/cases/new", data={"csrf_token": token},
                      files={"case_file": ("x.toml", b"title = [", "application/toml")})
    assert bad.status_code == 400 and 'id="case_file-error"' in bad.text
    assert "not valid TOML" in bad.text and _case_count(economy) == before + 1
    # a file another practice proposes: the service refuses it, and the attempt is audited
    other = client.post("/cases/new", data={"csrf_token": token}, files={
        "case_file": ("x.toml", text.replace('"A81001"', '"A81002"').encode(), "text/plain")})
    assert other.status_code == 403 and _case_count(economy) == before + 1
    assert (_last_audit(economy).action, _last_audit(economy).actor) == ("access_denied", "pm")


def test_form_errors_are_shown_beside_their_fields_and_nothing_is_stored(
        app: Any, economy: Any) -> None:
    client = signed_in(app, "pm")
    before, head = _case_count(economy), _last_audit(economy).id
    r = propose(client, title="", service_lines=[], reduction="5", investment_amount_2="",
                touches_social_care="yes", local_authority="")
    assert r.status_code == 400
    summary = r.text.split('id="error-list"')[1].split("</ul>")[0]
    for name in ("title", "service_lines", "reduction", "investment", "local_authority"):
        assert f'href="#{name}"' in summary, name
        assert f'id="{name}-error"' in r.text, name
        assert re.search(rf'id="{name}"', r.text), name  # the link has a target
    assert "Enter a title" in r.text
    # the values typed are kept
    assert 'value="Fewer falls admitted"' in r.text
    assert _case_count(economy) == before and _last_audit(economy).id == head
    # a council that is not in the warehouse: the service's error, beside the council field
    r = propose(client, touches_social_care="yes", local_authority="E99999999")
    assert r.status_code == 400 and 'id="local_authority-error"' in r.text
    assert _case_count(economy) == before


def test_only_a_practice_or_group_may_propose(app: Any, economy: Any) -> None:
    r = signed_in(app, "fin").get("/cases/new")
    assert r.status_code == 403
    last = _last_audit(economy)
    assert (last.action, last.actor, last.entity_id) == ("access_denied", "fin", "/cases/new")


# ------------------------------------------------------------------ the lifecycle
def test_submit_consult_approve_through_the_pages(app: Any, economy: Any) -> None:
    pm, la, appr = signed_in(app, "pm"), signed_in(app, "la"), signed_in(app, "appr")
    case_id = new_case(pm, touches_social_care="yes", local_authority=economy.council)
    # the council does not see a draft
    assert la.get(f"/cases/{case_id}").status_code == 403
    assert step(pm, case_id, "submit").status_code == 303
    assert _status(economy, case_id)[0] == "consultation"
    # the council sees it awaiting its response, in its list and on the page
    listed = la.get("/cases").text
    assert f'href="/cases/{case_id}"' in listed
    page = la.get(f"/cases/{case_id}").text
    assert _actions(page) == ["consult"]
    assert _actions(pm.get(f"/cases/{case_id}").text) == []  # the proposer waits
    # a response is needed: the error beside the field, nothing changed
    r = step(la, case_id, "consult", response="  ")
    assert r.status_code == 400 and 'id="consult-response-error"' in r.text
    assert _status(economy, case_id)[0] == "consultation"
    assert step(la, case_id, "consult", response="We support it.").status_code == 303
    assert _status(economy, case_id)[0] == "submitted"
    page = appr.get(f"/cases/{case_id}").text
    assert "We support it." in _text_of(page, "case-consultation")
    assert _actions(page) == ["approve", "reject", "return"]
    assert step(appr, case_id, "approve", note="Good value.").status_code == 303
    status, version = _status(economy, case_id)
    assert status == "approved"
    page = pm.get(f"/cases/{case_id}").text
    assert _text_of(page, "case-status") == "approved"
    assert _text_of(page, "case-version") == str(version)
    assert "Good value." in _text_of(page, "case-decision-note")
    history = page.split('id="table-case-history"')[1].split("</table>")[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", history.split("<tbody")[1], re.S)
    cells = [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
              for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]
    assert [(c[1], c[2], c[4]) for c in cells] == [
        ("create", "pm", "draft"), ("submit", "pm", "consultation"),
        ("consult", "la", "submitted"), ("approve", "appr", "approved")]


def test_the_approver_returns_a_case_with_a_note(app: Any, economy: Any) -> None:
    pm, appr = signed_in(app, "pm"), signed_in(app, "appr")
    case_id = new_case(pm)
    assert step(pm, case_id, "submit").status_code == 303
    r = step(appr, case_id, "return", note="")
    assert r.status_code == 400 and 'id="return-note-error"' in r.text
    assert _status(economy, case_id)[0] == "submitted"
    assert step(appr, case_id, "return", note="Cost the clinic's rooms.").status_code == 303
    assert _status(economy, case_id)[0] == "returned"
    assert _actions(pm.get(f"/cases/{case_id}").text) == ["submit"]


def _returned(app: Any, economy: Any) -> tuple[TestClient, TestClient, int]:
    """A case of A81001 proposed by the form, submitted, and returned by the approver."""
    pm, appr = signed_in(app, "pm"), signed_in(app, "appr")
    case_id = new_case(pm)
    assert step(pm, case_id, "submit").status_code == 303
    assert step(appr, case_id, "return", note="Halve the reduction.").status_code == 303
    assert _status(economy, case_id)[0] == "returned"
    return pm, appr, case_id


def _revise(client: TestClient, case_id: int, version: int | None = None,
            file: bytes | None = None, **fields: Any) -> Any:
    page = client.get(f"/cases/{case_id}/revise")
    assert page.status_code == 200, page.text[:1000]
    read = version if version is not None else int(_text_of(
        client.get(f"/cases/{case_id}").text, "case-version"))
    data = {"csrf_token": _token(page.text), "version": str(read)}
    if file is not None:
        return client.post(f"/cases/{case_id}/revise", data=data, follow_redirects=False,
                           files={"case_file": ("revised.toml", file, "application/toml")})
    return client.post(f"/cases/{case_id}/revise", data={**data, **_form(**fields)},
                       follow_redirects=False)


def _stored(economy: Any, case_id: int) -> tuple[str, str, str, int]:
    with _store(economy) as store, store._session() as s:
        c = s.get(BusinessCase, case_id)
        assert c is not None
        return c.status, c.case_file, c.savings, c.version


def test_a_returned_case_is_revised_resubmitted_and_approved(app: Any, economy: Any) -> None:
    pm, appr, case_id = _returned(app, economy)
    page = pm.get(f"/cases/{case_id}")
    assert 'id="revise-form"' in page.text and 'href="/cases/' + str(case_id) + '/revise"' \
        in page.text
    # the revise form is filled in from the case file as it stands
    form = pm.get(f"/cases/{case_id}/revise").text
    assert 'value="Falls clinic"' in form and 'value="0.1"' in form
    assert "Halve the reduction." in form
    # revised by uploading a file: the savings follow the new file
    with _store(economy) as store:
        before = parse_case(tomllib.loads(show(store, Principal(
            "pm", "practice", "A81001"), case_id).case_file))
    revised = before.model_copy(update={
        "title": "Falls clinic (revised)",
        "expected_change": before.expected_change.model_copy(
            update={"reduction": Decimal("0.05")})})
    text = case_toml(revised)
    r = _revise(pm, case_id, file=text.encode())
    assert r.status_code == 303, r.text[:2000]
    status, case_file, _, _ = _stored(economy, case_id)
    assert status == "submitted" and case_file == text
    baseline, _ = read_baseline(economy, revised)
    want = projection(revised, baseline)
    page = pm.get(f"/cases/{case_id}").text
    assert _text_of(page, "case-net") == format_pounds(want.net_pence)
    assert want.net_pence != projection(before, baseline).net_pence
    assert step(appr, case_id, "approve", note="Better.").status_code == 303
    page = appr.get(f"/cases/{case_id}").text
    assert _text_of(page, "case-status") == "approved"
    history = page.split('id="table-case-history"')[1].split("</table>")[0]
    steps = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(
        r"<tr[^>]*>\s*<td[^>]*>[^<]*</td>\s*<td[^>]*>(.*?)</td>", history, re.S)]
    assert steps == ["create", "submit", "return", "revise", "submit", "approve"]
    with _store(economy) as store, store._session() as s:
        row = s.scalars(select(AuditEvent).where(
            AuditEvent.action == "revise_case", AuditEvent.entity_id == str(case_id))).one()
    assert json.loads(row.after_state)["net_pence"] == want.net_pence
    assert json.loads(row.before_state)["title"] == "Falls clinic"


def test_a_returned_case_revised_by_its_fields(app: Any, economy: Any) -> None:
    pm, _, case_id = _returned(app, economy)
    r = _revise(pm, case_id, title="Falls clinic, smaller", reduction="0.04")
    assert r.status_code == 303, r.text[:2000]
    status, case_file, _, _ = _stored(economy, case_id)
    stored = parse_case(tomllib.loads(case_file))
    assert status == "submitted" and stored.title == "Falls clinic, smaller"
    assert stored.expected_change.reduction == Decimal("0.04")


def test_a_bad_revision_leaves_the_case_as_it_was(app: Any, economy: Any) -> None:
    pm, _, case_id = _returned(app, economy)
    kept = _stored(economy, case_id)
    head = _last_audit(economy).id
    r = _revise(pm, case_id, file=b"title = [")
    assert r.status_code == 400 and 'id="case_file-error"' in r.text
    assert "not valid TOML" in r.text and "nhsuk-error-summary" in r.text
    r = _revise(pm, case_id, reduction="2")  # more than the whole baseline
    assert r.status_code == 400 and 'id="reduction-error"' in r.text
    assert 'href="#reduction"' in r.text  # the summary links to the field
    # a file of another proposer: the service refuses the revision
    with _store(economy) as store:
        mine = parse_case(tomllib.loads(show(store, Principal(
            "pm", "practice", "A81001"), case_id).case_file))
    other = case_toml(mine.model_copy(update={"proposer": "A81002"}))
    r = _revise(pm, case_id, file=other.encode())
    assert r.status_code == 400 and "keeps its proposer" in r.text
    assert _stored(economy, case_id) == kept and _last_audit(economy).id == head


def test_a_stale_revision_is_a_conflict_and_another_practice_is_refused(
        app: Any, economy: Any) -> None:
    pm, _, case_id = _returned(app, economy)
    kept = _stored(economy, case_id)
    r = _revise(pm, case_id, version=kept[3] - 1, title="Stale")
    assert r.status_code == 409 and "changed by someone else" in r.text
    assert _stored(economy, case_id) == kept
    pm2 = signed_in(app, "pm2")
    assert pm2.get(f"/cases/{case_id}/revise").status_code == 403
    token = _token(pm2.get("/cases/new").text)
    r = pm2.post(f"/cases/{case_id}/revise", data={
        "csrf_token": token, "version": str(kept[3]), **_form(title="Mine now")})
    assert r.status_code == 403 and _stored(economy, case_id) == kept
    last = _last_audit(economy)
    assert (last.action, last.actor, last.entity_id) == ("access_denied", "pm2",
                                                         f"/cases/{case_id}/revise")
    # without the session's CSRF token: refused, nothing changes
    r = pm.post(f"/cases/{case_id}/revise", data={"version": str(kept[3]),
                                                  **_form(title="Forged")})
    assert r.status_code == 403 and _stored(economy, case_id) == kept


def test_a_stale_version_is_a_conflict_and_nothing_changes(app: Any, economy: Any) -> None:
    pm, appr = signed_in(app, "pm"), signed_in(app, "appr")
    case_id = new_case(pm)
    assert step(pm, case_id, "submit").status_code == 303
    status, version = _status(economy, case_id)
    head = _last_audit(economy).id
    r = step(appr, case_id, "approve", version=version - 1, note="ok")
    assert r.status_code == 409
    assert "changed by someone else" in r.text and f"version {version}" in r.text
    assert _status(economy, case_id) == (status, version) == ("submitted", version)
    assert _last_audit(economy).id == head


def test_a_practice_may_not_approve_and_the_attempt_is_audited(app: Any, economy: Any
                                                               ) -> None:
    pm = signed_in(app, "pm")
    case_id = new_case(pm)
    assert step(pm, case_id, "submit").status_code == 303
    before = _status(economy, case_id)
    r = step(pm, case_id, "approve", note="self-approved")
    assert r.status_code == 403 and "audit log" in r.text.lower()
    last = _last_audit(economy)
    assert (last.action, last.actor, last.actor_role, last.entity_id) == (
        "access_denied", "pm", "practice:A81001", f"/cases/{case_id}/approve")
    assert _status(economy, case_id) == before


def test_another_practices_case_is_refused_as_the_service_refuses_it(app: Any, economy: Any
                                                                      ) -> None:
    case_id = new_case(signed_in(app, "pm"))
    with _store(economy) as store, pytest.raises(AccessDenied):
        show(store, Principal("pm2", "practice", "A81002"), case_id)
    r = signed_in(app, "pm2").get(f"/cases/{case_id}")
    assert r.status_code == 403
    last = _last_audit(economy)
    assert (last.action, last.actor, last.entity_id) == ("access_denied", "pm2",
                                                         f"/cases/{case_id}")
    # the commissioner sees it (read only: no decision buttons for the finance role)
    page = signed_in(app, "fin").get(f"/cases/{case_id}")
    assert page.status_code == 200 and 'id="case-no-actions"' in page.text
    assert signed_in(app, "fin").get("/cases/999999").status_code == 404


def test_a_post_without_the_csrf_token_is_refused(app: Any, economy: Any) -> None:
    pm = signed_in(app, "pm")
    case_id = new_case(pm)
    before, count = _status(economy, case_id), _case_count(economy)
    r = pm.post(f"/cases/{case_id}/submit", data={"version": str(before[1])})
    assert r.status_code == 403 and _status(economy, case_id) == before
    r = pm.post(f"/cases/{case_id}/submit", data={"version": str(before[1]),
                                                   "csrf_token": "forged"})
    assert r.status_code == 403 and _status(economy, case_id) == before
    assert pm.post("/cases/new", data=_form()).status_code == 403
    assert _case_count(economy) == count


# ------------------------------------------------------------------ the case file's TOML
_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
_money = st.decimals(min_value=0, max_value=Decimal("999999999.99"), places=2,
                     allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(title=_text, summary=st.text(st.characters(blacklist_categories=("Cs",)),
                                    max_size=60),
       amounts=st.lists(_money, min_size=1, max_size=3), reduction=st.decimals(
           min_value=Decimal("-0.99"), max_value=1, places=3),
       alternatives=st.lists(_text, max_size=2), social=st.booleans())
def test_the_forms_case_file_reads_back_to_the_same_case(
        title: str, summary: str, amounts: list[Decimal], reduction: Decimal,
        alternatives: list[str], social: bool) -> None:
    case = CaseFile.model_validate({
        "title": title.strip() or "t", "proposer": "A81001", "proposer_kind": "practice",
        "category": "carer_support", "summary": summary,
        "scope": {"service_lines": ["ae"], "hrg_prefixes": ["DZ"]},
        "investment": {f"{2026 + i}-{27 + i}": a for i, a in enumerate(amounts)},
        "expected_change": {"description": title, "reduction": reduction,
                            "reduction_sd": Decimal("0.05")},
        "social_care": {"touches_social_care": social,
                        **({"local_authority": "E06000001"} if social else {})},
        "make_or_buy": {"provider_is_proposer": False, "provider": title,
                        "alternatives_considered": alternatives}})
    assert parse_case(tomllib.loads(case_toml(case))) == case
