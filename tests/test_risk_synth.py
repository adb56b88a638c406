"""End to end on the synthetic health economy: the model against an upper bound it cannot
honestly pass, and a deliberately leaky feature that is caught.

The generator writes its ground truth (``truth/patient_risk.parquet``): per patient the
latent risk in each financial year (``latent_risk_YYYY``, expected emergency admissions),
which includes a frailty no table records. No model of the recorded data can rank patients
better than the outcome year's latent risk, so its AUC is an upper bound that is not the
model's own form (:func:`pbc.risk.validation.leakage_check`): the honest model must stay
below it, and a model given a feature that has seen the outcome must be flagged.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pbc.risk.features import add_months, outcome_cohort
from pbc.risk.model import fit
from pbc.risk.validation import auc, leakage_check
from pbc.services import risk as svc
from pbc.services.principal import Principal

synth = pytest.importorskip("pbc.synth", reason="pbc.synth (the generator) is not written yet")


@pytest.mark.slow
def test_model_stays_below_the_latent_bound_and_a_leak_is_caught(tmp_path: Path) -> None:
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
    assert w.method == "held_out" and w.validation_date == dt.date(2025, 4, 1)
    validated = result.validated_model
    assert validated is not None

    # the population: registered at R and followed for the outcome year; those who left or
    # died in it (counted here straight from the patients table) are excluded
    end = add_months(w.validation_date, 12)
    gone = wh.query(f"""SELECT count(*) FROM patients
        WHERE (registered_from IS NULL OR registered_from <= DATE '{w.validation_date}')
          AND (registered_to IS NULL OR registered_to >= DATE '{w.validation_date}')
          AND (date_of_death IS NULL OR date_of_death >= DATE '{w.validation_date}')
          AND (registered_to < DATE '{end}' - 1 OR date_of_death < DATE '{end}')""")[0][0]
    assert gone > 100 and result.card["training"]["excluded_left_or_died"] == gone

    f = outcome_cohort(svc._features(wh, w.validation_date, True))
    hold = svc._holdout(f["patient_id"])
    truth = pd.read_parquet(inputs / "truth" / "patient_risk.parquet")
    bound = f"latent_risk_{w.validation_date.year}"
    held = f[hold].merge(truth[["patient_id", bound]], on="patient_id", how="inner")
    assert len(held) > 10_000
    y = held["outcome_emergency"].to_numpy()
    honest = leakage_check(y, validated.predict(held), held[bound].to_numpy())
    prior_auc = auc(y, held["emergency_12m"].to_numpy())
    print(honest.message, f"prior emergency admissions AUC {prior_auc:.4f}")
    assert not honest.leaked
    assert honest.model_auc < honest.upper_bound_auc - 0.01  # the frailty is unseen
    assert honest.model_auc > prior_auc

    # a leaky feature: emergency admissions "in 12 months" counted to 3 months after R (a
    # window placed wrongly), so it has seen part of the outcome year
    later = svc._features(wh, add_months(w.validation_date, 3), False)
    leaky = later.set_index("patient_id")["emergency_12m"]

    def with_leak(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(emergency_12m=frame["patient_id"].map(leaky).fillna(0))

    leaky_model = fit(with_leak(f[~hold]), spec=validated.spec,
                      terms=list(validated.coefficients))
    caught = leakage_check(y, leaky_model.predict(with_leak(held)), held[bound].to_numpy())
    print(caught.message)
    assert caught.leaked

    summary = svc.score(wh, who)
    assert summary.rows > 0 and sum(summary.segments.values()) == summary.rows
    practice = wh.query("SELECT min(practice_code) FROM risk_scores")[0][0]
    rows = svc.case_finding_list(wh, Principal("gp", "practice", practice), practice, 5)
    assert len(rows) == 5
