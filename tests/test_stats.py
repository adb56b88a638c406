"""Golden tests for pbc.stats confidence intervals, rates, DSRs and ISRs.

Expected values: pbc domain docs/sources.md §4.4 (testdata_Byars_Wilson.xlsx) and §4.5
(testdata_Rate.xlsx) from PHEindicatormethods; DSR/ISR examples worked by hand from the
formulas in §4.6-4.7 (arithmetic written out below, independent of the implementation).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2

from pbc.stats import (
    ESP2013,
    ESP2013_BANDS,
    byars_ci,
    crude_rate,
    dsr,
    dsr_by_group,
    exact_poisson_ci,
    israte,
    isratio,
    wilson_ci,
)

REL = 1e-9

# --- §4.4 Oracle table A -------------------------------------------------------------------
BYARS = [  # x, confidence, lower, upper
    (65, 95, 50.163187710459454, 82.849138545939837),
    (1045, 95, 982.59320180733255, 1110.3312129856499),
    (1, 95, 0.013072132901504351, 5.5637555824752605),
    (65, 99.8, 42.880261471480203, 94.000290844318016),
    (1045, 99.8, 947.94070356103737, 1148.8061609880331),
    (10, 99.8, 2.916318374695686, 24.193724927880535),
    (1, 99.8, math.nan, 9.362180217908362),
]
WILSON = [  # x, n, confidence, lower, upper
    (65, 100, 95, 0.55254443296887967, 0.73635751756902468),
    (1045, 5000, 95, 0.19795549880013297, 0.22049130373189027),
    (0.445, 1, 95, 0.043817447720588223, 0.93346212769791559),
    (65, 100, 99.8, 0.49549465740704313, 0.77835406140896968),
    (1045, 5000, 99.8, 0.19179381799015244, 0.22731562902525818),
    (0.445, 1, 99.8, 0.019347006132900975, 0.97022599470195414),
]


@pytest.mark.parametrize(("x", "conf", "lower", "upper"), BYARS)
@pytest.mark.parametrize("as_fraction", [False, True])
def test_byars_golden(x: float, conf: float, lower: float, upper: float, as_fraction: bool) -> None:
    ci = byars_ci(x, conf / 100 if as_fraction else conf)
    assert isinstance(ci.lower, float) and isinstance(ci.upper, float)
    if math.isnan(lower):
        assert math.isnan(ci.lower)  # PHE sets a negative Byar lower limit to NA
    else:
        assert ci.lower == pytest.approx(lower, rel=REL)
    assert ci.upper == pytest.approx(upper, rel=REL)


def test_byars_vectorised_matches_scalars() -> None:
    ci = byars_ci(np.array([65, 1045, 10, 1]), 0.998)
    assert ci.lower == pytest.approx([42.880261471480203, 947.94070356103737,
                                      2.916318374695686, math.nan], rel=REL, nan_ok=True)


@pytest.mark.parametrize(("x", "n", "conf", "lower", "upper"), WILSON)
@pytest.mark.parametrize("as_fraction", [False, True])
def test_wilson_golden(x: float, n: float, conf: float, lower: float, upper: float,
                       as_fraction: bool) -> None:
    ci = wilson_ci(x, n, conf / 100 if as_fraction else conf)
    assert ci.lower == pytest.approx(lower, rel=REL)
    assert ci.upper == pytest.approx(upper, rel=REL)


# --- §4.5 Oracle table B: crude rates ------------------------------------------------------
RATES = [  # x, n, value, 95 L, 95 U, 99.8 L, 99.8 U, method (×100)
    (1, 100, 1, 0.025317807984289897, 5.571643390938898, 0.0010005003335835344,
     9.2334134764515845, "Exact"),
    (5, 100, 5, 1.62348639011842, 11.668332079322669, 0.739371731917839, 16.454745203680105,
     "Exact"),
    (20, 100, 20, 12.211428834875937, 30.889880369197066, 8.922802365144193,
     38.085035625041911, "Byars"),
    (9856, 12345, 79.837991089509913, 78.269490589767571, 81.430016542721404,
     77.375905432710525, 82.354472770954303, "Byars"),
    (7776456, 7564336677, 0.10280420256339154, 0.10273196005302074, 0.10287648334092832,
     0.102690317308454, 0.10291817639509068, "Byars"),
    (222, 3215, 6.9051321928460334, 6.0265748776526751, 7.8757293708718503,
     5.5607376952598537, 8.4610466817334107, "Byars"),
    (250, 220, 113.63636363636365, 99.984947385328764, 128.63114487455782,
     92.710005544389525, 137.65123772147458, "Byars"),
]


@pytest.mark.parametrize("row", RATES, ids=[str(r[0]) for r in RATES])
@pytest.mark.parametrize("multiplier", [100, 100_000])
def test_crude_rate_golden(row: tuple, multiplier: int) -> None:
    x, n, value, l95, u95, l998, u998, method = row
    scale = multiplier / 100
    r95 = crude_rate(x, n, multiplier=multiplier, confidence=0.95)
    r998 = crude_rate(x, n, multiplier=multiplier, confidence=99.8)
    assert r95.value == pytest.approx(value * scale, rel=REL)
    assert (r95.lower, r95.upper) == pytest.approx((l95 * scale, u95 * scale), rel=REL)
    assert (r998.lower, r998.upper) == pytest.approx((l998 * scale, u998 * scale), rel=REL)
    assert r95.method == r998.method == method


def test_crude_rate_vectorised() -> None:
    x = np.array([r[0] for r in RATES], dtype=float)
    n = np.array([r[1] for r in RATES], dtype=float)
    res = crude_rate(x, n, multiplier=100)
    assert res.lower == pytest.approx([r[3] for r in RATES], rel=REL)
    assert list(res.method) == [r[7] for r in RATES]


# --- edge cases ----------------------------------------------------------------------------
def test_zero_events() -> None:
    r = crude_rate(0, 1000, multiplier=1000)
    assert r.value == 0 and r.lower == 0 and r.method == "Exact"
    assert r.upper == pytest.approx(chi2.ppf(0.975, 2) / 2)  # 3.6888794541139363 per 1000
    assert exact_poisson_ci(0).lower == 0
    assert byars_ci(0).lower == 0
    w = wilson_ci(0, 50)
    assert w.lower == 0 and 0 < w.upper < 1


def test_x_equals_n() -> None:
    w = wilson_ci(50, 50)
    assert w.upper == pytest.approx(1.0) and w.lower < 1


def test_confidence_one_wilson() -> None:
    assert wilson_ci(3, 10, 1) == (0.0, 1.0)
    assert wilson_ci(3, 10, 100) == (0.0, 1.0)


@pytest.mark.parametrize("bad", [0.5, 89, 100.1, 1.5])
def test_confidence_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        wilson_ci(1, 2, bad)


def test_confidence_equivalence_998() -> None:
    for f in (lambda c: byars_ci(37, c), lambda c: exact_poisson_ci(7, c),
              lambda c: wilson_ci(7, 31, c), lambda c: crude_rate(7, 31, 100, c)):
        assert f(0.998) == f(99.8)


def test_tiny_populations() -> None:
    r = crude_rate(1, 1, multiplier=1)
    assert r.lower == pytest.approx(chi2.ppf(0.025, 2) / 2)
    w = wilson_ci(1, 1)
    assert w.upper == pytest.approx(1.0) and w.lower > 0


def test_nan_propagates() -> None:
    x = np.array([5.0, np.nan, 20.0])
    n = np.array([100.0, 100.0, np.nan])
    r = crude_rate(x, n)
    assert np.isnan(r.value[1:]).all() and not np.isnan(r.value[0])
    assert r.method[1] is None
    w = wilson_ci(x, np.array([100.0, 100.0, np.nan]))
    assert np.isnan(w.lower[1:]).all()
    assert np.isnan(byars_ci(x).upper[1])
    assert np.isnan(exact_poisson_ci(x).lower[1])


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="less than or equal"):
        wilson_ci(5, 4)
    with pytest.raises(ValueError, match="greater than or equal to zero"):
        byars_ci(-1)
    with pytest.raises(ValueError, match="greater than zero"):
        crude_rate(1, 0)


def test_exact_matches_chi2() -> None:
    ci = exact_poisson_ci([3, 9], 0.9)
    assert ci.lower == pytest.approx(chi2.ppf(0.05, [6, 18]) / 2)
    assert ci.upper == pytest.approx(chi2.ppf(0.95, [8, 20]) / 2)


# --- DSR (§4.6) ----------------------------------------------------------------------------
def test_esp2013() -> None:
    assert ESP2013.sum() == 100_000
    assert len(ESP2013) == len(ESP2013_BANDS) == 19
    assert ESP2013_BANDS[0] == "0-4" and ESP2013_BANDS[-2] == "85-89" and ESP2013_BANDS[-1] == "90+"
    assert ESP2013.tolist() == [5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000,
                                7000, 6500, 6000, 5500, 5000, 4000, 2500, 1500, 1000]


# Reference values worked by hand from the published formulas (Dobson et al. 1991 with
# Byar's limits of O, as PHEindicatormethods phe_dsr), step by step in plain arithmetic
# outside pbc, so a change to pbc's formula shows up here.
def test_dsr_worked_example() -> None:
    # 3 bands, standard population 1000/2000/3000:
    # DSR = (10/1000·1000 + 20/4000·2000 + 30/2000·3000)/6000 × 1e5 = 65/6000 × 1e5
    #     = 1083.333...
    # var = (10·1² + 20·0.5² + 30·1.5²)/6000² = 82.5/36e6 = 2.2916667e-6;  O = 60
    # Byar 95% (z 1.959964): lower(60) = 45.783760, upper = 77.233224
    #   -> DSR + √(var/60)·1e5·(45.78376 − 60) = 805.49967, and 1420.12910
    # Byar 99.8% (z 3.090232): 38.855201, 88.032235 -> 670.09210, 1631.17850
    x, n, w = [10, 20, 30], [1000, 4000, 2000], [1000, 2000, 3000]
    for conf, lo, hi in ((0.95, 805.4996732754596, 1420.1291049802512),
                         (0.998, 670.0920983429596, 1631.17849622108)):
        res = dsr(x, n, standard_population=w, multiplier=100_000, confidence=conf)
        assert res.value == pytest.approx(1083.3333333333333, rel=REL)
        assert res.lower == pytest.approx(lo, rel=1e-9)
        assert res.upper == pytest.approx(hi, rel=1e-9)
        assert res.total_count == 60 and res.total_pop == 7000


def test_dsr_esp2013_default_and_groups() -> None:
    # 10 events in 1,000 people in every ESP2013 band: DSR = 1,000 per 100,000 exactly;
    # var = 10 · Σw² / 1000² / (Σw)² with Σw = 100,000 and Σw² = 585,000,000; O = 190;
    # Byar 95% limits of 190 -> 855.40712, 1161.04089
    x = np.full((3, 19), 10.0)
    n = np.full((3, 19), 1000.0)
    x[1] = 20  # twice the rate in every band: twice the DSR
    x[2] = 0
    x[2, 5] = 9  # fewer than 10 events: not calculated
    res = dsr(x, n)
    assert (res.value[0], res.lower[0], res.upper[0]) == pytest.approx(
        (1000.0, 855.4071199150376, 1161.0408926236923), rel=1e-9)
    assert res.value[1] == pytest.approx(2000.0, rel=REL)
    assert np.isnan([res.value[2], res.lower[2], res.upper[2]]).all()
    long = pd.DataFrame({"area": np.repeat(["A", "B", "C"], 19), "x": x.ravel(),
                         "n": n.ravel()})
    by = dsr_by_group(long, "area", "x", "n")
    assert by["value"].to_numpy() == pytest.approx(res.value, rel=REL, nan_ok=True)
    assert by["lower"].to_numpy() == pytest.approx(res.lower, rel=REL, nan_ok=True)
    assert by["method"].tolist() == ["Dobson", "Dobson", "dsr NA for total count < 10"]
    long["w"] = np.tile(ESP2013, 3)
    by_col = dsr_by_group(long, ["area"], "x", "n", standard_population="w", confidence=99.8)
    assert by_col["upper"].to_numpy() == pytest.approx(dsr(x, n, confidence=0.998).upper,
                                                      rel=REL, nan_ok=True)


def test_dsr_missing_counts() -> None:
    x = np.full(19, 5.0)
    x[3] = np.nan
    n = np.full(19, 1000.0)
    assert dsr(x, n).value == pytest.approx(dsr(np.nan_to_num(x), n).value)
    assert math.isnan(dsr(x, n, missing_as_zero=False).value)
    df = pd.DataFrame({"g": [1] * 19, "x": x, "n": n})
    assert math.isnan(dsr_by_group(df, "g", "x", "n", missing_as_zero=False)["value"].iloc[0])


def test_dsr_band_mismatch() -> None:
    with pytest.raises(ValueError, match="bands"):
        dsr([10, 20], [100, 200])
    with pytest.raises(ValueError, match="rows"):
        dsr_by_group(pd.DataFrame({"g": [1, 1], "x": [1, 2], "n": [3, 4]}), "g", "x", "n")


# --- ISR (§4.7) ----------------------------------------------------------------------------
def test_isratio_worked_example() -> None:
    # E = 1000×(50/10000) + 2000×(300/20000) + 500×(NaN→0) = 5 + 30 + 0 = 35; O = 42 (Byar)
    n = [1000, 2000, 500]
    ref_x, ref_n = [50, 300, np.nan], [10000, 20000, 5000]
    res = isratio([10, 30, 2], n, ref_x, ref_n)
    assert res.observed == 42 and res.expected == pytest.approx(35)
    assert res.value == pytest.approx(42 / 35)
    b = byars_ci(42)
    assert (res.lower, res.upper) == pytest.approx((b.lower / 35, b.upper / 35), rel=REL)
    # totals instead of band counts, refvalue 100
    res100 = isratio(42, n, ref_x, ref_n, confidence=99.8, refvalue=100)
    b998 = byars_ci(42, 0.998)
    assert res100.value == pytest.approx(42 / 35 * 100)
    assert res100.upper == pytest.approx(b998.upper / 35 * 100, rel=REL)
    # fewer than 10 events: exact limits
    small = isratio(7, n, ref_x, ref_n)
    e = exact_poisson_ci(7)
    assert (small.lower, small.upper) == pytest.approx((e.lower / 35, e.upper / 35), rel=REL)


def test_israte_worked_example() -> None:
    n = [1000, 2000, 500]
    ref_x, ref_n = [50, 300, 0], [10000, 20000, 5000]
    res = israte([10, 30, 2], n, ref_x, ref_n, multiplier=100_000)
    ref_rate = 350 / 35000
    assert res.value == pytest.approx(42 / 35 * ref_rate * 1e5)
    b = byars_ci(42)
    assert res.lower == pytest.approx(b.lower / 35 * ref_rate * 1e5, rel=REL)


def test_isr_many_areas() -> None:
    n = np.array([[1000, 2000], [3000, 100]], dtype=float)
    res = isratio(np.array([12, 3]), n, [10, 20], [1000, 1000])
    assert res.expected == pytest.approx([10 + 40, 30 + 2])
    assert res.value == pytest.approx([12 / 50, 3 / 32])
