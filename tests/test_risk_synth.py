"""End to end on the synthetic health economy: the model recovers the generator's risk.

The generator writes its ground truth (``truth/patient_risk.parquet``: patient_id,
latent_risk, expected_emergency_admissions). On the held-out patients, the trained model's
AUC for an emergency admission in the outcome year must be within 0.03 of the AUC of the
generator's own latent risk, and beat the naive rule (2+ emergency admissions in 12 months).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pbc.risk.validation import auc
from pbc.services import risk as svc
from pbc.services.principal import Principal

synth = pytest.importorskip("pbc.synth", reason="pbc.synth (the generator) is not written yet")


@pytest.mark.slow
def test_model_auc_close_to_latent_risk(tmp_path: Path) -> None:
    from pbc.warehouse import Warehouse
    from pbc.warehouse.load import load

    inputs, wdir = tmp_path / "in", tmp_path / "wh"
    synth.generate(synth.SynthConfig(practices=20, seed=11, years=2, start_year=2024), inputs)
    wh = Warehouse(wdir)
    load(inputs, wh)
    code = wh.query("SELECT min(commissioner_code) FROM practices")[0][0]
    who = Principal("analyst", "commissioner", code)

    result = svc.train(wh, who)
    w = result.windows
    f = svc._features(wh, w.validation_date, True)
    if w.method == "held_out":
        f = f[svc._holdout(f["patient_id"])]
    truth = pd.read_parquet(inputs / "truth" / "patient_risk.parquet")
    f = f.merge(truth[["patient_id", "latent_risk"]], on="patient_id", how="inner")
    assert len(f) > 1000
    y = f["outcome_emergency"].to_numpy()
    model_auc = auc(y, result.model.predict(f))
    latent_auc = auc(y, f["latent_risk"].to_numpy())
    naive_auc = auc(y, (f["emergency_12m"] >= 2).astype(float).to_numpy())
    print(f"AUC model {model_auc:.4f}, latent {latent_auc:.4f}, naive {naive_auc:.4f}, "
          f"n {len(f)}, events {int(y.sum())}")
    assert model_auc >= latent_auc - 0.03
    assert model_auc > naive_auc
    assert result.validation.auc.auc > (result.validation.naive_auc or 0)

    summary = svc.score(wh, who)
    assert summary.rows > 0 and sum(summary.segments.values()) == summary.rows
    practice = wh.query("SELECT min(practice_code) FROM risk_scores")[0][0]
    rows = svc.case_finding_list(wh, Principal("gp", "practice", practice), practice, 5)
    assert len(rows) == 5
