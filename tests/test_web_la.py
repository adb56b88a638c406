"""The council page (/councils/CODE) and the group dashboard (/groups/CODE): each figure as
the service gives it for the same principal, suppression (no count 1-7 in the HTML), and
403 with its audit row for another council or another group."""

from __future__ import annotations

import html
import io
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select

from conftest import copy_economy
from pbc.decisions import DecisionStore
from pbc.decisions.models import AuditEvent
from pbc.services.accounts import WEB_SESSION, set_password
from pbc.services.cases import act, add_user, case_file_path, create_case, read_baseline
from pbc.services.principal import Principal
from pbc.web.app import create_app
from pbc.web.settings import WebSettings
from test_web_pages import PASSWORD, signed_in

ADMIN = Principal("admin", "administrator", "Q99")
ROOT = Path(__file__).resolve().parents[1]
COUNCIL, OTHER_COUNCIL = "E06009000", "E06009001"
USERS = (("fin", "commissioner", "Q99"), ("la", "local_authority", COUNCIL),
         ("la2", "local_authority", OTHER_COUNCIL), ("pm", "practice", "A81001"),
         ("lead", "group", "G01"), ("lead2", "group", "G02"))


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory, web_economy_template: Path) -> Any:
    """The shared economy with users, the example pooled budget in the register and the
    example business case (it touches social care in E06009000) in consultation."""
    from pbc.services.pooled import read_agreement, record_agreement

    wh: Any = copy_economy(web_economy_template, tmp_path_factory.mktemp("web-la") / "e")
    with DecisionStore.beside(wh.root) as store:
        add_user(store, ADMIN, "admin", "administrator", "Q99")
        admin = Principal("admin", "administrator", "Q99", source="x")
        for name, role, org in USERS:
            add_user(store, admin, name, role, org)
            set_password(store, admin, name, PASSWORD)
        agreement, text = read_agreement(ROOT / "examples" / "pooled_budget.toml")
        record_agreement(store, Principal("la", "local_authority", COUNCIL), agreement, text)
        case, text = case_file_path(ROOT / "examples" / "business_case.toml")
        baseline, _ = read_baseline(wh, case)
        pm = Principal("pm", "practice", "A81001")
        view = create_case(store, pm, case, text, baseline, "Q99")
        assert act(store, pm, view.id, "submit").status == "consultation"
    return wh


@pytest.fixture(scope="module")
def app(economy: Any) -> Any:
    return create_app(WebSettings(economy.root, secure_cookies=False,
                                  login_failures_allowed=50))




def principal(user: str) -> Principal:
    role, org = next((r, o) for n, r, o in USERS if n == user)
    return Principal(user, role, org, source=WEB_SESSION)  # type: ignore[arg-type]


def table_rows(page: str, name: str) -> list[list[str]]:
    """The body rows of the page's table ``name`` as text."""
    part = page.split(f'id="table-{name}"', 1)[1].split("</table>", 1)[0]
    body = part.split("<tbody", 1)[1]
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def denied_rows(economy: Any, path: str, actor: str) -> list[AuditEvent]:
    """The audit log's refusals of ``path`` to ``actor``."""
    with DecisionStore.beside(economy.root) as store, store._session() as s:
        return list(s.scalars(select(AuditEvent).where(
            AuditEvent.action == "access_denied", AuditEvent.entity_id == path,
            AuditEvent.actor == actor)))


def _pounds(v: Any) -> str:
    d = Decimal(str(v)).quantize(Decimal("0.01"))
    return f"-£{-d:,.2f}" if d < 0 else f"£{d:,.2f}"


