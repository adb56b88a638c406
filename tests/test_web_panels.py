"""The dashboards' benchmark and restatement panels: each figure is the service's own
(``pbc benchmark``, ``pbc monitor restatements``), the holder highlighted, other practices
disclosure-controlled for anyone but the commissioner, and 403 with an audit row for a
holder the viewer may not see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conftest import copy_economy
from pbc.decisions import DecisionStore
from pbc.services.accounts import set_password
from pbc.services.benchmarking import benchmark_indicator, disclosure_controlled
from pbc.services.cases import add_user
from pbc.services.principal import Principal
from pbc.web.panel_pages import PANEL_INDICATORS
from test_web_la import denied_rows
from test_web_pages import PASSWORD, _app, signed_in

ADMIN = Principal("admin", "administrator", "Q99", source="x")
FINANCE = Principal("finance.lead", "commissioner", "Q99")
PERIOD = "2025-09"
OWN = "A81001"


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory, web_economy_template: Path) -> Any:
    base = tmp_path_factory.mktemp("panels") / "e"
    wh: Any = copy_economy(web_economy_template, base)
    with DecisionStore.beside(wh.root) as store:
        add_user(store, Principal("admin", "administrator", "Q99"), "admin", "administrator",
                 "Q99")
        group = wh.query("SELECT group_code FROM practices WHERE practice_code = ?", [OWN])
        for name, role, org in (("pm", "practice", OWN), ("fin", "commissioner", "Q99"),
                                ("lead", "group", group[0][0])):
            add_user(store, ADMIN, name, role, org)
            set_password(store, ADMIN, name, PASSWORD)
    return wh


@pytest.fixture(scope="module")
def app(economy: Any) -> Any:
    return _app(economy)


def _specs(html: str) -> dict[str, dict[str, Any]]:
    """The page's inline chart specifications, by their script element's id."""
    import re

    return {m.group(1): json.loads(m.group(2).replace("<\\/", "</")) for m in re.finditer(
        r'<script type="application/json" id="([^"]+)">(.*?)</script>', html, re.S)}


def _points(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The data rows of a chart's point layer (inline or in the named datasets)."""
    for layer in spec.get("layer", []):
        if layer.get("name") == "points":
            data = layer.get("data") or spec.get("data") or {}
            return list(data["values"] if "values" in data
                        else spec["datasets"][data["name"]])
    raise AssertionError("no point layer")


def _units(spec: dict[str, Any]) -> set[str]:
    return {str(p["unit"]) for p in _points(spec)}


