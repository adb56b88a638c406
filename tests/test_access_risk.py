"""Access to case-finding data (docs/security.md), through the service API only.

A practice user sees only its own patients; no other role ever gets patient-level rows;
every aggregate shown outside a practice suppresses counts 1-7.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pbc.services import risk as svc
from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse

COMMISSIONER = Principal("ana", "commissioner", "QHM")
PRACTICES = {"A81001": ("G01", "E06000001"), "A81002": ("G01", "E06000001"),
             "B82001": ("G02", "E06000002")}
NEIGHBOURHOODS = {"N01": "E06000001", "N02": "E06000001", "N03": "E06000002"}
CONDS = ("COPD", "HF", "DM", "CKD", "DEM", "AF")


def build_economy(root: Path, patients_per_practice: int = 1500, seed: int = 7) -> Warehouse:
    """A small hand-made health economy (2 financial years from April 2024) in a warehouse.

    Each patient has a latent risk from age, conditions and deprivation; emergency
    admissions are Poisson in each year; A&E, outpatient and elective use follow the risk."""
    rng = np.random.default_rng(seed)
    pats, conds, spells, aes, ops = [], [], [], [], []
    pid = 0
    for practice, (_group, _la) in PRACTICES.items():
        hood = [n for n, la in NEIGHBOURHOODS.items() if la == _la]
        for _ in range(patients_per_practice):
            pid += 1
            p = f"P{pid:07d}"
            age = int(rng.integers(0, 95))
            imd = int(rng.integers(1, 11))
            has = [c for c in CONDS if rng.random() < 0.02 + 0.25 * (age / 95) ** 2]
            lat = np.exp(-4.2 + 0.03 * age + 0.6 * len(has) + 0.05 * (10 - imd)
                         + rng.normal(0, 0.4))
            pats.append((p, practice, "F" if rng.random() < 0.5 else "M", age, imd,
                         str(rng.choice(hood)), None, None, lat))
            conds += [(p, c, None) for c in has]
            for year in (2024, 2025):
                start = dt.date(year, 4, 1)
                for k in range(rng.poisson(lat)):
                    d = start + dt.timedelta(days=int(rng.integers(0, 365)))
                    spells.append((f"S{pid}-{year}-{k}", p, practice, d,
                                   d + dt.timedelta(days=int(rng.integers(0, 9))),
                                   str(rng.choice(["21", "22", "2A"])),
                                   str(rng.choice(["J441", "I500", "R69"]))))
                for k in range(rng.poisson(0.3 + lat)):
                    d = start + dt.timedelta(days=int(rng.integers(0, 365)))
                    aes.append((f"E{pid}-{year}-{k}", p, practice, d))
                for k in range(rng.poisson(0.5 + 2 * lat)):
                    d = start + dt.timedelta(days=int(rng.integers(0, 365)))
                    ops.append((f"O{pid}-{year}-{k}", p, practice, d, bool(rng.random() < .9)))
                if rng.random() < 0.05 + lat / 4:
                    d = start + dt.timedelta(days=int(rng.integers(0, 365)))
                    spells.append((f"S{pid}-{year}-el", p, practice, d, d, "11", "K409"))
    frames = {
        "patients": pd.DataFrame(pats, columns=[
            "patient_id", "practice_code", "sex", "age", "imd_decile", "neighbourhood_code",
            "registered_from", "registered_to", "latent_risk"]).drop(columns="latent_risk"),
        "patient_conditions": pd.DataFrame(conds, columns=["patient_id", "condition",
                                                           "recorded_date"]),
        "apc_spells": pd.DataFrame(spells, columns=[
            "spell_id", "patient_id", "practice_code", "admission_date", "discharge_date",
            "admission_method", "primary_diagnosis"]),
        "ae_attendances": pd.DataFrame(aes, columns=["attendance_id", "patient_id",
                                                     "practice_code", "arrival_date"]),
        "op_attendances": pd.DataFrame(ops, columns=["attendance_id", "patient_id",
                                                     "practice_code", "appointment_date",
                                                     "attended"]),
        "practices": pd.DataFrame(
            [(k, f"Practice {k}", g, "QHM", la, None) for k, (g, la) in PRACTICES.items()],
            columns=["practice_code", "practice_name", "group_code", "commissioner_code",
                     "local_authority_code", "neighbourhood_code"]),
        "neighbourhoods": pd.DataFrame(list(NEIGHBOURHOODS.items()),
                                       columns=["neighbourhood_code", "local_authority_code"]),
    }
    dates = {"registered_from", "registered_to", "recorded_date", "admission_date",
             "discharge_date", "arrival_date", "appointment_date"}
    wh = Warehouse(root)
    with wh.begin("test") as tx:
        con = tx.connect()
        for name, frame in frames.items():
            con.register(f"{name}_df", frame)
            cols = ", ".join(
                f"CAST({c} AS DATE) AS {c}" if c in dates
                else f"CAST({c} AS VARCHAR) AS {c}" if c in ("recorded_date",) else c
                for c in frame.columns)
            tx.write(con, name, f"SELECT {cols} FROM {name}_df", file_prefix="t")
        con.close()
    return wh


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    wh = build_economy(tmp_path_factory.mktemp("risk-access") / "wh", patients_per_practice=400)
    svc.train(wh, COMMISSIONER)
    svc.score(wh, COMMISSIONER)
    return wh


def test_practice_sees_own_list(scored: Warehouse) -> None:
    rows = svc.case_finding_list(scored, Principal("gp", "practice", "A81001"), "A81001", 20)
    assert 0 < len(rows) <= 20
    assert {r["patient_id"] for r in rows} <= set(
        r[0] for r in scored.query(
            "SELECT patient_id FROM patients WHERE practice_code = 'A81001'"))
    assert [r["practice_rank"] for r in rows] == list(range(1, len(rows) + 1))


@pytest.mark.parametrize("who", [
    Principal("gp", "practice", "A81002"),      # another practice, same group
    Principal("gp", "practice", "B82001"),      # another practice, other group
    Principal("lead", "group", "G01"),          # the practice's own group
    Principal("ana", "commissioner", "QHM"),    # its commissioner
    Principal("la", "local_authority", "E06000001"),
    Principal("anyone", "public", "-"),
])
def test_no_one_else_gets_patient_rows(scored: Warehouse, who: Principal,
                                       tmp_path: Path) -> None:
    with pytest.raises(AccessDenied):
        svc.case_finding_list(scored, who, "A81001", 10)
    with pytest.raises(AccessDenied):
        svc.export_case_finding(scored, who, "A81001", tmp_path / "list.csv")
    assert not (tmp_path / "list.csv").exists()


def test_practice_cannot_ask_for_other_practice_even_with_top_n_none(scored: Warehouse) -> None:
    with pytest.raises(AccessDenied):
        svc.case_finding_list(scored, Principal("gp", "practice", "A81001"), "B82001", None)


@pytest.mark.parametrize("who", [
    Principal("gp", "practice", "A81001"), Principal("lead", "group", "G01"),
    Principal("la", "local_authority", "E06000001"), Principal("anyone", "public", "-"),
])
def test_only_commissioner_trains_scores_reports(scored: Warehouse, who: Principal) -> None:
    for call in (svc.train, svc.score, svc.report):
        with pytest.raises(AccessDenied):
            call(scored, who)


def test_other_commissioner_denied(scored: Warehouse) -> None:
    with pytest.raises(AccessDenied):
        svc.score(scored, Principal("x", "commissioner", "QXX"))


AGGREGATE_VIEWS = [
    (Principal("lead", "group", "G01"), "practice"),
    (Principal("lead", "group", "G01"), "neighbourhood"),
    (Principal("lead", "group", "G01"), "group"),
    (COMMISSIONER, "practice"), (COMMISSIONER, "group"), (COMMISSIONER, "local_authority"),
    (COMMISSIONER, "neighbourhood"), (COMMISSIONER, "commissioner"),
    (Principal("la", "local_authority", "E06000001"), "neighbourhood"),
    (Principal("la", "local_authority", "E06000001"), "local_authority"),
    (Principal("la", "local_authority", "E06000001"), "practice"),
]


@pytest.mark.parametrize(("who", "level"), AGGREGATE_VIEWS)
def test_aggregates_outside_practice_suppress_1_to_7(scored: Warehouse, who: Principal,
                                                      level: str) -> None:
    out = svc.segment_counts(scored, who, level)
    assert out.suppressed and out.rows
    seen_suppressed = False
    for row in out.rows:
        for col in out.columns[1:]:
            v = row[col]
            assert v is None or v == 0 or v > 7, (row, col)
            seen_suppressed |= v is None
        cells = [row[s] for s in out.columns[1:-1]]
        # complementary rule: never exactly one suppressed cell beside a shown total
        if row["total"] is not None:
            assert sum(c is None for c in cells) != 1
    # 400 patients a practice: the very-high segment (0.5%) is small, so something is hidden
    if level == "practice":
        assert seen_suppressed
    assert "*" in out.to_markdown() or not seen_suppressed


def test_aggregates_are_limited_to_own_population(scored: Warehouse) -> None:
    group = svc.segment_counts(scored, Principal("lead", "group", "G01"), "practice")
    assert {r["code"] for r in group.rows} == {"A81001", "A81002"}
    la = svc.segment_counts(scored, Principal("la", "local_authority", "E06000002"),
                            "neighbourhood")
    assert {r["code"] for r in la.rows} == {"N03"}
    own = svc.segment_counts(scored, Principal("gp", "practice", "A81001"), "practice")
    assert [r["code"] for r in own.rows] == ["A81001"] and not own.suppressed
    assert own.rows[0]["total"] == 400
    with pytest.raises(AccessDenied):
        svc.segment_counts(scored, Principal("gp", "practice", "A81001"), "group")
    with pytest.raises(AccessDenied):
        svc.segment_counts(scored, Principal("anyone", "public", "-"), "commissioner")
