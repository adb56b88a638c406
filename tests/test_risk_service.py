"""Case-finding services end to end on a small hand-made economy (no generator needed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pbc.risk.model import RiskModel
from pbc.services import risk as svc
from pbc.services.principal import Principal
from pbc.warehouse import Warehouse, WarehouseError
from test_access_risk import COMMISSIONER, build_economy
from workbooks import mode, read_table

D = dt.date


def test_plan_windows() -> None:
    two = svc.plan_windows(D(2024, 4, 1), D(2026, 3, 31))
    assert (two.train_date, two.validation_date, two.method, two.score_date) == (
        D(2025, 4, 1), D(2025, 4, 1), "held_out", D(2026, 4, 1))
    three = svc.plan_windows(D(2023, 4, 1), D(2026, 3, 31))
    assert (three.train_date, three.validation_date, three.method) == (
        D(2024, 4, 1), D(2025, 4, 1), "temporal")
    part = svc.plan_windows(D(2024, 4, 3), D(2026, 5, 20))
    assert part.validation_date == D(2025, 5, 1) and part.score_date == D(2026, 6, 1)
    with pytest.raises(WarehouseError, match="24 months"):
        svc.plan_windows(D(2025, 4, 1), D(2026, 3, 31))


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    return build_economy(tmp_path_factory.mktemp("risk-svc") / "wh", patients_per_practice=800)


def test_train_score_report(wh: Warehouse, tmp_path: Path) -> None:
    result = svc.train(wh, COMMISSIONER)
    card = result.card
    assert card["validation"]["method"] == "held_out"
    assert card["training"]["reference_date"] == "2025-04-01"
    assert card["training"]["outcome_to"] == "2026-03-31"
    assert 0.65 < card["validation"]["auc"] < 0.95
    stored = svc.load_model(wh)
    assert stored.version == result.model.version

    summary = svc.score(wh, COMMISSIONER)
    assert summary.rows == 2400 and summary.reference_date == D(2026, 4, 1)
    assert summary.segments == {"very_high": 12, "high": 108, "moderate": 360, "low": 1920}
    rows = wh.query("SELECT count(*), min(rank), max(rank), count(DISTINCT model_version), "
                    "any_value(typeof(reference_date)) FROM risk_scores")[0]
    assert rows == (2400, 1, 2400, 1, "DATE")

    # the card's AUC, recomputed independently (scikit-learn) on the held-out patients
    from sklearn.metrics import roc_auc_score

    f = svc._features(wh, D(2025, 4, 1), True)
    held = f[svc._holdout(f["patient_id"])]
    assert card["validation"]["auc"] == pytest.approx(roc_auc_score(
        held["outcome_emergency"], result.validated_model.predict(held)), abs=1e-9)
    rep = svc.report(wh, COMMISSIONER)
    # the deployed model was refit on every patient at 2025-04-01, where its own figures
    # would be in-sample: the report gives the validated fit on the held-out patients
    assert rep.n == len(held) < 2400
    assert rep.auc.auc == pytest.approx(roc_auc_score(
        held["outcome_emergency"], result.validated_model.predict(held)), abs=1e-9)
    assert "held-out patients" in rep.to_markdown() and "refit" in rep.to_markdown()
    from typer.testing import CliRunner

    from pbc.cli import app

    cli = CliRunner().invoke(app, ["risk", "report", "--warehouse", str(wh.root), "--chart",
                                   str(tmp_path / "cal.svg"), "--out", str(tmp_path / "r.md")])
    assert cli.exit_code == 0, cli.output
    assert "<svg" in (tmp_path / "cal.svg").read_text()
    assert "## Calibration" in (tmp_path / "r.md").read_text()

    gp = Principal("gp", "practice", "B82001")
    top = svc.case_finding_list(wh, gp, "B82001", top_n=10)
    assert len(top) == 10 and top[0]["risk_percent"] >= top[-1]["risk_percent"]
    assert all(r["top_factors"] for r in top[:3])
    csv = svc.export_case_finding(wh, gp, "B82001", tmp_path / "b.csv")
    assert len(pd.read_csv(csv)) == 800
    xlsx = svc.export_case_finding(wh, gp, "B82001", tmp_path / "b.xlsx", top_n=5)
    assert len(read_table(xlsx)) == 5 and mode(xlsx) == 0o640
    with pytest.raises(ValueError, match=r"csv or \.xlsx"):
        svc.export_case_finding(wh, gp, "B82001", tmp_path / "b.pdf")


def test_model_file_round_trip(wh: Warehouse, tmp_path: Path) -> None:
    result = svc.train(wh, COMMISSIONER, store=False)
    path = result.model.save(tmp_path / "model.json")
    assert isinstance(svc.load_model(wh, path), RiskModel)
    rep = svc.report(wh, COMMISSIONER, path)
    assert rep.n > 0


def test_needs_two_years(tmp_path: Path) -> None:
    wh = build_economy(tmp_path / "wh", patients_per_practice=20)
    with pytest.raises(WarehouseError, match="12 months after"):
        svc.train(wh, COMMISSIONER, train_date=D(2025, 5, 1), validation_date=D(2025, 5, 1))
    with pytest.raises(WarehouseError, match="24 months"):
        svc.train(wh, COMMISSIONER)  # data starts 2024-04-0x: no full year before 2025-04


def test_deployed_model_is_refit_on_the_latest_complete_window(wh: Warehouse) -> None:
    result = svc.train(wh, COMMISSIONER, store=False)
    card = result.card
    # every patient at 2025-04-01 (3 practices x 800, none left or died), not the 70%
    # the validated fit was trained on
    assert card["training"]["n"] == 2400 and card["training"]["refit"] is True
    assert result.validated_model is not None
    assert card["validation"]["validated_model"] == result.validated_model.version
    assert result.validated_model.version != result.model.version
    assert card["validation"]["validated_fit"]["n"] == 2400 - card["validation"]["n"]
    assert set(result.model.coefficients) <= set(result.validated_model.coefficients)


def test_features_whose_window_the_data_do_not_cover_are_not_used(wh: Warehouse) -> None:
    # activity from April 2024: at 2025-04-01 only 12 months of history exist, so a
    # 24-month count would equal the 12-month one in training and differ at scoring
    assert wh.query("SELECT min(admission_date) FROM apc_spells")[0][0] == D(2024, 4, 1)
    result = svc.train(wh, COMMISSIONER, store=False)
    long = {"emergency_24m", "elective_24m", "ae_24m", "op_24m"}
    assert not {t.feature for t in result.model.terms} & long
    card = result.card
    assert card["training"]["features_from"] == "2024-04-01"
    assert {"emergency_24m", "ae_24m"} <= set(card["terms_not_used"])
    assert max(i["window_months"] for i in card["inputs"]) == 12
    assert result.validated_model is not None
    assert not {t.feature for t in result.validated_model.terms} & long
    assert card["validation"]["validated_fit"]["features_from"] == "2024-04-01"


def test_deaths_and_leavers_in_the_outcome_year_are_excluded(tmp_path: Path) -> None:
    wh = build_economy(tmp_path / "wh", patients_per_practice=800)
    # of 2,400 patients: 60 die and 30 move away during the outcome year 2025/26 (dates
    # chosen by hand), 10 died before it, 5 moved away on its last day (still followed)
    with wh.begin("test") as tx:
        con = tx.connect()
        con.execute("""CREATE TABLE p2 AS SELECT patient_id, practice_code, sex, age,
              imd_decile, neighbourhood_code, registered_from,
              CASE WHEN n <= 60 THEN DATE '2025-09-01' WHEN n <= 90 THEN DATE '2025-11-15'
                   WHEN n <= 100 THEN DATE '2025-03-01' WHEN n <= 105 THEN DATE '2026-03-31'
              END AS registered_to,
              CASE WHEN n <= 60 THEN DATE '2025-09-01' WHEN n > 90 AND n <= 100
                   THEN DATE '2025-03-01' END AS date_of_death
            FROM (SELECT *, row_number() OVER (ORDER BY patient_id) AS n FROM patients)""")
        tx.write(con, "patients", "SELECT * FROM p2", file_prefix="t", replace=True)
        con.close()
    result = svc.train(wh, COMMISSIONER, store=False)
    training = result.card["training"]
    assert training["registered"] == 2390  # the 10 who died before 2025-04-01 are not
    assert training["excluded_left_or_died"] == 90
    assert training["n"] == 2300
    assert result.card["validation"]["validated_fit"]["n"] + result.card["validation"][
        "n"] == 2300
