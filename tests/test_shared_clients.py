"""Shared clients of NHS and social care (pbc.local_authorities.shared_clients,
pbc.services.shared_clients; docs/local-authorities.md).

The cost rule by hand; the aggregates against an independent recomputation from the raw
rows of a small synthetic economy (plain pandas and DuckDB here, not the module's code);
no published count of 1-7; access; the demo function.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from la_fixtures import small_la_economy, small_la_economy_scored
from pbc.local_authorities.shared_clients import package_cost_pence
from pbc.services.principal import AccessDenied, Principal
from pbc.services.shared_clients import shared_clients_report

YEAR = (dt.date(2025, 4, 1), dt.date(2026, 3, 31))
LA = "E06009000"
CARE = ("home_care", "residential", "nursing", "day_care", "respite", "reablement",
        "direct_payment", "carers_support")


def test_package_cost_by_hand() -> None:
    # open, started before the year: all 365 days, £70 a week = £3,650.00
    assert package_cost_pence("70.00", dt.date(2025, 3, 25), None, *YEAR) == 365_000
    # mid-year, 1 to 14 October counting both: two weeks at £434 = £868.00
    assert package_cost_pence(Decimal("434.00"), dt.date(2025, 10, 1),
                              dt.date(2025, 10, 14), *YEAR) == 86_800
    # one day at £10 a week = 142.857p, half up once: 143p
    assert package_cost_pence("10.00", dt.date(2026, 3, 31), dt.date(2026, 5, 1), *YEAR) == 143
    # runs past the year's end: only the days inside it (1 to 31 March: 31 days at £7)
    assert package_cost_pence("7.00", dt.date(2026, 3, 1), dt.date(2026, 6, 30), *YEAR) == 3100
    # ended before the year: nothing
    assert package_cost_pence("500.00", dt.date(2024, 4, 1), dt.date(2025, 3, 31), *YEAR) == 0


def test_people_by_hand() -> None:
    from pbc.local_authorities.shared_clients import shared_clients

    d = dt.date
    packages = pd.DataFrame([
        # A: two weeks of home care at £100 and one week of residential care at £500
        ("A", "home_care", d(2025, 5, 1), d(2025, 5, 14), Decimal("100.00")),
        ("A", "residential", d(2025, 6, 1), d(2025, 6, 7), Decimal("500.00")),
        (None, "home_care", d(2025, 5, 1), None, Decimal("100.00")),  # no patient id
        ("Z", "day_care", d(2025, 5, 1), None, Decimal("100.00")),  # not in the register
        ("B", "nursing", d(2024, 5, 1), d(2025, 3, 31), Decimal("900.00")),  # before
        ("B", "respite", d(2026, 3, 30), None, Decimal("70.00")),  # two days in the year
    ], columns=["patient_id", "service_type", "start_date", "end_date", "weekly_cost"])
    register = pd.DataFrame({"patient_id": ["A", "B"], "neighbourhood_code": ["N1", "N9"]})
    nhs = pd.DataFrame({"patient_id": ["A"], "nhs_pence": [123_456],
                        "emergency_admissions": [2]})
    people, link = shared_clients(packages, register, nhs, *YEAR,
                                  council_neighbourhoods={"N1"}, segments=None)
    assert (link.packages, link.linked_packages, link.no_patient_id, link.not_in_register,
            link.people) == (5, 3, 1, 1, 2)
    a, b = people.set_index("patient_id").loc["A"], people.set_index("patient_id").loc["B"]
    assert (a.care_type, a.care_types, a.social_care_pence) == (
        "residential", "home_care+residential", 70_000)  # £200 + £500
    assert (a.nhs_pence, a.emergency_admissions, a.neighbourhood_code) == (123_456, 2, "N1")
    assert (b.care_type, b.social_care_pence, b.nhs_pence) == ("respite", 2_000, 0)
    assert b.neighbourhood_code == "elsewhere" and b.segment == "not_scored"


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory) -> object:
    return small_la_economy(tmp_path_factory)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> object:
    return small_la_economy_scored(tmp_path_factory)


def _pence(weekly: object, start: dt.date, end: dt.date | None) -> int:
    first, last = max(start, YEAR[0]), min(end or YEAR[1], YEAR[1])
    days = (last - first).days + 1
    exact = Fraction(str(weekly)) * days * 100 / 7
    return int(exact + Fraction(1, 2)) if days > 0 else 0  # half up, positive amounts


def independent(wh: object, la: str) -> pd.DataFrame:
    """One row per shared client, from the raw rows with plain pandas and DuckDB."""
    con = wh.connect()  # type: ignore[attr-defined]
    try:
        pk = con.execute("SELECT * FROM social_care_packages WHERE local_authority_code = ?",
                         [la]).df()
        pats = con.execute("SELECT patient_id, neighbourhood_code FROM patients").df()
        hoods = set(con.execute("SELECT neighbourhood_code FROM neighbourhoods WHERE "
                                "local_authority_code = ?", [la]).df()["neighbourhood_code"])
        nhs = con.execute("""SELECT patient_id, price, marginal_rate_adjustment
                             FROM priced_activity WHERE financial_year = '2025-26'
                             AND price IS NOT NULL AND patient_id IS NOT NULL""").fetchall()
        em = con.execute("""SELECT patient_id, count(*) AS n FROM apc_spells
                            WHERE substr(admission_method, 1, 1) = '2'
                            AND discharge_date BETWEEN DATE '2025-04-01' AND DATE '2026-03-31'
                            GROUP BY patient_id""").df()
        seg = (con.execute("SELECT patient_id, segment FROM risk_scores").df()
               if "risk_scores" in wh.table_names() else None)  # type: ignore[attr-defined]
    finally:
        con.close()
    pk["start_date"] = pd.to_datetime(pk["start_date"]).dt.date
    pk["end_date"] = [None if pd.isna(v) else pd.Timestamp(v).date() for v in pk["end_date"]]
    live = pk[[s <= YEAR[1] and (e is None or e >= YEAR[0])
               for s, e in zip(pk["start_date"], pk["end_date"], strict=True)]]
    live = live[live["patient_id"].isin(set(pats["patient_id"]))].copy()
    live["pence"] = [_pence(w, s, e) for w, s, e in
                     zip(live["weekly_cost"], live["start_date"], live["end_date"], strict=True)]
    rows = []
    for pid, mine in live.groupby("patient_id"):
        cost = mine.groupby("service_type")["pence"].sum()
        main = sorted(cost.index, key=lambda t: (-cost[t], CARE.index(t)))[0]
        rows.append({"patient_id": pid, "care_type": main, "types": set(cost.index),
                     "sc": int(cost.sum())})
    people = pd.DataFrame(rows)
    where = dict(zip(pats["patient_id"], pats["neighbourhood_code"], strict=True))
    people["hood"] = [h if h in hoods else ("unknown" if h is None or pd.isna(h)
                                            else "elsewhere")
                      for h in people["patient_id"].map(where)]
    spend: dict[str, Decimal] = {}
    for pid, price, marginal in nhs:  # Decimal pounds, exactly
        spend[pid] = spend.get(pid, Decimal(0)) + price - marginal
    people["nhs"] = [int(spend.get(p, Decimal(0)) * 100) for p in people["patient_id"]]
    people["em"] = people["patient_id"].map(dict(zip(em["patient_id"], em["n"],
                                                     strict=True))).fillna(0).astype(int)
    people["segment"] = (people["patient_id"].map(dict(zip(seg["patient_id"], seg["segment"],
                                                           strict=True))).fillna("not_scored")
                         if seg is not None else "not_scored")
    return people


def _published(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[~rows["suppressed"].astype(bool)]


def test_matches_an_independent_recomputation(scored: object) -> None:
    report = shared_clients_report(scored, Principal("lee", "local_authority", LA), LA)
    people = independent(scored, LA)
    assert report.financial_year == "2025-26" and report.scored
    assert report.linkage.people == len(people) > 20
    council = report.table("council").set_index("care_type")
    assert council.loc["all", "people"] == len(people)
    assert council.loc["all", "social_care_cost"] == Decimal(int(people["sc"].sum())) / 100
    assert council.loc["all", "nhs_cost"] == Decimal(int(people["nhs"].sum())) / 100
    checked = 0
    for table, key in (("neighbourhood", "hood"), ("risk_segment", "segment")):
        for r in _published(report.table(table)).itertuples():
            mine = people[people[key] == r.code]
            if r.care_type != "all":
                mine = mine[mine["care_type"] == r.care_type]
            assert (r.people, r.social_care_cost, r.nhs_cost) == (
                len(mine), Decimal(int(mine["sc"].sum())) / 100,
                Decimal(int(mine["nhs"].sum())) / 100), (table, r.code, r.care_type)
            checked += 1
    assert checked > 20
    rules = {
        "high_risk_home_care_repeat_emergency": lambda p: p["segment"].isin(
            ["very_high", "high"]) & p["types"].map(lambda t: "home_care" in t) & (p["em"] >= 2),
        "high_risk_home_care": lambda p: p["segment"].isin(["very_high", "high"])
        & p["types"].map(lambda t: "home_care" in t),
        "repeat_emergency_any_care": lambda p: p["em"] >= 2,
        "care_home_emergency": lambda p: p["types"].map(
            lambda t: bool(t & {"residential", "nursing"})) & (p["em"] >= 1),
    }
    opps = report.table("opportunity").set_index("code")
    assert set(opps.index) == set(rules)
    for name, rule in rules.items():
        mine = people[rule(people)]
        if 1 <= len(mine) <= 7:
            assert opps.loc[name, "suppressed"] and pd.isna(opps.loc[name, "people"])
        else:
            assert opps.loc[name, "people"] == len(mine)
            assert opps.loc[name, "nhs_cost"] == Decimal(int(mine["nhs"].sum())) / 100


def test_no_published_count_of_one_to_seven(scored: object, tmp_path: Path) -> None:
    from pbc.services.shared_clients import write_csv, write_workbook

    for la in (LA, "E06009001"):
        report = shared_clients_report(scored, Principal("lee", "local_authority", la), la)
        rows = report.rows
        assert rows["suppressed"].any()  # small cells exist in an economy this size
        assert not rows["people"].dropna().astype(int).between(1, 7).any()
        assert not rows["emergency_admissions"].dropna().astype(int).between(1, 7).any()
        hidden = rows[rows["suppressed"].astype(bool)]
        assert hidden[["people", "nhs_cost", "social_care_cost"]].isna().all().all()
        csv = write_csv(report, tmp_path / f"{la}.csv", scored)  # type: ignore[arg-type]
        back = pd.read_csv(csv)
        assert list(back.columns) == ["la_code", "financial_year", "table", "code",
                                      "care_type", "people", "nhs_cost", "social_care_cost",
                                      "emergency_admissions", "suppressed"]
        assert not back["people"].dropna().between(1, 7).any()
        assert "patient_id" not in csv.read_text() and " P0" not in csv.read_text()
        xlsx = write_workbook(report, tmp_path / f"{la}.xlsx", scored)  # type: ignore[arg-type]
        sheets = pd.read_excel(xlsx, sheet_name=None, header=None)
        assert {"By neighbourhood", "By risk segment", "Council", "Opportunities"} <= set(sheets)
        for sheet in ("By neighbourhood", "By risk segment", "Council", "Opportunities"):
            frame = sheets[sheet]
            head = frame.index[frame.iloc[:, 2] == "People"][0]
            counts = pd.to_numeric(frame.iloc[head + 1:, 2], errors="coerce").dropna()
            assert len(counts) and not counts.between(1, 7).any(), sheet


def test_without_risk_scores_it_says_so(economy: object) -> None:
    report = shared_clients_report(economy, Principal("ana", "commissioner", "Q99"), LA)
    assert not report.scored
    assert report.table("risk_segment").empty
    assert any("no risk scores" in n for n in report.notes)
    shown = set(report.table("opportunity")["code"])
    assert shown == {"repeat_emergency_any_care", "care_home_emergency"}


@pytest.mark.parametrize("who", [Principal("x", "local_authority", "E06009001"),
                                 Principal("x", "practice", "A81000"),
                                 Principal("x", "group", "G01"),
                                 Principal("x", "commissioner", "Q11"),
                                 Principal("x", "public", "any")])
def test_refused(economy: object, who: Principal) -> None:
    with pytest.raises(AccessDenied, match="only"):
        shared_clients_report(economy, who, LA)


def test_cli_refuses_another_council(economy: object) -> None:
    from typer.testing import CliRunner

    from pbc.cli import app

    run = CliRunner().invoke(app, ["la", "shared-clients", LA, "--warehouse",
                                   str(economy.root),  # type: ignore[attr-defined]
                                   "--as", "local_authority:E06009001"])
    assert run.exit_code != 0
    assert f"local_authority:{LA}" in run.output


def test_demo_local_authority(scored: object, tmp_path: Path) -> None:
    from pbc.services.shared_clients import demo_local_authority

    console = Console(record=True, width=80)
    written = demo_local_authority(scored, tmp_path / "la", console)  # type: ignore[arg-type]
    assert sorted(written) == sorted(
        ["coterminosity.csv", "coterminosity.xlsx"]
        + [f"shared_clients_{la}.{x}" for la in (LA, "E06009001") for x in ("csv", "xlsx")])
    assert all(p.exists() for p in written.values())
    text = console.export_text()
    assert "Suggested clusters" in text and "Opportunities for joint commissioning" in text