def test_a_practice_sees_its_readings_funnel_and_spc(economy: Any, app: Any) -> None:
    pm = signed_in(app, "pm")
    fragment = pm.get(f"/practices/{OWN}/benchmarks", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    page = pm.get(f"/practices/{OWN}/benchmarks")
    assert page.status_code == 200 and "<h1>" in page.text
    specs = _specs(fragment.text)
    for ind_id in PANEL_INDICATORS:
        whole = benchmark_indicator(economy, ind_id, level="practice")
        mine = whole.table[whole.table["practice"].astype(str) == OWN].iloc[0]
        places = 2 if whole.indicator.kind in ("ratio", "cost_per_head") \
            or whole.indicator.multiplier == 1 else 1
        assert f"{float(mine['value']):,.{places}f} {whole.indicator.unit}" in fragment.text
        # the funnel: the practice's own point, and the others as they may leave the
        # commissioner (a practice whose counts are suppressed is not drawn)
        funnel = specs[f"funnel-{ind_id}"]
        shown = disclosure_controlled(whole).table
        drawable = set(shown.loc[shown["value"].notna(), "practice"].astype(str)) | {OWN}
        assert _units(funnel) == drawable
        assert {str(p["unit"]) for p in _points(funnel) if p["highlighted"]} == {OWN}
        assert "highlight" in {layer.get("name") for layer in funnel["layer"]}
        # the XmR chart: the practice's own monthly values, month by month
        spc = specs[f"spc-{ind_id}"]
        series = whole.series[whole.series["practice"].astype(str) == OWN]
        got = [p["value"] for p in _points(spc)]
        assert got == pytest.approx(series.sort_values("period")["value"].tolist())


def test_the_commissioner_sees_every_practice_on_the_funnel(economy: Any, app: Any) -> None:
    fin = signed_in(app, "fin")
    specs = _specs(fin.get(f"/practices/{OWN}/benchmarks",
                           headers={"HX-Request": "true"}).text)
    whole = benchmark_indicator(economy, PANEL_INDICATORS[0], level="practice")
    every = set(whole.table.loc[whole.table["value"].notna(), "practice"].astype(str))
    assert _units(specs[f"funnel-{PANEL_INDICATORS[0]}"]) == every


def test_benchmarks_of_another_practice_are_refused_and_audited(economy: Any,
                                                                 app: Any) -> None:
    pm = signed_in(app, "pm")
    other = next(c for (c,) in economy.query("SELECT practice_code FROM practices "
                                              "ORDER BY 1") if c != OWN)
    path = f"/practices/{other}/benchmarks"
    r = pm.get(path)
    assert r.status_code == 403 and f"practice:{other}" in r.text
    assert denied_rows(economy, path, "pm")


def test_the_group_lead_sees_its_members_benchmarks_not_others(economy: Any,
                                                                app: Any) -> None:
    (group,), = economy.query("SELECT group_code FROM practices WHERE practice_code = ?",
                              [OWN])
    lead = signed_in(app, "lead")
    assert lead.get(f"/practices/{OWN}/benchmarks").status_code == 200
    assert lead.get(f"/groups/{group}/benchmarks").status_code == 200
    outsider = economy.query("SELECT practice_code FROM practices WHERE group_code <> ? "
                             "ORDER BY 1", [group])
    if outsider:
        path = f"/practices/{outsider[0][0]}/benchmarks"
        assert lead.get(path).status_code == 403
        assert denied_rows(economy, path, "lead")
    other_groups = economy.query("SELECT DISTINCT group_code FROM practices WHERE "
                                 "group_code <> ? ORDER BY 1", [group])
    assert other_groups, "the template economy has two groups"
    path = f"/groups/{other_groups[0][0]}/benchmarks"
    assert lead.get(path).status_code == 403
    assert denied_rows(economy, path, "lead")


def test_the_dashboard_loads_its_panels(app: Any) -> None:
    pm = signed_in(app, "pm")
    page = pm.get(f"/practices/{OWN}")
    assert f'hx-get="/practices/{OWN}/benchmarks"' in page.text
    assert f'hx-get="/practices/{OWN}/restatements?month=' in page.text


# ------------------------------------------------------------------ restatements
@pytest.fixture(scope="module")
def restated(economy: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """September frozen, then a revision of some of the practice's spells of the first
    half-year (a costlier HRG), loaded and priced: restatements of the frozen month."""
    from pbc.services.freeze import freeze_month
    from pbc.services.pricing import run_pricing
    from pbc.warehouse.load import load

    freeze_month(economy, FINANCE, PERIOD)
    base = economy.root.parent
    con = duckdb.connect()
    spells = con.sql(f"SELECT * FROM read_parquet('{base}/in/apc_spells.parquet')").df()
    con.close()
    dear = spells.sort_values("hrg_code").hrg_code.mode().iloc[0]
    mine = spells[(spells.practice_code == OWN) & (spells.hrg_code != dear)]
    dates = pd.to_datetime(mine["discharge_date"])
    early = mine[(dates >= "2025-04-01") & (dates < "2025-09-01")].head(5).copy()
    assert len(early) == 5
    early["hrg_code"] = dear
    folder = tmp_path_factory.mktemp("revision") / "2025-10"
    (folder / "revisions").mkdir(parents=True)
    early.to_parquet(folder / "revisions" / "apc_spells.parquet", index=False)
    load(folder, economy)
    run_pricing(economy)
    return economy


def test_restatements_are_the_services_for_the_practice(restated: Any, app: Any) -> None:
    from pbc.services.freeze import restatements

    report = restatements(restated, FINANCE, PERIOD).frame
    mine = report[(report.level == "practice") & (report.code == OWN)]
    assert len(mine), "the revision restates the practice's frozen month"
    pm = signed_in(app, "pm")
    r = pm.get(f"/practices/{OWN}/restatements?month={PERIOD}",
               headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<html" not in r.text
    csv = pm.get(f"/practices/{OWN}/restatements/download/practice-restatements.csv"
                 f"?month={PERIOD}")
    assert csv.status_code == 200
    import io

    got = pd.read_csv(io.StringIO(csv.text))
    assert len(got) == len(mine)
    assert round(got["Restated by"].sum() * 100) == int(mine["difference"].sum())
    assert set(got["Why"]) == set(mine["why"])
    fin = signed_in(app, "fin")
    assert fin.get(f"/practices/{OWN}/restatements?month={PERIOD}").status_code == 200


def test_restatements_of_another_practice_are_refused(restated: Any, app: Any) -> None:
    pm = signed_in(app, "pm")
    other = next(c for (c,) in restated.query("SELECT practice_code FROM practices "
                                               "ORDER BY 1") if c != OWN)
    path = f"/practices/{other}/restatements"
    assert pm.get(path, params={"month": PERIOD}).status_code == 403
    assert denied_rows(restated, path, "pm")


def test_unsigned_fragment_asks_to_sign_in(app: Any) -> None:
    r = TestClient(app).get(f"/practices/{OWN}/benchmarks", headers={"HX-Request": "true"},
                            follow_redirects=False)
    assert r.status_code == 401 and "HX-Redirect" in r.headers
