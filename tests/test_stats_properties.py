"""Hypothesis property tests for pbc.stats."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pbc.stats import byars_ci, crude_rate, dsr, exact_poisson_ci, isratio, wilson_ci

counts = st.integers(min_value=0, max_value=100_000)
confs = st.tuples(st.floats(0.9, 0.9999), st.floats(0.9, 0.9999)).map(sorted)
TOL = 1e-9


@given(x=counts, extra=st.integers(0, 100_000), c=confs)
def test_wilson_widens_with_confidence(x: int, extra: int, c: list[float]) -> None:
    n = x + extra + 1
    lo, hi = wilson_ci(x, n, c[0]), wilson_ci(x, n, c[1])
    assert hi.lower <= lo.lower + TOL and hi.upper >= lo.upper - TOL
    assert lo.lower - TOL <= x / n <= lo.upper + TOL


@given(x=counts, c=confs)
def test_poisson_limits_widen_with_confidence(x: int, c: list[float]) -> None:
    for f in (exact_poisson_ci, byars_ci):
        lo, hi = f(x, c[0]), f(x, c[1])
        assert hi.upper >= lo.upper - TOL * max(1, x)
        if not (np.isnan(lo.lower) or np.isnan(hi.lower)):
            assert hi.lower <= lo.lower + TOL * max(1, x)
            assert hi.lower <= x <= hi.upper


@given(x=counts, n=st.floats(1, 1e9), c=st.floats(0.9, 0.9999))
def test_crude_rate_ordered(x: int, n: float, c: float) -> None:
    r = crude_rate(x, n, confidence=c)
    assert r.lower <= r.value * (1 + TOL) and r.value <= r.upper * (1 + TOL)


@settings(max_examples=200)
@given(
    rate=st.floats(1e-5, 0.5),
    pops=st.lists(st.floats(100, 1e6), min_size=19, max_size=19),
    c=st.floats(0.9, 0.999),
)
def test_dsr_of_constant_rate_is_that_rate(rate: float, pops: list[float], c: float) -> None:
    n = np.array(pops)
    x = rate * n
    res = dsr(x, n, confidence=c, multiplier=1)
    if x.sum() >= 10:
        assert np.isclose(res.value, rate, rtol=1e-9)
        assert res.lower <= res.value <= res.upper
    else:
        assert np.isnan(res.value)


@settings(max_examples=200)
@given(
    ref_rates=st.lists(st.floats(1e-4, 0.5), min_size=2, max_size=19),
    scale=st.floats(10, 1e5),
    c=st.floats(0.9, 0.999),
)
def test_isr_with_reference_rates_is_one(ref_rates: list[float], scale: float, c: float) -> None:
    k = len(ref_rates)
    ref_n = np.full(k, 1e6)
    ref_x = np.array(ref_rates) * ref_n
    n = np.linspace(1, 2, k) * scale
    x = n * ref_x / ref_n  # the reference's own rates
    res = isratio(x, n, ref_x, ref_n, confidence=c)
    assert np.isclose(res.value, 1.0, rtol=1e-9)
    assert res.lower <= res.value <= res.upper


@given(x=st.lists(st.integers(0, 500), min_size=19, max_size=19),
       n=st.lists(st.integers(1, 10_000), min_size=19, max_size=19))
def test_dsr_ordered(x: list[int], n: list[int]) -> None:
    res = dsr(x, n)
    if sum(x) >= 10:
        assert res.lower <= res.value <= res.upper
