"""Golden tests for pbc.stats funnel plots.

Expected values: pbc domain docs/sources.md §4.8 and PHEindicatormethods test data
(``tests/data/stats/``, see its README), plus PHStatsMethods' published unit-test values for
``sigma_adjustment``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2, norm

from pbc.stats import (
    DSR_NOT_APPLICABLE,
    SIGNIFICANCE_LEVELS,
    funnel_dsr,
    funnel_proportion,
    funnel_proportion_limits,
    funnel_rate,
    funnel_rate_limits,
    funnel_ratio,
    funnel_ratio_limits,
    poisson_funnel,
    spiegelhalter_tau2,
)
from pbc.stats.funnel_proportion import inverse_wilson

DATA = Path(__file__).parent / "data" / "stats"
P_BAR = 0.80642448


def test_reference_example_n1_n4() -> None:
    t = funnel_proportion_limits(P_BAR, [1, 4], multiplier=100)
    assert t["lower_95"].tolist() == pytest.approx([3.204264, 41.923356], abs=1e-6)
    assert t["upper_95"].tolist() == [100, 100]
    assert t["lower_998"].tolist() == pytest.approx([0, 19.594903], abs=1e-6)
    assert t["upper_998"].tolist() == [100, 100]


def test_proportion_limits_golden_table() -> None:
    gold = pd.read_csv(DATA / "funnel_prop_outputs.csv")
    t = funnel_proportion_limits(P_BAR, gold["Population"], multiplier=100)
    for ours, theirs in [("lower_95", "Lower2s0025limit"), ("upper_95", "Upper2s0025limit"),
                         ("lower_998", "Lower3s0001limit"), ("upper_998", "Upper3s0001limit"),
                         ("baseline", "Baseline")]:
        assert t[ours].to_numpy() == pytest.approx(gold[theirs].to_numpy(), abs=1e-6), ours


def test_sigma_adjustment_phstatsmethods_values() -> None:
    # PHStatsMethods tests/test_funnels.py::test_sigma
    assert 100 * inverse_wilson(norm.ppf(0.975), np.array(100000.0), 0.9, "low") == \
        pytest.approx(89.81406149030842, rel=1e-12)
    assert 1000 * inverse_wilson(norm.ppf(0.999), np.array(300000.0), 0.85, "high") == \
        pytest.approx(852.0145849882799, rel=1e-12)


def test_proportion_limits_are_wilson_inverse() -> None:
    # the 95% upper limit at n is the proportion whose Wilson lower limit is the baseline
    from pbc.stats import wilson_ci

    t = funnel_proportion_limits(0.3, [50, 500, 5000], multiplier=1)
    for n, up, lo in zip([50, 500, 5000], t["upper_95"], t["lower_95"], strict=True):
        assert wilson_ci(up * n, n).lower == pytest.approx(0.3, rel=1e-9)
        assert wilson_ci(lo * n, n).upper == pytest.approx(0.3, rel=1e-9)


def test_funnel_proportion_significance_rules() -> None:
    x = np.array([500, 560, 620, 400, 450, 700])
    n = np.full(6, 1000)
    out = funnel_proportion(x, n)
    p = x.sum() / n.sum()
    assert out["baseline"].iloc[0] == pytest.approx(p * 100)
    assert set(out["significance"]) <= set(SIGNIFICANCE_LEVELS)
    for _, row in out.iterrows():
        v = row["value"]
        if v > row["upper_998"]:
            assert row["significance"] == "High (0.001)"
        elif v > row["upper_95"]:
            assert row["significance"] == "High (0.025)"
        elif v < row["lower_998"]:
            assert row["significance"] == "Low (0.001)"
        elif v < row["lower_95"]:
            assert row["significance"] == "Low (0.025)"
        else:
            assert row["significance"] == "Not significant"
    assert out["significance"].tolist() == ["Low (0.025)", "Not significant", "High (0.001)",
                                            "Low (0.001)", "Low (0.001)", "High (0.001)"]


def test_ratio_limits_golden_table() -> None:
    gold = pd.read_csv(DATA / "funnel_ratio_outputs.csv")
    for rtype, suffix in (("count", "count"), ("isr", "isr")):
        t = funnel_ratio_limits(gold["Observed_events"], ratio_type=rtype)
        for lim, col in (("lower_95", "lower_2s"), ("upper_95", "upper_2s"),
                         ("lower_998", "lower_3s"), ("upper_998", "upper_3s")):
            assert t[f"{lim}_expected"].to_numpy() == pytest.approx(
                gold[f"{col}_exp_events"].to_numpy(), rel=1e-6), lim
            assert t[lim].to_numpy() == pytest.approx(
                gold[f"{col}_{suffix}"].to_numpy(), rel=1e-6, abs=1e-6), (rtype, lim)


def test_poisson_funnel_is_exact_poisson_limit() -> None:
    o = np.arange(1, 200, 7, dtype=float)
    assert poisson_funnel(o, 0.025, "high") == pytest.approx(chi2.ppf(0.975, 2 * o + 2) / 2,
                                                              rel=1e-6)
    # PHE's bisection stops at a step of 1e-7 in v = E/(1+O+E): absolute accuracy ~1e-7
    # (PHE's own table gives 0.001000547 for O = 1 against the exact 0.0010005003)
    assert poisson_funnel(o, 0.001, "low") == pytest.approx(chi2.ppf(0.001, 2 * o) / 2,
                                                             rel=1e-6, abs=1e-7)


def test_ratio_limits_at_point_expected_pass_through_phe_curve() -> None:
    gold = pd.read_csv(DATA / "funnel_ratio_outputs.csv")
    # a point whose E is the E on PHE's limit for O sits exactly on that limit
    for col, lim in (("lower_2s", "lower_95"), ("upper_2s", "upper_95"),
                     ("lower_3s", "lower_998"), ("upper_3s", "upper_998")):
        e = gold[f"{col}_exp_events"].to_numpy()
        out = funnel_ratio(np.ones_like(e), e, ratio_type="count")
        assert out[lim].to_numpy() == pytest.approx(gold[f"{col}_count"].to_numpy(),
                                                    rel=1e-5, abs=1e-6), lim


def test_funnel_ratio_significance_and_types() -> None:
    o = np.array([8, 151, 0, 16, 507, 100])
    e = np.array([6.239860227, 106.4429719, 240.6273499, 36.38844667, 272.3024867, 100])
    out = funnel_ratio(o, e)
    assert out["significance"].tolist() == ["Not significant", "High (0.001)", "Low (0.001)",
                                            "Low (0.001)", "High (0.001)", "Not significant"]
    assert out["value"].to_numpy() == pytest.approx(o / e)
    isr = funnel_ratio(o, e, ratio_type="isr")
    cnt = funnel_ratio(o, e, ratio_type="count")
    assert isr["upper_95"].to_numpy() == pytest.approx(out["upper_95"].to_numpy() * 100)
    assert cnt["lower_998"].to_numpy() == pytest.approx(out["lower_998"].to_numpy() - 1)
    assert (out["lower_998"] <= out["lower_95"]).all()
    assert (out["upper_95"] <= out["upper_998"]).all()
    with pytest.raises(ValueError, match="ratio_type"):
        funnel_ratio(o, e, ratio_type="odds")  # type: ignore[arg-type]


def test_funnel_ratio_significance_phstatsmethods_values() -> None:
    # PHStatsMethods test_funnel_ratio_significance (rounded to 2 dp): the test statistic is
    # the 95% upper limit of O divided by E: (5, 10, 'high') -> 1.17 (exact, O < 10),
    # (25, 20, 'high') -> 1.85 (Byar's, O >= 10). These are the limits our significance uses.
    from pbc.stats.exact_poisson import poisson_ci

    _, upper = poisson_ci(np.array([5.0, 25.0]), 0.95)
    assert np.round(upper / np.array([10.0, 20.0]), 2).tolist() == [1.17, 1.85]


def test_rate_limits_golden_table() -> None:
    gold = pd.read_csv(DATA / "funnel_rate_outputs.csv")
    t = funnel_rate_limits(gold["Events"], baseline_rate=116.1720835 / 100_000,
                           multiplier=100_000, years_of_data=3)
    for lim, col in (("lower_95", "lower_2s"), ("upper_95", "upper_2s"),
                     ("lower_998", "lower_3s"), ("upper_998", "upper_3s")):
        assert t[lim].to_numpy() == pytest.approx(gold[f"{col}_limit"].to_numpy(), rel=1e-6)
        assert t[f"{lim}_population"].to_numpy() == pytest.approx(
            gold[f"{col}_population_1_year"].to_numpy(), rel=1e-6)
    assert t["baseline"].iloc[0] == pytest.approx(116.1720835)


@pytest.fixture(scope="module")
def rate_inputs() -> pd.DataFrame:
    return pd.read_csv(DATA / "funnel_rate_dsr_inputs.csv")


def test_dsr_funnel_significance_golden(rate_inputs: pd.DataFrame) -> None:
    d = rate_inputs
    out = funnel_dsr(d["count"], d["rate_dsr"], multiplier=100_000)
    assert out["significance"].tolist() == d["dsr_per_100000_with_0"].tolist()
    out100 = funnel_dsr(d["count"], d["rate_dsr"] / 1000, multiplier=100)
    assert out100["significance"].tolist() == d["dsr_per_100_with_0"].tolist()
    without = funnel_dsr(d["count"][:-1], d["rate_dsr"][:-1])
    assert without["significance"].tolist() == d["dsr_per_100000_without_0"][:-1].tolist()
    assert out["significance"].iloc[-1] == DSR_NOT_APPLICABLE
    assert np.isnan(out["lower_95"].iloc[-1])


def test_crude_rate_funnel_significance_golden(rate_inputs: pd.DataFrame) -> None:
    d = rate_inputs
    for mult, suffix in ((100_000, "per_100000"), (100, "per_100")):
        out = funnel_rate(d["count"], d["pop"], multiplier=mult)
        assert out["significance"].tolist() == d[f"crude_{suffix}_with_0"].tolist()
        out = funnel_rate(d["count"][:-1], d["pop"][:-1], multiplier=mult)
        assert out["significance"].tolist() == d[f"crude_{suffix}_without_0"][:-1].tolist()
        assert out["value"].to_numpy() == pytest.approx(d[f"rate_crude_{suffix}"][:-1], rel=1e-8)


def test_dsr_funnel_small_counts_labelled() -> None:
    out = funnel_dsr([5, 9, 10, 200, 300], [50.0, 80.0, 90.0, 100.0, 120.0])
    assert out["significance"].tolist()[:2] == [DSR_NOT_APPLICABLE] * 2
    assert out["significance"].iloc[2] != DSR_NOT_APPLICABLE


def test_rate_funnel_limits_scale_with_baseline() -> None:
    x = np.array([30, 40, 55, 20])
    n = np.array([10000, 12000, 15000, 9000])
    out = funnel_rate(x, n, multiplier=1000)
    base = x.sum() / n.sum()
    ratio = funnel_ratio(x, base * n)
    assert out["upper_95"].to_numpy() == pytest.approx(ratio["upper_95"] * base * 1000)
    assert out["significance"].tolist() == ratio["significance"].tolist()


def test_overdispersion_tau2_worked_example() -> None:
    # Worked by hand (Spiegelhalter 2005; FunnelPlotR): z = (-2, -1, 0, 1, 2); the 10th and
    # 90th percentiles (linear interpolation at positions 0.4 and 3.6) are -1.6 and 1.6, so
    # winsorised z = (-1.6, -1, 0, 1, 1.6) and phi = (2.56 + 1 + 0 + 1 + 2.56) / 5 = 1.424.
    # s = (0.1, 0.1, 0.2, 0.2, 0.5): w = 1/s² = (100, 100, 25, 25, 4), Σw = 254,
    # Σw² = 21,266; tau² = (5 · 1.424 − 4) / (254 − 21266/254) = 3.12 / 170.27559
    # = 0.018323237
    z = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    s = np.array([0.1, 0.1, 0.2, 0.2, 0.5])
    od = spiegelhalter_tau2(z, s)
    assert od.phi == pytest.approx(1.424, rel=1e-12)
    assert od.tau2 == pytest.approx(0.01832323699421966, rel=1e-9)
    assert od.k == 5
    # under-dispersed (k·phi = 0.0712 < k − 1): no adjustment
    assert spiegelhalter_tau2(z / 10, s).tau2 == 0


def test_overdispersion_widens_limits() -> None:
    rng = np.random.default_rng(7)
    e = rng.uniform(50, 500, 200)
    o = rng.poisson(e * rng.lognormal(0, 0.3, 200)).astype(float)
    o[0] = 0  # log(0) must not break the estimate
    plain = funnel_ratio(o, e)
    od = funnel_ratio(o, e, overdispersion=True)
    assert od.attrs["tau2"] > 0 and od.attrs["k"] == 200
    assert (od["upper_998"] > plain["upper_998"]).all()
    assert (od["significance"] != "Not significant").sum() < (
        plain["significance"] != "Not significant").sum()
    x = rng.binomial(1000, rng.beta(20, 80, 100)).astype(float)
    n = np.full(100, 1000.0)
    assert funnel_proportion(x, n, overdispersion=True).attrs["tau2"] > 0
    assert funnel_rate(o, e * 100, overdispersion=True).attrs["tau2"] > 0
    assert funnel_dsr(o[1:], o[1:] / e[1:] * 1e5, overdispersion=True).attrs["tau2"] > 0


def test_funnel_nan_points() -> None:
    out = funnel_ratio([10, np.nan, 30], [12, 20, np.nan])
    assert out["significance"].iloc[1:].isna().all()
    assert out["significance"].iloc[0] == "Not significant"
    assert np.isnan(out["lower_95"].iloc[2])
    prop = funnel_proportion([10, np.nan], [100, 50])
    assert prop["baseline"].iloc[0] == pytest.approx(10.0)
    assert pd.isna(prop["significance"].iloc[1])


def test_funnel_performance_7000_points() -> None:
    rng = np.random.default_rng(3)
    e = rng.uniform(0.5, 5000, 7000)
    o = rng.poisson(e).astype(float)
    start = time.perf_counter()
    out = funnel_ratio(o, e)
    funnel_ratio_limits(np.arange(1, 7001))
    assert time.perf_counter() - start < 20
    assert out["lower_95"].notna().all()