# ------------------------------------------------------------------ councils
def test_council_page_shows_the_services_figures(app: Any, economy: Any) -> None:
    from pbc.services import profiles
    from pbc.services import shared_clients as svc
    from pbc.services.pooled import register

    page = signed_in(app, "la").get(f"/councils/{COUNCIL}")
    assert page.status_code == 200, page.text[:800]
    who = principal("la")
    with DecisionStore.beside(economy.root) as store:
        rows = register(store, who)
    assert [[r[0], r[6], r[7]] for r in table_rows(page.text, "la-register")] == \
        [[r.reference, r.financial_year, _pounds(r.as_dict()["contributions"])] for r in rows]
    # each partner's settlement, at the month being monitored (the latest with activity)
    from pbc.services.monitoring import latest_month
    from pbc.services.pooled import pooled_position, settlement_frame, stored_agreement

    with DecisionStore.beside(economy.root) as store:
        pos = pooled_position(economy, who, stored_agreement(store, who, "S75-2025-01"),
                              "2025-26", month=latest_month(economy, "2025-26"), store=store)
    assert pos.settlement is not None
    assert [(r[1], r[6]) for r in table_rows(page.text, "la-settlement")] == [
        (p, _pounds(f)) for p, f in zip(settlement_frame(pos.settlement).partner,
                                        settlement_frame(pos.settlement).final_position,
                                        strict=True)]
    # the profile: every row of the service's profile, suppressed ones as *
    profile = profiles.neighbourhood_profile(economy, COUNCIL, who)
    got = table_rows(page.text, "la-profile")
    frame = profile.frame()
    assert len(got) == len(frame)
    want = [[m, b, n, "*" if s else ("" if pd.isna(c) else str(c))]
            for m, b, n, c, s in zip(frame.measure, frame.breakdown,
                                     frame.neighbourhood_code, frame["count"],
                                     frame.suppressed, strict=True)]
    assert [r[:4] for r in got] == want
    report = svc.shared_clients_report(economy, who, COUNCIL)
    shared = table_rows(page.text, "la-shared-clients")
    assert [(r[1], r[3]) for r in shared] == [
        (str(c), "*" if s else str(p)) for c, p, s in
        zip(report.rows["code"], report.rows["people"], report.rows["suppressed"],
            strict=True)]
    # the business case waiting for the council's response, with its link
    cases = table_rows(page.text, "la-cases")
    assert [r[1] for r in cases] == ["consultation"]
    assert f'href="/cases/{cases[0][0]}"' in page.text


def test_council_sees_no_count_from_1_to_7(app: Any) -> None:
    page = signed_in(app, "la").get(f"/councils/{COUNCIL}").text
    checked = 0
    for name, col in (("la-profile", 3), ("la-shared-clients", 3)):
        for row in table_rows(page, name):
            cell = row[col].replace(",", "")
            if cell.isdigit():
                assert not 1 <= int(cell) <= 7, (name, row)
            checked += cell == "*"
    assert checked, "the economy should have some suppressed cells to check"


def test_another_council_is_refused_and_audited(app: Any, economy: Any) -> None:
    client = signed_in(app, "la2")
    r = client.get(f"/councils/{COUNCIL}")
    assert r.status_code == 403
    assert COUNCIL not in table_text(r.text)
    assert denied_rows(economy, f"/councils/{COUNCIL}", "la2")
    assert client.get(f"/councils/{COUNCIL}/download/la-profile.csv").status_code == 403
    # a practice user may not see a council either
    assert signed_in(app, "pm").get(f"/councils/{COUNCIL}").status_code == 403


def table_text(page: str) -> str:
    return " ".join(re.findall(r"<td[^>]*>(.*?)</td>", page, re.S))


