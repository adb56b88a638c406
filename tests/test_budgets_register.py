"""The register measures in the engine (:mod:`pbc.budgets.register`) equal their pandas
twins in :mod:`pbc.budgets.fair_shares` on random registers."""

from __future__ import annotations

from decimal import Decimal

import ibis
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbc.budgets.fair_shares import band_costs, need_index_from_conditions
from pbc.budgets.register import band_costs_expr, need_index_expr

CONDITIONS = ["AF", "COPD", "DM", "HF", "HYP", "XX"]  # XX: a code with no weight


def _register(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    n = draw(st.integers(1, 40))
    patients = pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)],
        "practice_code": draw(st.lists(st.sampled_from(["A1", "A2", "A3"]), min_size=n,
                                       max_size=n)),
        "sex": draw(st.lists(st.sampled_from(["F", "M"]), min_size=n, max_size=n)),
        "age": draw(st.lists(st.integers(0, 105), min_size=n, max_size=n)),
        "imd_decile": pd.array(draw(st.lists(st.one_of(st.none(), st.integers(1, 10)),
                                             min_size=n, max_size=n)), dtype="Int64"),
    })
    ids = st.sampled_from([*patients.patient_id, "NOT_REGISTERED"])
    conditions = pd.DataFrame(draw(st.lists(st.tuples(ids, st.sampled_from(CONDITIONS)),
                                            max_size=60)), columns=["patient_id", "condition"])
    costs = pd.DataFrame(draw(st.lists(st.tuples(
        ids, st.sampled_from(["ae", "day_case", "non_elective"]),
        st.decimals(0, 10**6, places=2).map(Decimal)), min_size=1, max_size=60)),
        columns=["patient_id", "service_line", "cost"])
    return patients, conditions, costs


registers = st.composite(_register)


def _sorted(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame.sort_values(by).reset_index(drop=True)


@settings(max_examples=30, deadline=None)
@given(registers())
def test_band_costs_in_the_engine_equal_pandas(reg) -> None:
    patients, _, costs = reg
    want = band_costs(patients, costs)
    got = band_costs_expr(ibis.memtable(patients), ibis.memtable(
        costs.astype({"cost": "object"}))).to_pandas()
    keys = ["sex", "age_band", "service_line"]
    want, got = _sorted(want, keys), _sorted(got, keys)
    assert list(got.columns) == list(want.columns)
    assert got[keys].values.tolist() == want[keys].values.tolist()
    assert got.patients.tolist() == want.patients.tolist()
    assert got.cost_pence.tolist() == want.cost_pence.tolist()


@settings(max_examples=30, deadline=None)
@given(registers())
def test_need_index_in_the_engine_equals_pandas(reg) -> None:
    patients, conditions, _ = reg
    want = need_index_from_conditions(patients, conditions)
    got = need_index_expr(ibis.memtable(patients), ibis.memtable(conditions)).to_pandas()
    assert got.practice_code.tolist() == want.practice_code.tolist()
    assert got.need_index.tolist() == pytest.approx(want.need_index.tolist(), rel=1e-12)


def test_need_index_by_hand() -> None:
    """The formula by hand: a condition counted once however often it is recorded, a code
    with no weight adds nothing, a missing decile counts as 5.5."""
    patients = pd.DataFrame({"patient_id": ["a", "b", "c"], "practice_code": ["X", "X", "Y"],
                             "imd_decile": pd.array([1, 10, None], dtype="Int64")})
    conditions = pd.DataFrame({"patient_id": ["b", "b", "c"],
                               "condition": ["COPD", "COPD", "XX"]})
    got = need_index_expr(ibis.memtable(patients), ibis.memtable(conditions)).to_pandas()
    # scores: a = 1 x 1.2; b = (1 + 0.20) x 1.0 (COPD once); c = 1 x (1 + 0.2 x 4.5 / 9)
    scores = {"a": 1.2, "b": 1.2, "c": 1.1}
    overall = sum(scores.values()) / 3
    assert got.need_index.tolist() == pytest.approx(
        [(scores["a"] + scores["b"]) / 2 / overall, scores["c"] / overall])


def test_register_without_conditions_or_deciles() -> None:
    patients = pd.DataFrame({"patient_id": ["a", "b"], "practice_code": ["X", "Y"]})
    got = need_index_expr(ibis.memtable(patients), None).to_pandas()
    assert got.need_index.tolist() == [1.0, 1.0]
