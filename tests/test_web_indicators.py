"""The indicator pages: the library, and an indicator's funnel plot and table, each figure
the disclosure-controlled benchmark's, every practice in the chart's specification, the
viewer's practice highlighted and only the dashboards it may open linked."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conftest import copy_economy
from pbc.decisions import DecisionStore
from pbc.services.accounts import set_password
from pbc.services.cases import add_user
from pbc.services.principal import Principal
from pbc.web.app import create_app
from pbc.web.settings import WebSettings
from test_web_la import table_rows

PASSWORD = "correct horse battery"
ADMIN = Principal("admin", "administrator", "Q99")
SUPPRESSING = "emergency_readmissions_30d"  # two practices' counts are 1-7 in this economy
PRACTICES = ["A81000", "A81001", "A81002", "A81003"]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, web_economy_template: Path) -> Any:
    wh: Any = copy_economy(web_economy_template, tmp_path_factory.mktemp("web-ind") / "e")
    with DecisionStore.beside(wh.root) as store:
        add_user(store, ADMIN, "admin", "administrator", "Q99")
        admin = Principal("admin", "administrator", "Q99", source="x")
        for name, role, org in (("fin", "commissioner", "Q99"), ("pm", "practice", "A81001")):
            add_user(store, admin, name, role, org)
            set_password(store, admin, name, PASSWORD)
    application = create_app(WebSettings(wh.root, secure_cookies=False,
                                         login_failures_allowed=50))
    application.state.economy = wh
    return application


def signed_in(app: Any, user: str) -> TestClient:
    client = TestClient(app)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token
    assert client.post("/login", data={"username": user, "password": PASSWORD,
                                       "csrf_token": token.group(1)},
                       follow_redirects=False).status_code == 303
    return client


def spec_of(page: str) -> dict[str, Any]:
    text = page.split('id="chart-spec">', 1)[1].split("</script>", 1)[0]
    spec: dict[str, Any] = json.loads(text)
    return spec


def points(spec: dict[str, Any]) -> list[dict[str, Any]]:
    layer = next(x for x in spec["layer"] if x.get("name") == "points")
    data = layer.get("data", spec.get("data", {}))
    values: list[dict[str, Any]] = data["values"] if "values" in data \
        else spec["datasets"][data["name"]]
    return values


def test_library_lists_every_indicator(app: Any) -> None:
    from pbc.services.benchmarking import list_indicators

    page = signed_in(app, "pm").get("/indicators")
    assert page.status_code == 200
    links = re.findall(r'<a href="/indicators/([a-z0-9_]+)">', page.text)
    assert links == [i.id for i in list_indicators()]


def test_funnel_has_every_practice_and_links_only_what_the_viewer_may_open(app: Any) -> None:
    from pbc.services.benchmarking import benchmark_indicator, disclosure_controlled

    wh = app.state.economy
    page = signed_in(app, "pm").get("/indicators/emergency_admissions?year=2025-26")
    assert page.status_code == 200, page.text[:800]
    spec = spec_of(page.text)
    drawn = points(spec)
    assert sorted(p["unit"] for p in drawn) == PRACTICES
    # links: only the practice user's own dashboard; its point is highlighted
    assert {p["unit"]: p["href"] for p in drawn} == {
        c: ("/practices/A81001" if c == "A81001" else None) for c in PRACTICES}
    assert [p["unit"] for p in drawn if p["highlighted"]] == ["A81001"]
    assert next(x for x in spec["layer"] if x.get("name") == "points"
                )["encoding"]["href"] == {"field": "href", "type": "nominal"}
    # the table is the disclosure-controlled benchmark's
    result = disclosure_controlled(benchmark_indicator(
        wh, "emergency_admissions", financial_year="2025-26", monthly=False))
    rows = table_rows(page.text, "indicator-emergency_admissions")
    assert [(r[0], r[2], r[4]) for r in rows] == [
        (str(c), f"{n:,.0f}", f"{v:,.1f}") for c, n, v in
        zip(result.table.practice, result.table.numerator, result.table.value, strict=True)]
    assert "(your practice)" in next(r[1] for r in rows if r[0] == "A81001")
    # the commissioner's points link to every practice's dashboard
    commissioner = spec_of(signed_in(app, "fin").get(
        "/indicators/emergency_admissions?year=2025-26").text)
    assert {p["unit"]: p["href"] for p in points(commissioner)} == {
        c: f"/practices/{c}" for c in PRACTICES}


def test_suppressed_counts_are_neither_shown_nor_drawn(app: Any) -> None:
    from pbc.services.benchmarking import benchmark_indicator

    wh = app.state.economy
    client = signed_in(app, "fin")
    page = client.get(f"/indicators/{SUPPRESSING}?year=2025-26")
    assert page.status_code == 200
    whole = benchmark_indicator(wh, SUPPRESSING, financial_year="2025-26", monthly=False)
    small = set(whole.table.practice[whole.table.numerator.between(1, 7)].astype(str))
    assert small, "the economy should have a practice with 1-7 events here"
    rows = {r[0]: r for r in table_rows(page.text, f"indicator-{SUPPRESSING}")}
    assert set(rows) == set(PRACTICES)
    for code in small:
        assert rows[code][2] == "*" and rows[code][4] == "*"
    assert all(not (c.isdigit() and 1 <= int(c) <= 7)
               for r in rows.values() for c in (r[2], r[3]))
    # complementary suppression hides more than the small counts: none of them is drawn
    hidden = {code for code, r in rows.items() if r[4] == "*"}
    assert small <= hidden
    assert hidden.isdisjoint(p["unit"] for p in points(spec_of(page.text)))
    assert f"{len(hidden)} not drawn because their counts are suppressed" in page.text
    csv = client.get(f"/indicators/{SUPPRESSING}/download/indicator-{SUPPRESSING}.csv"
                     "?year=2025-26")
    assert csv.status_code == 200
    frame = pd.read_csv(io.StringIO(csv.text), dtype=str, keep_default_na=False)
    assert frame.set_index("Practice").loc[sorted(small), "Numerator"].tolist() == \
        ["*"] * len(small)
    xlsx = client.get(f"/indicators/{SUPPRESSING}/download/indicator-{SUPPRESSING}.xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"


def test_unknown_indicator_says_so(app: Any) -> None:
    r = signed_in(app, "pm").get("/indicators/no_such_thing")
    assert r.status_code == 409 and "no indicator" in r.text