def test_council_download_is_the_page_table(app: Any) -> None:
    client = signed_in(app, "la")
    page = client.get(f"/councils/{COUNCIL}").text
    csv = client.get(f"/councils/{COUNCIL}/download/la-profile.csv")
    assert csv.status_code == 200
    frame = pd.read_csv(io.StringIO(csv.text), dtype=str, keep_default_na=False)
    assert frame["Count"].tolist() == [r[3] for r in table_rows(page, "la-profile")]
    xlsx = client.get(f"/councils/{COUNCIL}/download/la-register.xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"


# ------------------------------------------------------------------ groups
def test_group_dashboard_is_the_group_position(app: Any, economy: Any) -> None:
    from pbc.monitoring.position import TOTAL, in_pounds
    from pbc.services.monitoring import monthly_position

    page = signed_in(app, "lead").get("/groups/G01?month=2025-09")
    assert page.status_code == 200, page.text[:800]
    pos = monthly_position(economy, principal("lead"), "2025-09", level="group")
    frame = in_pounds(pos.frame)
    total = frame[frame.service_line == TOTAL].iloc[0]
    assert _pounds(total.spend_to_date) in page.text.split('id="spend-to-date">')[1][:40]
    got = {r[0]: r[3] for r in table_rows(page.text, "group-position")}
    assert got == {str(r.service_line): _pounds(r.spend_to_date)
                   for r in frame.itertuples()}
    # the lead and the commissioner see the group's member practices in the year, with
    # the figures of the service's practice level (the commissioner's) for them
    practices = in_pounds(monthly_position(economy, principal("fin"), "2025-09").frame)
    members = practices[(practices.service_line == TOTAL)
                        & practices.code.isin(_members(economy, "G01"))]
    assert len(members) >= 2
    expected = {str(r.code): [_pounds(getattr(r, c)) for c in (
        "annual_budget", "budget_to_date", "spend_to_date", "variance", "forecast_outturn")]
        for r in members.itertuples()}
    for user in ("lead", "fin"):
        page = signed_in(app, user).get("/groups/G01?month=2025-09")
        assert page.status_code == 200, page.text[:800]
        assert {r[0]: r[2:] for r in table_rows(page.text, "group-members")} == expected
        for code in expected:  # each member links to its dashboard
            assert f'<a href="/practices/{code}">{code}</a>' in page.text
    client = signed_in(app, "lead")
    csv = client.get("/groups/G01/download/group-position.csv?month=2025-09")
    assert csv.status_code == 200 and "Service line" in csv.text
    csv = client.get("/groups/G01/download/group-members.csv?month=2025-09")
    assert csv.status_code == 200
    got = pd.read_csv(io.StringIO(csv.text), dtype=str)
    assert sorted(got["Practice"]) == sorted(expected)
    xlsx = client.get("/groups/G01/download/group-members.xlsx?month=2025-09")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"


def _members(economy: Any, group: str) -> set[str]:
    """The practices the year's budget phases with ``group`` (read from the warehouse)."""
    return {str(r[0]) for r in economy.query(
        "SELECT DISTINCT practice_code FROM budget_phasing WHERE financial_year = '2025-26' "
        "AND group_code = ? AND practice_code IS NOT NULL", [group])}


def test_the_lead_opens_a_members_dashboard_not_its_case_finding(app: Any, economy: Any
                                                                 ) -> None:
    from pbc.services.monitoring import monthly_position

    member = sorted(_members(economy, "G01"))[0]
    stranger = sorted(_members(economy, "G02") - _members(economy, "G01"))[0]
    client = signed_in(app, "lead")
    page = client.get(f"/practices/{member}?month=2025-09")
    assert page.status_code == 200, page.text[:800]
    pos = monthly_position(economy, principal("fin"), "2025-09", holder=member).frame
    spend = pos[pos.service_line == "all"].spend_to_date.iloc[0]
    assert _pounds(Decimal(int(spend)) / 100) in page.text
    assert f"/practices/{member}/case-finding" not in page.text  # no link to patients
    assert client.get(f"/practices/{member}/pack.xlsx?month=2025-09").status_code == 200
    # another group's practice: refused and audited
    assert client.get(f"/practices/{stranger}?month=2025-09").status_code == 403
    assert denied_rows(economy, f"/practices/{stranger}", "lead")
    # the member's patients stay with the practice: refused and audited
    assert client.get(f"/practices/{member}/case-finding").status_code == 403
    assert denied_rows(economy, f"/practices/{member}/case-finding", "lead")


def test_another_groups_dashboard_is_refused(app: Any, economy: Any) -> None:
    assert signed_in(app, "lead2").get("/groups/G01").status_code == 403
    assert signed_in(app, "pm").get("/groups/G01").status_code == 403
    assert denied_rows(economy, "/groups/G01", "lead2")
