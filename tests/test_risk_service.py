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

    rep = svc.report(wh, COMMISSIONER)
    assert rep.auc.auc == pytest.approx(card["validation"]["auc"])
    assert "held-out patients only" in rep.to_markdown()
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
    assert len(pd.read_excel(xlsx)) == 5
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
