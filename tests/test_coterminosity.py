"""Coterminosity of practice groups with councils and neighbourhoods
(pbc.local_authorities.coterminosity, pbc.services.coterminosity; docs/local-authorities.md).

A hand-worked example of three practices in two councils, properties of the suggested
regrouping over random lists, and the service on a small synthetic economy against an
independent count from the raw rows, with its access rules.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from la_fixtures import small_la_economy
from pbc.local_authorities.coterminosity import group_scores, overall, regroup, spread
from pbc.services.principal import AccessDenied, Principal

# councils L1 (neighbourhoods N1, N2) and L2 (N3); P1, P2 in group G1, P3 in G2
HOODS = {"N1": "L1", "N2": "L1", "N3": "L2"}
LISTS = {("P1", "G1"): {"N1": 60, "N2": 20, "N3": 20},
         ("P2", "G1"): {"N1": 10, "N2": 30},
         ("P3", "G2"): {"N2": 10, "N3": 50}}


def counts_of(lists: dict[tuple[str, str], dict[str, int]],
              hoods: dict[str, str] = HOODS) -> pd.DataFrame:
    return pd.DataFrame(
        [{"practice_code": p, "group_code": g, "neighbourhood_code": n,
          "local_authority_code": hoods[n], "patients": k}
         for (p, g), per in lists.items() for n, k in per.items()])


def test_scores_by_hand() -> None:
    g1, g2 = group_scores(counts_of(LISTS))
    # G1: 140 patients, 120 in L1 (60+20+10+30), 20 in L2; N1 70, N2 50, N3 20
    assert (g1.patients, g1.main_local_authority, g1.councils) == (140, "L1", 2)
    assert g1.local_authority_share == pytest.approx(120 / 140)
    assert g1.spans_councils  # 14.3% outside L1, at least 10%
    assert (g1.main_neighbourhood, g1.neighbourhood_share) == ("N1", pytest.approx(0.5))
    assert g1.neighbourhood_index == pytest.approx(0.25 + (50 / 140) ** 2 + (20 / 140) ** 2)
    # G2: 60 patients, 50 in L2 (N3), 10 in L1 (N2)
    assert (g2.main_local_authority, g2.main_neighbourhood) == ("L2", "N3")
    assert g2.local_authority_share == pytest.approx(50 / 60)
    assert g2.neighbourhood_index == pytest.approx((10 / 60) ** 2 + (50 / 60) ** 2)
    both = overall([g1, g2])
    assert both.local_authority_share == pytest.approx(170 / 200)
    assert both.neighbourhood_share == pytest.approx(120 / 200)
    assert both.spanning_groups == 2


def test_spans_threshold_is_ten_percent() -> None:
    one = {("P1", "G1"): {"N1": 91, "N3": 9}}
    two = {("P1", "G1"): {"N1": 90, "N3": 10}}
    assert not group_scores(counts_of(one))[0].spans_councils
    assert group_scores(counts_of(two))[0].spans_councils


def test_spread_of_a_neighbourhood_across_groups_by_hand() -> None:
    s = spread(counts_of(LISTS), "neighbourhood_code", "group_code")
    n2 = s[s["neighbourhood_code"] == "N2"].set_index("group_code")
    assert n2["patients"].to_dict() == {"G1": 50, "G2": 10}
    assert n2["share"].to_dict() == {"G1": pytest.approx(5 / 6), "G2": pytest.approx(1 / 6)}
    assert set(n2["local_authority_code"]) == {"L1"}


def test_regrouping_by_hand() -> None:
    r = regroup(counts_of(LISTS), min_list=0)
    # homes: P1 L1 (80) -> N1 (60); P2 L1 -> N2 (30); P3 L2 (50) -> N3
    assert r.assignment == {"P1": "N1", "P2": "N2", "P3": "N3"}
    assert r.before.local_authority_share == pytest.approx(0.85)
    assert r.after.local_authority_share == pytest.approx((80 + 40 + 50) / 200)
    assert r.before.neighbourhood_share == pytest.approx(0.6)
    assert r.after.neighbourhood_share == pytest.approx((60 + 30 + 50) / 200)
    # N2's cluster (40 patients) is below 50: it joins N1, the other cluster of L1
    r50 = regroup(counts_of(LISTS), min_list=50)
    assert r50.assignment == {"P1": "N1+N2", "P2": "N1+N2", "P3": "N3"}
    assert r50.after.neighbourhood_share == pytest.approx((70 + 50) / 200)
    assert not any(c.below_minimum for c in r50.clusters)
    # N3 (60) is alone in L2: it stays, flagged
    r100 = regroup(counts_of(LISTS), min_list=100)
    flagged = {c.group_code: c.below_minimum for c in r100.clusters}
    assert flagged == {"N1+N2": False, "N3": True}


def test_small_cluster_joins_the_neighbour_holding_most_of_its_patients() -> None:
    hoods = {"N1": "L1", "N2": "L1", "N4": "L1"}
    r = regroup(counts_of({("P1", "G1"): {"N1": 100}, ("P2", "G1"): {"N2": 20, "N4": 15,
                                                                     "N1": 5},
                           ("P4", "G2"): {"N4": 80}}, hoods), min_list=50)
    # P2's cluster (40) pulls 15 patients from N4 and 5 from N1: it joins N4, not the
    # larger N1
    assert r.assignment == {"P1": "N1", "P2": "N2+N4", "P4": "N2+N4"}


def test_home_council_first_then_its_neighbourhood() -> None:
    hoods = {"N1": "L1", "N3": "L2", "N5": "L2"}
    # the largest neighbourhood (N1, 40) is in L1, but most patients live in L2 (65)
    r = regroup(counts_of({("P1", "G1"): {"N1": 40, "N3": 35, "N5": 30}}, hoods), 0)
    assert r.homes == {"P1": ("L2", "N3")}
    assert r.after.local_authority_share == pytest.approx(65 / 105)


@st.composite
def lists(draw: st.DrawFn) -> pd.DataFrame:
    n_hoods = draw(st.integers(2, 5))
    hoods = {f"N{i}": f"L{draw(st.integers(1, 3))}" for i in range(n_hoods)}
    n_practices = draw(st.integers(1, 8))
    rows = {}
    for p in range(n_practices):
        group = f"G{draw(st.integers(1, 3))}"
        rows[(f"P{p}", group)] = {h: draw(st.integers(0, 60)) for h in hoods
                                  if draw(st.booleans())} or {"N0": 1}
    return counts_of(rows, hoods)


@settings(max_examples=30, deadline=None)
@given(lists(), st.sampled_from([0, 20, 60, 150]))
def test_regrouping_places_every_practice_once_and_keeps_or_improves(
        counts: pd.DataFrame, min_list: int) -> None:
    r = regroup(counts, min_list)
    practices = sorted(counts["practice_code"].unique())
    assert sorted(r.assignment) == practices  # every practice placed, once (a dict)
    assert sum(c.practices for c in r.clusters) == len(practices)
    assert sum(c.patients + c.unknown_residence for c in r.clusters) == counts["patients"].sum()
    assert r.after.patients == r.before.patients
    if r.before.patients:
        assert r.after.local_authority_share >= r.before.local_authority_share - 1e-12
    # without a minimum the neighbourhood share is the best any grouping reaches, where
    # each practice's main neighbourhood lies in its home council
    known = counts[counts["patients"] > 0]
    top = known.groupby(["practice_code", "neighbourhood_code"])["patients"].sum() \
        .groupby("practice_code").max()
    at_home = pd.Series({p: known[(known["practice_code"] == p)
                                  & (known["neighbourhood_code"] == h)]["patients"].sum()
                         for p, (_la, h) in r.homes.items() if h is not None}, dtype="int64")
    if min_list == 0 and r.before.patients and (top.reindex(at_home.index) == at_home).all():
        assert r.after.neighbourhood_share >= r.before.neighbourhood_share - 1e-12
        assert r.after.neighbourhood_share * r.after.patients == pytest.approx(top.sum())


# ------------------------------------------------------------------ the service
@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory) -> object:
    return small_la_economy(tmp_path_factory)


def test_service_counts_match_the_raw_rows(economy: object) -> None:
    from pbc.services.coterminosity import coterminosity

    report = coterminosity(economy, Principal("ana", "commissioner", "Q99"), min_list=0)
    con = economy.connect()  # type: ignore[attr-defined]
    try:
        raw = con.execute("""
            SELECT p.practice_code, pr.group_code, n.local_authority_code,
                   p.neighbourhood_code, count(*) AS patients
            FROM patients p JOIN practices pr ON pr.practice_code = p.practice_code
            JOIN neighbourhoods n ON n.neighbourhood_code = p.neighbourhood_code
            WHERE (p.registered_from IS NULL OR p.registered_from <= DATE '2026-03-31')
              AND (p.registered_to IS NULL OR p.registered_to >= DATE '2026-03-31')
              AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2026-03-31')
            GROUP BY ALL""").df()
        # a move's window covering the day overrides the default group (the latest start)
        moves = con.execute("""
            SELECT practice_code, arg_max(group_code, valid_from) AS moved FROM practice_groups
            WHERE valid_from <= DATE '2026-03-31'
              AND (valid_to IS NULL OR valid_to >= DATE '2026-03-31')
            GROUP BY practice_code""").df()
    finally:
        con.close()
    assert report.on.isoformat() == "2026-03-31"
    moved = dict(zip(moves["practice_code"], moves["moved"], strict=True))
    raw["group_code"] = [moved.get(p, g) for p, g in zip(raw["practice_code"],
                                                        raw["group_code"], strict=True)]
    by_group = raw.groupby("group_code")["patients"].sum()
    scores = {g.group_code: g for g in report.scores or []}
    assert {k: v.patients for k, v in scores.items()} == by_group.to_dict()
    for g, rows in raw.groupby("group_code"):
        la = rows.groupby("local_authority_code")["patients"].sum()
        assert scores[str(g)].local_authority_share == pytest.approx(la.max() / la.sum())
        hoods = rows.groupby("neighbourhood_code")["patients"].sum() / rows["patients"].sum()
        assert scores[str(g)].neighbourhood_index == pytest.approx((hoods ** 2).sum())
    spread = report.by_neighbourhood
    assert spread is not None
    mine = raw.groupby(["neighbourhood_code", "group_code"])["patients"].sum()
    assert spread.set_index(["neighbourhood_code", "group_code"])["patients"] \
        .sort_index().to_dict() == mine.sort_index().to_dict()


def test_council_officer_sees_its_own_residents_suppressed(economy: object,
                                                           tmp_path: Path) -> None:
    from pbc.services.coterminosity import coterminosity, write_csv

    la = "E06009001"
    report = coterminosity(economy, Principal("lee", "local_authority", la))
    assert report.scores is None and report.regrouping is None
    council = report.council
    assert council is not None
    assert set(council["local_authority_code"]) == {la}
    con = economy.connect()  # type: ignore[attr-defined]
    try:
        mine = {r[0] for r in con.execute("SELECT neighbourhood_code FROM neighbourhoods "
                                          "WHERE local_authority_code = ?", [la]).fetchall()}
    finally:
        con.close()
    assert set(council["neighbourhood_code"]) <= mine | {"all"}
    shown = council["patients"].dropna().astype(int)
    assert not shown.between(1, 7).any()
    out = write_csv(report, tmp_path / "c.csv", economy)  # type: ignore[arg-type]
    back = pd.read_csv(out)
    assert list(back.columns) == ["local_authority_code", "neighbourhood_code", "group_code",
                                  "patients", "share", "suppressed"]
    assert not back["patients"].dropna().between(1, 7).any()
    with pytest.raises(AccessDenied):  # the groups' scores are the commissioner's
        report.scores_frame()


def test_council_view_hides_small_counts_and_their_complements() -> None:
    from pbc.services.coterminosity import council_view

    counts = counts_of({("P1", "G1"): {"N1": 100, "N2": 40},
                        ("P2", "G2"): {"N1": 3, "N2": 60}})
    view = council_view(counts[counts["local_authority_code"] == "L1"], "L1")
    cell = view.set_index(["neighbourhood_code", "group_code"])["patients"]
    assert pd.isna(cell[("N1", "G2")])  # 3: primary
    hidden = [k for k, v in cell.items() if pd.isna(v)]
    assert len(hidden) >= 2  # and at least one more, so it cannot be subtracted out
    assert not cell.dropna().astype(int).between(1, 7).any()


@pytest.mark.parametrize("who", [Principal("x", "practice", "A81000"),
                                 Principal("x", "group", "G01"),
                                 Principal("x", "public", "any"),
                                 Principal("x", "commissioner", "Q11"),
                                 Principal("x", "local_authority", "E06999999")])
def test_refused(economy: object, who: Principal) -> None:
    from pbc.services.coterminosity import coterminosity

    with pytest.raises(AccessDenied, match="may"):
        coterminosity(economy, who)


def test_cli_writes_and_refuses(economy: object, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pbc.cli import app

    wh = str(economy.root)  # type: ignore[attr-defined]
    run = CliRunner().invoke(app, ["la", "coterminosity", "--warehouse", wh, "--min-list",
                                   "5000", "--csv", str(tmp_path / "s.csv"), "--xlsx",
                                   str(tmp_path / "s.xlsx")])
    assert run.exit_code == 0, run.output
    scores = pd.read_csv(tmp_path / "s.csv")
    assert set(scores["grouping"]) == {"current", "suggested"}
    assert (tmp_path / "s.xlsx").exists()
    refused = CliRunner().invoke(app, ["la", "coterminosity", "--warehouse", wh, "--as",
                                       "practice:A81000"])
    assert refused.exit_code != 0
    assert "only a commissioner role" in refused.output
