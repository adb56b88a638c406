"""The REST API under /api/v1 (issue 18, item 4): tokens, the principal, every endpoint's
figures against the service the CLI calls, refusals (401, 403 audited, 404, 409), and
schemathesis over the OpenAPI document (no server error with a valid token)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select
from typer.testing import CliRunner

from case_fixtures import case_data
from conftest import copy_economy
from pbc.cli import app as cli
from pbc.decisions import DecisionStore
from pbc.decisions.accounts import ApiToken
from pbc.decisions.cases import parse_case
from pbc.decisions.models import AuditEvent
from pbc.services import api_tokens, risk
from pbc.services.cases import act, add_user, create_case, read_baseline
from pbc.services.principal import Principal
from pbc.web.app import create_app
from pbc.web.settings import WebSettings

ADMIN = Principal("admin", "administrator", "Q99")
COMMISSIONER = Principal("fin", "commissioner", "Q99")
#: user -> roles (ROLE, ORG)
USERS = {"admin": [("administrator", "Q99")], "pm": [("practice", "A81000")],
         "pm2": [("practice", "A81001")], "fin": [("commissioner", "Q99")],
         "approver": [("commissioner_approver", "Q99")],
         "lead": [("group", "G01"), ("practice", "A81002")]}


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory,
            web_economy_template: Path) -> Iterator[dict[str, Any]]:
    """Four practices, two years, budgets for 2025-26, risk scores; the users above, a
    token each (issued through the service), and a submitted case of A81000."""
    wh: Any = copy_economy(web_economy_template, tmp_path_factory.mktemp("api") / "e")
    tokens = {}
    with DecisionStore.beside(wh.root) as store:
        for user, roles in USERS.items():
            for role, org in roles:
                add_user(store, ADMIN, user, role, org)
        for user in USERS:
            tokens[user] = api_tokens.issue_token(store, ADMIN, user, "tests").token
        case = parse_case(case_data(proposer="A81000", social_care={
            "touches_social_care": False, "local_authority": None},
            make_or_buy={"provider_is_proposer": False, "provider": "community trust",
                         "conflict_of_interest": None}))
        baseline, commissioner = read_baseline(wh, case)
        pm = Principal("pm", "practice", "A81000")
        view = create_case(store, pm, case, "title = 'x'", baseline, commissioner)
        act(store, pm, view.id, "submit")
    client = TestClient(create_app(WebSettings(wh.root, secure_cookies=False)))
    yield {"wh": wh, "tokens": tokens, "client": client, "case": view.id}
    client.close()


def _as(economy: dict[str, Any], user: str, role: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {economy['tokens'][user]}"}
    if role:
        headers["X-PBC-Role"] = role
    return headers


def _get(economy: dict[str, Any], path: str, user: str, **params: Any) -> Any:
    return economy["client"].get(f"/api/v1{path}", headers=_as(economy, user), params=params)


def _denials(wh: Any, what: str) -> list[AuditEvent]:
    with DecisionStore.beside(wh.root) as store, store._session() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == "access_denied",
                                                       AuditEvent.entity_id == what)))


# ----------------------------------------------------------------------- tokens
def test_token_printed_once_stored_hashed_used_listed_and_revoked(economy: dict[str, Any]
                                                                  ) -> None:
    wh, client = economy["wh"], economy["client"]
    runner = CliRunner()
    issued = runner.invoke(cli, ["users", "token", "pm2", "--warehouse", str(wh.root),
                                 "--label", "laptop", "--as", "practice:A81001:pm2"])
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip().splitlines()[-1]
    assert len(token) >= 40
    with DecisionStore.beside(wh.root) as store, store._session() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.label == "laptop"))
        assert row is not None and row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
        audit = " ".join(f"{e.detail} {e.after_state}" for e in s.scalars(select(AuditEvent)))
        assert token not in audit and row.token_sha256 not in audit
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/cases", headers=bearer).status_code == 200
    listed = runner.invoke(cli, ["users", "tokens", "pm2", "--warehouse", str(wh.root),
                                 "--as", "administrator:Q99:admin"])
    assert listed.exit_code == 0 and "laptop" in listed.stdout and token not in listed.stdout
    laptop = next(x for x in listed.stdout.splitlines() if "laptop" in x)
    assert "never" not in laptop  # last used: just now
    # another user may not issue, list or revoke pm2's tokens
    refused = runner.invoke(cli, ["users", "revoke-token", "pm2", "--label", "laptop",
                                  "--warehouse", str(wh.root), "--as", "practice:A81000:pm"])
    assert refused.exit_code == 2 and "only an administrator or pm2" in refused.output
    assert client.get("/api/v1/cases", headers=bearer).status_code == 200
    revoked = runner.invoke(cli, ["users", "revoke-token", "pm2", "--label", "laptop",
                                  "--warehouse", str(wh.root), "--as", "practice:A81001:pm2"])
    assert revoked.exit_code == 0, revoked.output
    after = client.get("/api/v1/cases", headers=bearer)
    assert after.status_code == 401
    assert after.headers["WWW-Authenticate"].startswith("Bearer")
    with DecisionStore.beside(wh.root) as store, store._session() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).where(
            AuditEvent.entity == "api_token", AuditEvent.entity_id == str(row.id)))]
    assert actions == ["issue_api_token", "revoke_api_token"]


def test_no_or_unknown_token_is_401(economy: dict[str, Any]) -> None:
    client = economy["client"]
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
        r = client.get("/api/v1/practices/A81000/budget", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_user_with_several_roles_names_one(economy: dict[str, Any]) -> None:
    client = economy["client"]
    r = client.get("/api/v1/cases", headers=_as(economy, "lead"))
    assert r.status_code == 400
    assert "group:G01" in r.json()["detail"] and "practice:A81002" in r.json()["detail"]
    r = client.get("/api/v1/groups/G01/budget", headers=_as(economy, "lead", "group:G01"))
    assert r.status_code == 200 and r.json()["group_code"] == "G01"
    r = client.get("/api/v1/cases", headers=_as(economy, "lead", "practice:A81000"))
    assert r.status_code == 400 and "does not hold" in r.json()["detail"]


# ----------------------------------------------------------------------- figures
def test_position_is_the_services_for_the_practice_and_its_commissioner(
        economy: dict[str, Any]) -> None:
    from pbc.monitoring.position import in_pounds
    from pbc.services.monitoring import monthly_position

    wh = economy["wh"]
    pos = monthly_position(wh, Principal("pm", "practice", "A81000"), "2025-09")
    expected = {r["service_line"]: r for r in in_pounds(pos.frame).to_dict("records")}
    for user in ("pm", "fin"):
        r = _get(economy, "/practices/A81000/position", user, month="2025-09")
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["financial_year"], body["month"], body["budget_version"]) == (
            "2025-26", 6, pos.budget_version)
        lines = {x["service_line"]: x for x in [*body["lines"], body["total"]]}
        assert set(lines) == set(expected)
        for line, want in expected.items():
            for col in ("annual_budget", "budget_to_date", "spend_to_date", "variance",
                        "forecast_outturn"):
                assert Decimal(lines[line][col]) == want[col], (user, line, col)
        total = body["total"]
        assert sum(Decimal(x["spend_to_date"]) for x in body["lines"]) == Decimal(
            total["spend_to_date"])
    r = _get(economy, "/practices/A81001/position", "pm", month="2025-09")
    assert r.status_code == 403 and "practice:A81001" in r.json()["who_may"]
    r = _get(economy, "/practices/A81000/position", "pm", month="2025-13")
    assert r.status_code == 422
    r = _get(economy, "/practices/Z99999/position", "fin", month="2025-09")
    assert r.status_code == 404
    r = economy["client"].get("/api/v1/groups/G01/position", params={"month": "2025-09"},
                              headers=_as(economy, "lead", "group:G01"))
    assert r.status_code == 200 and r.json()["level"] == "group"


def test_a_groups_lead_gets_its_member_practices_only(economy: dict[str, Any]) -> None:
    from pbc.services.monitoring import monthly_position

    wh, client = economy["wh"], economy["client"]
    lead = _as(economy, "lead", "group:G01")
    pos = monthly_position(wh, COMMISSIONER, "2025-09", members_of="G01").frame
    members = sorted(set(pos.code.astype(str)))
    totals = pos[pos.service_line == "all"].set_index("code")
    r = client.get("/api/v1/groups/G01/practices", params={"month": "2025-09"}, headers=lead)
    assert r.status_code == 200, r.text
    assert [p["code"] for p in r.json()] == members and len(members) >= 2
    for p in r.json():
        assert Decimal(p["total"]["spend_to_date"]) * 100 == int(totals.spend_to_date[p["code"]])
    r = client.get(f"/api/v1/practices/{members[0]}/position", params={"month": "2025-09"},
                   headers=lead)
    assert r.status_code == 200 and r.json()["code"] == members[0]
    others = sorted({str(c) for (c,) in wh.query(
        "SELECT practice_code FROM practices")} - set(members))
    r = client.get(f"/api/v1/practices/{others[0]}/position", params={"month": "2025-09"},
                   headers=lead)
    assert r.status_code == 403 and "commissioner:Q99" in r.json()["who_may"]
    assert _denials(wh, f"GET /api/v1/practices/{others[0]}/position")
    r = client.get("/api/v1/groups/G02/practices", params={"month": "2025-09"}, headers=lead)
    assert r.status_code == 403 and _denials(wh, "GET /api/v1/groups/G02/practices")
    r = client.get(f"/api/v1/practices/{members[0]}/case-finding", headers=lead)
    assert r.status_code == 403 and _denials(wh, f"GET /api/v1/practices/{members[0]}/case-finding")


def test_budget_is_the_warehouses_with_its_explanation(economy: dict[str, Any]) -> None:
    from pbc.services.budgets import explanation

    wh = economy["wh"]
    rows = wh.query("SELECT service_line, budget, fair_share, floor FROM indicative_budgets "
                    "WHERE practice_code = 'A81000'")
    r = _get(economy, "/practices/A81000/budget", "pm")
    assert r.status_code == 200, r.text
    body = r.json()
    got = {x["service_line"]: x for x in body["lines"]}
    assert {s: (Decimal(got[s]["budget"]), Decimal(got[s]["fair_share"]),
                Decimal(got[s]["floor"])) for s in got} == {
        s: (b, f, fl) for s, b, f, fl in rows}
    assert Decimal(body["total"]) == sum(b for _, b, _, _ in rows)
    assert body["explanation"] == explanation(wh, "A81000")
    assert _get(economy, "/practices/A81000/budget", "fin").status_code == 200
    assert _get(economy, "/practices/A81000/budget", "pm2").status_code == 403
    assert _get(economy, "/practices/NOPE1/budget", "pm").status_code == 404


def test_case_finding_own_practice_only_and_a_refusal_is_audited(economy: dict[str, Any]
                                                                 ) -> None:
    wh = economy["wh"]
    want = risk.case_finding_list(wh, Principal("pm", "practice", "A81000"), "A81000", 5)
    r = _get(economy, "/practices/A81000/case-finding", "pm", top=5)
    assert r.status_code == 200, r.text
    got = r.json()["patients"]
    assert [(x["patient_id"], x["risk_percent"], x["top_factors"]) for x in got] == [
        (w["patient_id"], w["risk_percent"], w["top_factors"]) for w in want]
    before = len(_denials(wh, "GET /api/v1/practices/A81001/case-finding"))
    for user in ("pm", "fin"):
        r = _get(economy, "/practices/A81001/case-finding", user)
        assert r.status_code == 403
        assert r.json()["who_may"] == "practice:A81001"
    rows = _denials(wh, "GET /api/v1/practices/A81001/case-finding")
    assert len(rows) == before + 2
    assert {(e.actor, e.actor_role) for e in rows[-2:]} == {("pm", "practice:A81000"),
                                                            ("fin", "commissioner:Q99")}


def test_indicator_rows_are_the_benchmarks_disclosure_controlled(economy: dict[str, Any]
                                                                 ) -> None:
    from pbc.services.benchmarking import benchmark_indicator, disclosure_controlled

    wh = economy["wh"]
    table = disclosure_controlled(benchmark_indicator(
        wh, "emergency_admissions", level="practice", monthly=False)).table
    r = _get(economy, "/indicators/emergency_admissions", "pm", level="practice")
    assert r.status_code == 200, r.text
    got = {x["code"]: x for x in r.json()["rows"]}
    assert set(got) == set(table.practice)
    for row in table.to_dict("records"):
        mine = got[row["practice"]]
        assert mine["value"] == pytest.approx(row["value"], nan_ok=True) or (
            mine["value"] is None and row["value"] != row["value"])
        assert mine["significance"] == row["significance"]
    assert _get(economy, "/indicators/no_such_thing", "pm").status_code == 404
    assert _get(economy, "/indicators/emergency_admissions", "pm",
                level="ward").status_code == 422


# ----------------------------------------------------------------------- cases
def test_cases_listed_shown_and_approved_with_optimistic_locking(economy: dict[str, Any]
                                                                 ) -> None:
    from pbc.services.cases import show, visible_cases

    wh, client, case_id = economy["wh"], economy["client"], economy["case"]
    with DecisionStore.beside(wh.root) as store:
        want = [v.id for v in visible_cases(store, Principal("pm", "practice", "A81000"))]
        view = show(store, Principal("pm", "practice", "A81000"), case_id)
    assert [c["id"] for c in _get(economy, "/cases", "pm").json()] == want
    assert _get(economy, "/cases", "pm2").json() == []
    r = _get(economy, f"/cases/{case_id}", "pm")
    assert r.status_code == 200 and r.json()["version"] == view.version
    assert Decimal(r.json()["savings"]["net"]) * 100 == view.savings["net_pence"]
    assert _get(economy, f"/cases/{case_id}", "pm2").status_code == 403
    assert _get(economy, "/cases/999999", "pm").status_code == 404
    url = f"/api/v1/cases/{case_id}/approve"
    stale = client.post(url, json={"expected_version": view.version - 1},
                        headers=_as(economy, "approver"))
    assert stale.status_code == 409 and "changed by someone else" in stale.json()["detail"]
    assert _get(economy, f"/cases/{case_id}", "pm").json()["status"] == "submitted"
    refused = client.post(url, json={"expected_version": view.version},
                          headers=_as(economy, "pm"))
    assert refused.status_code == 403
    assert refused.json()["who_may"] == "commissioner_approver:Q99"
    ok = client.post(url, json={"expected_version": view.version},
                     headers=_as(economy, "approver"))
    assert ok.status_code == 200, ok.text
    assert (ok.json()["status"], ok.json()["version"]) == ("approved", view.version + 1)
    again = client.post(url, json={"expected_version": view.version + 1},
                        headers=_as(economy, "approver"))
    assert again.status_code == 409


# ----------------------------------------------------------------------- schemathesis
def test_no_server_error_with_a_valid_token(economy: dict[str, Any]) -> None:
    """schemathesis over /api/v1/openapi.json: whatever the parameters, every operation
    answers without a 5xx (as the commissioner, who reaches the most code), a bounded
    number of examples each."""
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", economy["client"].app)
    headers = _as(economy, "fin")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def no_server_error(case: Any) -> None:
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error])

        no_server_error()


def test_openapi_document_names_the_endpoints_and_money_as_pounds(economy: dict[str, Any]
                                                                  ) -> None:
    doc = economy["client"].get("/api/v1/openapi.json").json()
    for path in ("/practices/{code}/position", "/practices/{code}/budget",
                 "/practices/{code}/case-finding", "/indicators/{indicator_id}", "/cases",
                 "/cases/{case_id}", "/cases/{case_id}/approve"):
        assert path in doc["paths"], path
    line = doc["components"]["schemas"]["PositionLine"]["properties"]["spend_to_date"]
    assert line["type"] == "string" and line["pattern"].startswith("^-?[0-9]+")
