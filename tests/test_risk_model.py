"""The predictive model, its validation statistics, segments and suppression."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbc.risk.features import FEATURE_COLUMNS
from pbc.risk.model import RiskModel, fit, load_spec
from pbc.risk.segments import assign_segments, segment_cutoffs, segment_sql
from pbc.risk.validation import auc, auc_ci, calibration, calibration_bins, compare_auc, validate
from pbc.services.suppression import show, suppress, suppress_table


def synthetic_features(n: int = 4000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f = pd.DataFrame({c: np.zeros(n, dtype=int) for c in FEATURE_COLUMNS})
    f["patient_id"] = [f"P{i:06d}" for i in range(n)]
    f["age"] = rng.integers(0, 95, n)
    f["female"] = rng.integers(0, 2, n)
    f["imd_decile"] = rng.integers(1, 11, n).astype(float)
    f.loc[rng.random(n) < 0.05, "imd_decile"] = np.nan
    f["ltc_copd"] = (rng.random(n) < 0.1).astype(int)
    f["ltc_hf"] = (rng.random(n) < 0.05).astype(int)
    f["ltc_hyp"] = (rng.random(n) < 0.2).astype(int)
    f["ltc_count"] = f["ltc_copd"] + f["ltc_hf"] + f["ltc_hyp"]
    f["emergency_12m"] = rng.poisson(0.2 + f["ltc_count"], n)
    f["prior_cost"] = 0.0
    lp = -3 + 0.03 * f["age"] + 0.8 * f["ltc_copd"] + 1.0 * f["ltc_hf"] + 0.3 * f[
        "emergency_12m"]
    f["outcome_emergency"] = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int)
    return f


@pytest.fixture(scope="module")
def model() -> RiskModel:
    return fit(synthetic_features())


def test_fit_card_and_excluded_terms(model: RiskModel) -> None:
    card = model.card
    for key in ("inputs", "outcome", "version", "created", "training", "method"):
        assert key in card
    assert "prior_cost" in card["excluded_terms"]  # constant: nothing priced
    c = model.coefficients
    assert c["ltc_hf"] + c["ltc_count"] > 0.6 and c["ltc_copd"] + c["ltc_count"] > 0.5


def test_json_round_trip_and_determinism(model: RiskModel, tmp_path) -> None:
    path = model.save(tmp_path / "m.json")
    assert "pickle" not in path.read_text()
    again = RiskModel.load(path)
    f = synthetic_features(200, seed=3)
    assert np.allclose(again.predict(f), model.predict(f))
    assert again.version == model.version
    assert fit(synthetic_features()).version == model.version  # same data, same version


def test_sql_form_matches_numpy(model: RiskModel) -> None:
    f = synthetic_features(500, seed=5)
    con = duckdb.connect()
    con.register("features", f)
    sql_p = con.execute(f"SELECT {model.sql()} AS p FROM features").df()["p"].to_numpy()
    assert np.allclose(sql_p, model.predict(f), atol=1e-12)


def test_explanations_in_plain_words(model: RiskModel) -> None:
    f = synthetic_features(50, seed=9)
    row = f.iloc[[0]].copy()
    row[["age", "ltc_hf", "ltc_copd", "ltc_count", "emergency_12m"]] = [40, 1, 1, 2, 3]
    text = model.explain(row, top=4)[0]
    assert "3 emergency admissions in 12 months" in text
    assert "heart failure" in text and "COPD" in text
    low = row.copy()
    low[["age", "ltc_hf", "ltc_copd", "ltc_count", "emergency_12m"]] = [5, 0, 0, 0, 0]
    assert "heart failure" not in model.explain(low)[0]
    row["emergency_12m"] = 1
    assert "1 emergency admission in 12 months" in model.explain(row, top=4)[0]


def test_spec_is_data() -> None:
    spec = load_spec()
    assert {t.feature for t in spec.terms} <= set(FEATURE_COLUMNS)
    assert spec.acsc_codelist == "acsc_chronic"


def test_auc_matches_sklearn_and_delong_ci() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    s = y * 0.7 + rng.normal(size=600)
    s[:50] = np.round(s[:50])  # ties
    a = auc_ci(y, s)
    assert a.auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert a.lower < a.auc < a.upper and 0.02 < a.upper - a.lower < 0.2
    # DeLong's variance for the tiny example of Hanley & McNeil style data is non-negative
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    cmp = compare_auc(y, s, rng.normal(size=600))
    assert cmp.difference > 0 and cmp.p_value < 0.001


def test_calibration_ideal_and_miscalibrated() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.01, 0.6, 50_000)
    y = (rng.random(p.size) < p).astype(int)
    c = calibration(y, p)
    assert abs(c.intercept) < 0.05 and abs(c.slope - 1) < 0.05
    over = calibration(y, np.clip(p * 1.5, 0, 0.99))
    assert over.intercept < -0.2  # predictions too high
    bins = calibration_bins(y, p)
    assert len(bins) == 10 and sum(b.n for b in bins) == p.size
    assert all(abs(b.mean_predicted - b.observed_rate) < 0.03 for b in bins)


def test_segments_by_rank() -> None:
    assert segment_cutoffs(1000) == [5, 50, 200, 1000]
    risk = np.linspace(1, 0, 1000)
    seg, rank = assign_segments(risk)
    assert rank[0] == 1 and (seg == "very_high").sum() == 5 and (seg == "high").sum() == 45
    assert (seg == "moderate").sum() == 150 and (seg == "low").sum() == 800
    con = duckdb.connect()
    got = con.execute(
        f"SELECT {segment_sql('r', '1000')} FROM range(1, 1001) t(r) ORDER BY r").fetchall()
    assert [g[0] for g in got] == seg.tolist()


def test_validate_report_and_naive_rule() -> None:
    f = synthetic_features()
    m = fit(f)
    rep = validate(f["outcome_emergency"], m.predict(f), f["emergency_12m"])
    assert rep.n == len(f)
    assert [s.name for s in rep.segments] == ["very_high", "high", "moderate", "low"]
    assert rep.cumulative[-1].sensitivity == pytest.approx(1.0)
    assert rep.naive_rule.flagged == int((f["emergency_12m"] >= 2).sum())
    assert rep.auc.auc > rep.naive_auc  # type: ignore[operator]
    md = rep.to_markdown()
    assert "AUC" in md and "Calibration intercept" in md and "| Very high |" in md
    assert "very high to the top 0.5%" in md
    assert rep.to_dict()["auc"]["auc"] == rep.auc.auc


# ------------------------------------------------------------------ suppression
def test_suppress_primary_and_complementary() -> None:
    assert suppress([120, 5, 40, 0]) == [120, None, None, 0]
    assert suppress([0, 8, 100]) == [0, 8, 100]
    assert suppress([3, 4, 100]) == [None, None, 100]
    assert suppress([1, 2, 3], complementary=False) == [None, None, None]
    rows = suppress_table([[3, 0, 0]])
    assert rows[0].cells == [None, 0, 0] and rows[0].total is None
    assert [show(v) for v in suppress([7, 8, 9])] == ["*", "*", "9"]
    with pytest.raises(ValueError):
        suppress([-1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), min_size=2, max_size=4), min_size=1, max_size=5)
       .filter(lambda rows: len({len(r) for r in rows}) == 1))
def test_suppression_never_leaks(rows: list[list[int]]) -> None:
    out = suppress_table(rows, column_totals=True)
    for r, o in zip(rows, out, strict=True):
        for v, c in zip(r, o.cells, strict=True):
            assert c is None or c == v
            assert not (1 <= v <= 7) or c is None  # primary
        if o.total is not None:
            assert 1 <= sum(c is None for c in o.cells) != 1 or all(c is not None
                                                                     for c in o.cells)
    for j in range(len(rows[0])):
        column = [o.cells[j] for o in out]
        hidden = sum(c is None for c in column)
        assert hidden != 1 or all(r[j] == 0 for i, r in enumerate(rows) if out[i].cells[j]
                                  is not None)


def test_calibration_chart_plots_the_deciles(tmp_path) -> None:
    from pbc.indicators.charts import save_chart
    from pbc.risk.charts import calibration_chart, calibration_frame

    rng = np.random.default_rng(3)
    p = rng.beta(1, 12, 20_000)
    y = rng.random(20_000) < p
    report = validate(y, p, np.zeros(20_000))
    frame = calibration_frame(report)
    assert list(frame.group) == list(range(1, 11)) and frame.n.sum() == 20_000
    # the top decile: its own mean prediction and observed share, inside the Wilson interval
    order = np.argsort(p, kind="stable")[-2000:]
    assert frame.mean_predicted.iloc[-1] == pytest.approx(p[order].mean())
    assert frame.observed.iloc[-1] == pytest.approx(y[order].mean())
    assert (frame.lower_95 <= frame.observed).all() and (frame.observed <= frame.upper_95).all()
    spec = calibration_chart(report).to_dict()
    points = next(layer for layer in spec["layer"] if layer.get("name") == "points")
    assert len(spec["datasets"][points["data"]["name"]]) == 10
    svg = save_chart(calibration_chart(report), tmp_path / "cal.svg").read_text()
    assert "<svg" in svg and "calibration intercept" in svg


# ------------------------------------------------------------------ reasons and baseline
def _hand_model(coefficients: dict[str, float], means: dict[str, float]) -> RiskModel:
    return RiskModel(load_spec(), -3.0, coefficients, means)


def test_reasons_do_not_repeat_and_signs_are_plausible() -> None:
    # worked by hand: contributions are coefficient x (term - training mean)
    m = _hand_model(
        {"emergency_12m": 0.8, "emergency_24m": 0.3, "ltc_copd": 0.6, "age": 0.2,
         "imd_decile": 0.05,   # implausible: less deprived, higher risk
         "op_12m": -0.2},      # implausible: more outpatient care, lower risk
        {"emergency_12m": 0.0, "emergency_24m": 0.0, "ltc_copd": 0.0, "age": 5.0,
         "imd_decile": 5.5, "op_12m": float(np.log1p(3))})
    row = synthetic_features(1).iloc[[0]].copy()
    row[["age", "imd_decile", "emergency_12m", "emergency_24m", "ltc_copd", "op_12m"]] = [
        50, 10, 3, 4, 1, 1]
    # emergency: 0.8 log(4) + 0.3 log(5) = 1.592; COPD 0.6; deprivation +0.225 (decile 10,
    # implausible sign); outpatients -0.2 (log 2 - log 4) = +0.139 (implausible sign); age 0
    assert m.explain(row, top=5) == ["3 emergency admissions in 12 months; COPD"]


def test_a_missing_deprivation_decile_is_not_a_reason() -> None:
    m = _hand_model({"imd_decile": -0.1}, {"imd_decile": 7.0})
    row = synthetic_features(1).iloc[[0]].copy()
    row["imd_decile"] = np.nan  # filled with 5.5 in the term: contribution +0.15
    assert m.contributions(row)["deprivation"].iloc[0] == pytest.approx(0.15)
    assert m.explain(row, top=5) == [""]
    row["imd_decile"] = 2.0
    assert m.contributions(row)["deprivation"].iloc[0] == pytest.approx(0.5)
    # deprivation raises the risk but is context, not something a clinician can act on
    assert m.explain(row) == [""]


def test_age_is_context_not_a_reason() -> None:
    """Reasons on a case-finding list are things a clinician can act on: an old patient's
    age may add most to the risk, but the reasons are the admissions and conditions."""
    m = _hand_model({"age": 0.5, "emergency_12m": 0.3, "ltc_hf": 0.2},
                    {"age": 5.0, "emergency_12m": 0.0, "ltc_hf": 0.0})
    row = synthetic_features(1).iloc[[0]].copy()
    row[["age", "emergency_12m", "ltc_hf"]] = [90, 1, 1]
    c = m.contributions(row).iloc[0]
    assert c["age"] > c["emergency_12m"] > 0 and c["age"] > c["ltc_hf"] > 0
    assert m.explain(row, top=3) == ["1 emergency admission in 12 months; heart failure"]


def test_baseline_is_prior_emergency_admissions_as_a_count() -> None:
    y = [0, 0, 1, 1, 0, 1]
    prior = [0, 1, 1, 3, 0, 0]
    rep = validate(y, [0.1, 0.2, 0.3, 0.9, 0.1, 0.2], prior)
    # cases (1, 3, 0) against non-cases (0, 1, 0): wins 2 + 3 + 0, ties 1 + 0 + 2: 6.5 / 9
    assert rep.naive_auc == pytest.approx(6.5 / 9)
    assert rep.naive_rule.flagged == 1  # the 2+ rule still gives the yield row
    assert rep.compared_with_naive is not None
    assert rep.compared_with_naive.auc_b == pytest.approx(6.5 / 9)


def test_leakage_check_flags_a_model_better_than_the_truth() -> None:
    from pbc.risk.validation import leakage_check

    rng = np.random.default_rng(4)
    lam = rng.lognormal(-2.5, 0.8, 20_000)
    y = (rng.random(lam.size) < 1 - np.exp(-lam)).astype(int)
    honest = np.log(lam) + rng.normal(0, 0.8, lam.size)  # sees part of the risk
    assert not leakage_check(y, honest, lam).leaked
    leaky = honest + 2.0 * y  # a feature that has seen the outcome
    check = leakage_check(y, leaky, lam)
    assert check.leaked and "leakage" in check.message


def test_the_condition_count_does_not_repeat_the_conditions() -> None:
    m = _hand_model({"ltc_copd": 0.5, "ltc_hf": 0.7, "ltc_count": 0.3},
                    {"ltc_copd": 0.0, "ltc_hf": 0.0, "ltc_count": 0.0})
    row = synthetic_features(1).iloc[[0]].copy()
    row[["ltc_copd", "ltc_hf", "ltc_count"]] = [1, 1, 2]
    # HF 0.7, count 0.6 (restates them), COPD 0.5
    assert m.explain(row, top=3) == ["heart failure; COPD"]
