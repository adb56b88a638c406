"""The risk report a commissioner reads: a plain-English summary first, performance by age
band, sex and deprivation quintile, the LACE-form and PARR-30-form scores on the same
patients, the model card inside, rendered once by Rich for an 80-column terminal."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from pbc.risk.comparators import LACE_FORM, PARR30_FORM, lace_form, parr30_form
from pbc.risk.scores import parr30_logit
from pbc.risk.validation import subgroup_performance, validate
from pbc.services import risk as svc
from pbc.warehouse import Warehouse
from test_access_risk import COMMISSIONER, build_economy


def test_subgroup_performance_by_hand() -> None:
    # group a: 12 admitted at risk 0.9, 12 not at 0.1 -> AUC 1; group b: 12 admitted and 12
    # not, all at 0.5 -> AUC 0.5; group c: 3 admitted of 30 -> too few to say
    y = [1] * 12 + [0] * 12 + [1] * 12 + [0] * 12 + [1] * 3 + [0] * 27
    p = [0.9] * 12 + [0.1] * 12 + [0.5] * 24 + [0.2] * 30
    labels = ["a"] * 24 + ["b"] * 24 + ["c"] * 30
    out = {g.group: g for g in subgroup_performance(y, p, {"area": labels})}
    assert out["a"].auc == 1.0 and out["b"].auc == 0.5 and out["c"].auc is None
    assert (out["a"].n, out["a"].events, out["c"].events) == (24, 12, 3)
    assert out["a"].mean_predicted == pytest.approx(0.5) and out["c"].observed_rate == 0.1
    # numeric labels sort by value, unknown last
    ages = subgroup_performance([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4],
                                {"age band": ["85+", "18-44", "0-17", None]})
    assert [g.group for g in ages] == ["0-17", "18-44", "85+", "unknown"]


def test_summary_comes_first_and_names_who_it_works_less_well_for() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    old = rng.random(n) < 0.5
    risk = np.where(old, 0.3, 0.05) * np.exp(rng.normal(0, 0.4, n))
    y = (rng.random(n) < np.clip(risk, 0, 1)).astype(int)
    # the score knows the risk among the old; among the young it is noise
    score = np.where(old, np.clip(risk, 0, 0.99), 0.05 + 0.01 * rng.random(n))
    rep = validate(y, score, np.zeros(n), subgroups={"age band": np.where(old, "65+", "18-44")},
                   card={"intended_use": "rank patients for case finding",
                         "training": {"n": 100, "events": 9, "reference_date": "2025-04-01",
                                      "features_from": "2024-04-01"},
                         "limitations": ["trained on local history"]})
    young = next(g for g in rep.subgroups if g.group == "18-44")
    old_ = next(g for g in rep.subgroups if g.group == "65+")
    assert young.auc is not None and old_.auc is not None and young.auc < old_.auc - 0.05
    summary = rep.summary()
    assert summary[0].startswith("What it predicts: the chance of an emergency admission")
    assert summary[1].startswith("How well: given one patient who was admitted")
    assert summary[2] == (
        "For whom it works less well (the AUC within a group, 0.05 or more below the best "
        f"group of its kind): aged 18-44 (AUC {young.auc:.2f}, against {old_.auc:.2f} aged "
        "65+).")
    md = rep.to_markdown()
    assert md.index("## In short") < md.index(summary[0]) < md.index("## Discrimination")
    assert "## Model card" in md and "**Intended use:** rank patients for case finding." in md
    assert "features from 2024-04-01 to 2025-04-01" in md
    assert "| aged 18-44 |" in md and "| aged 65+ |" in md


def test_lace_form_and_parr30_form_by_hand() -> None:
    f = pd.DataFrame({"age": [80, 30], "emergency_12m": [1, 0], "emergency_30d": [1, 0],
                      "ae_12m": [2, 0], "ltc_hf": [1, 0], "ltc_copd": [1, 0],
                      "ltc_ckd": [0, 0], "ltc_dem": [0, 0], "ltc_cancer": [0, 0],
                      "ltc_dm": [0, 1]})
    # modified LACE: A 3 (emergency) + C 2 + 2 (heart failure, COPD) + E 2 (two A&E) = 9;
    # the second: C 1 (diabetes)
    assert lace_form(f).tolist() == [9.0, 1.0]
    # PARR-30: constant + age^2 coefficient + 1 emergency + last 30 days + heart failure +
    # COPD, with no deprivation, current-admission or hospital term
    want = -2.91821 + 0.000060581 * 80**2 + 0.1215 + 0.5258 + 0.0950 + 0.2243
    assert parr30_form(f)[0] == pytest.approx(want)
    assert parr30_form(f)[1] == pytest.approx(float(parr30_logit(30, 0, 0, 0, 0)) - 0.0)


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    return build_economy(tmp_path_factory.mktemp("risk-report") / "wh",
                         patients_per_practice=800)


def test_report_has_groups_comparators_and_card_rendered_once(wh: Warehouse) -> None:
    from typer.testing import CliRunner

    from pbc.cli import app, print_report

    trained = CliRunner().invoke(app, ["risk", "train", "--warehouse", str(wh.root)])
    assert trained.exit_code == 0, trained.output
    assert "## " not in trained.output and "pbc risk report" in trained.output
    rep = svc.report(wh, COMMISSIONER)
    dims = {g.dimension for g in rep.subgroups}
    assert dims == {"age band", "sex", "deprivation quintile"}
    assert sum(g.n for g in rep.subgroups if g.dimension == "sex") == rep.n
    assert set(rep.comparators) == {LACE_FORM, PARR30_FORM}
    assert rep.card["intended_use"].startswith("rank a commissioner's registered patients")
    buf = io.StringIO()
    print_report(rep.to_markdown(), Console(file=buf, width=80, color_system=None))
    text = buf.getvalue()
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert "#" not in text and "|" not in text  # rendered, not raw Markdown
    assert text.count("In short") == 1 and text.count("Model card") == 1
    assert text.index("What it predicts") < text.index("Discrimination")
    assert "LACE form" in text and "PARR-30 form" in text
    assert "…" not in text  # no cell cut short
