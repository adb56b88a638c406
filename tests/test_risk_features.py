"""Case-finding features on hand-made tables: exact counts in windows, boundary dates."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest

from pbc.risk.features import FEATURE_COLUMNS, add_months, build_features

D = dt.date
REF = D(2025, 4, 1)


def _tables() -> dict[str, object]:
    patients = pd.DataFrame({
        "patient_id": ["P1", "P2", "P3", "P4", "P5"],
        "practice_code": ["A81001", "A81001", "B82001", "B82001", "A81001"],
        "sex": ["F", "M", "F", "M", "F"],
        "age": [80, 40, 70, 30, 55],
        "imd_decile": [1, None, 5, 9, 2],
        "neighbourhood_code": ["N1", "N1", "N2", "N2", None],
        # P3 registers after the reference date; P4 left the day before it; P5 leaves on it
        "registered_from": [None, D(2020, 1, 1), D(2025, 4, 2), None, None],
        "registered_to": [None, None, None, D(2025, 3, 31), D(2025, 4, 1)],
    })
    apc = pd.DataFrame({
        "spell_id": [f"S{i}" for i in range(9)],
        "patient_id": ["P1", "P1", "P1", "P1", "P1", "P2", "P2", "P2", "P1"],
        "admission_date": [
            D(2025, 3, 31),   # emergency, last day before R: 12m, 24m, 30d
            D(2025, 3, 2),    # emergency, exactly R - 30 days: in 30d window
            D(2024, 4, 1),    # emergency, first day of 12m window
            D(2024, 3, 31),   # emergency, day before 12m window: 24m only
            D(2025, 4, 1),    # emergency on R: outcome, not a feature
            D(2023, 4, 1),    # elective, first day of 24m window
            D(2023, 3, 31),   # emergency, before 24m window: ignored
            D(2026, 4, 1),    # emergency, day after outcome window: ignored
            D(2025, 3, 1),    # maternity (31): neither emergency nor elective
        ],
        "admission_method": ["21", "2A", "22", "28", "21", "11", "21", "21", "31"],
        "primary_diagnosis": ["J441", "I500", "K359", None, "J45", "K409", "J441", "J441",
                              "O800"],
    })
    conds = pd.DataFrame({
        "patient_id": ["P1", "P1", "P1", "P2"],
        "condition": ["COPD", "HF", "COPD", "DM"],
        # HF recorded on the reference date: not yet known; duplicate COPD counts once
        "recorded_date": [None, D(2025, 4, 1), D(2019, 1, 1), D(2025, 3, 31)],
    })
    ae = pd.DataFrame({"attendance_id": ["E1", "E2", "E3"], "patient_id": ["P1", "P1", "P2"],
                       "arrival_date": [D(2025, 1, 1), D(2023, 6, 1), D(2025, 4, 1)]})
    op = pd.DataFrame({"attendance_id": ["O1", "O2", "O3"], "patient_id": ["P1", "P1", "P2"],
                       "appointment_date": [D(2025, 1, 1), D(2025, 2, 1), D(2024, 12, 1)],
                       "attended": [True, False, None]})
    priced = pd.DataFrame({"activity_type": ["apc", "apc", "ae"],
                           "activity_id": ["S0", "S4", "E1"], "patient_id": ["P1", "P1", "P1"],
                           "price": [1000.50, 2000.0, 150.25],
                           "base_price": [1000.50, 2000.0, 150.25],
                           "long_stay_adjustment": [0.0, 0.0, 0.0],
                           "short_stay_adjustment": [0.0, 0.0, 0.0],
                           "top_up_adjustment": [0.0, 0.0, 0.0],
                           "activity_date": [D(2025, 3, 31), D(2025, 4, 1), D(2025, 1, 1)]})
    return {"patients": patients, "apc_spells": apc, "patient_conditions": conds,
            "ae_attendances": ae, "op_attendances": op, "priced_activity": priced}


def _run(names: tuple[str, ...] | None = None, **kw: object) -> pd.DataFrame:
    t = {k: ibis.memtable(v) for k, v in _tables().items() if names is None or k in names}
    return build_features(t, REF, **kw).to_pandas().set_index("patient_id")


def test_add_months() -> None:
    assert add_months(D(2025, 4, 1), -12) == D(2024, 4, 1)
    assert add_months(D(2024, 3, 31), -1) == D(2024, 2, 29)
    assert add_months(D(2025, 1, 31), 13) == D(2026, 2, 28)


def test_registered_on_reference_date() -> None:
    f = _run()
    assert sorted(f.index) == ["P1", "P2", "P5"]


def test_admission_windows_exact() -> None:
    f = _run(with_outcome=True)
    p1, p2 = f.loc["P1"], f.loc["P2"]
    assert p1.emergency_12m == 3
    assert p1.emergency_24m == 4
    assert p1.emergency_30d == 1
    assert p1.acsc_12m == 2  # J441 (COPD) and I500 (heart failure); K359 is not an ACSC
    assert p1.elective_12m == 0 and p1.elective_24m == 0  # maternity counts as neither
    assert p1.outcome_emergency == 1 and p1.outcome_emergency_count == 1
    assert p2.emergency_24m == 0 and p2.elective_24m == 1 and p2.elective_12m == 0
    assert p2.outcome_emergency == 0  # the admission on R + 12 months is outside
    assert f.loc["P5"].emergency_24m == 0


def test_conditions_flags_and_count() -> None:
    f = _run()
    assert (f.loc["P1", ["ltc_copd", "ltc_hf", "ltc_count"]].tolist() == [1, 0, 1])
    assert f.loc["P2", "ltc_dm"] == 1 and f.loc["P2", "ltc_count"] == 1
    assert f.loc["P5", "ltc_count"] == 0


def test_ae_op_cost_and_demographics() -> None:
    f = _run()
    assert f.loc["P1", "ae_12m"] == 1 and f.loc["P1", "ae_24m"] == 2
    assert f.loc["P2", "ae_12m"] == 0  # arrival on R is after the window
    assert f.loc["P1", "op_12m"] == 1  # the DNA does not count
    assert f.loc["P2", "op_12m"] == 1  # a blank 'attended' counts as attended
    assert f.loc["P1", "prior_cost"] == pytest.approx(1150.75)
    assert f.loc["P1", "female"] == 1 and f.loc["P2", "female"] == 0
    assert f.loc["P1", "age"] == 80 and pd.isna(f.loc["P2", "imd_decile"])


def test_optional_tables_give_zeros() -> None:
    f = _run(("patients",))
    assert list(f.columns[f.columns.isin(FEATURE_COLUMNS)]) == list(FEATURE_COLUMNS)
    assert (f[["emergency_12m", "ltc_count", "ae_24m", "op_12m", "prior_cost"]] == 0).all().all()
    with pytest.raises(KeyError, match="patients"):
        build_features({}, REF)


def test_expression_runs_in_the_engine() -> None:
    t = {k: ibis.memtable(v) for k, v in _tables().items()}
    sql = ibis.to_sql(build_features(t, REF, with_outcome=True), dialect="duckdb")
    assert "GROUP BY" in sql.upper()


def _with(**frames: pd.DataFrame) -> dict[str, object]:
    t = _tables()
    t.update(frames)
    return {k: ibis.memtable(v) for k, v in t.items()}


def test_a_later_diagnosis_cannot_reach_an_earlier_index_date() -> None:
    conds = pd.DataFrame({
        "patient_id": ["P2", "P2", "P5"],
        "condition": ["HF", "DM", "COPD"],
        # P2: heart failure with no recorded date (diagnosed after R in life); DM before R;
        # P5: COPD diagnosed six months after R
        "recorded_date": [None, D(2025, 3, 31), D(2025, 10, 1)],
    })
    f = build_features(_with(patient_conditions=conds), REF).to_pandas().set_index("patient_id")
    assert f.loc["P2", "ltc_hf"] == 0  # undated: not known at an earlier index date
    assert f.loc["P2", "ltc_count"] == 1  # DM only
    assert f.loc["P5", "ltc_copd"] == 0
    # undated conditions are known from the day after the data (the extract), not before
    later = build_features(_with(patient_conditions=conds), REF,
                           undated_known_from=D(2026, 4, 1)).to_pandas().set_index("patient_id")
    assert later.loc["P2", "ltc_hf"] == 0
    at_scoring = build_features(_with(patient_conditions=conds), D(2026, 4, 1),
                                undated_known_from=D(2026, 4, 1)).to_pandas()
    p2 = at_scoring.set_index("patient_id").loc["P2"]
    assert p2.ltc_hf == 1 and p2.ltc_dm == 1


def test_prior_cost_is_the_unadjusted_tariff_value() -> None:
    from decimal import Decimal as M

    priced = pd.DataFrame({
        "activity_type": ["apc", "apc", "ae"], "activity_id": ["S0", "S4", "E1"],
        "patient_id": ["P1", "P1", "P1"],
        "activity_date": [D(2025, 3, 31), D(2025, 4, 1), D(2025, 1, 1)],
        "base_price": [M("1000.00"), M("2000.00"), M("150.25")],
        "long_stay_adjustment": [M("300.00"), M("0.00"), M("0.00")],
        "short_stay_adjustment": [M("0.00"), M("0.00"), M("0.00")],
        "top_up_adjustment": [M("100.00"), M("0.00"), M("0.00")],
        # MFF 1.1 and the marginal rate (70% of a spell over baseline not paid): the final
        # price depends on the provider and the contract's order, not on the patient
        "mff_adjustment": [M("140.00"), M("200.00"), M("15.03")],
        "marginal_rate_adjustment": [M("-1078.00"), M("0.00"), M("0.00")],
        "price": [M("462.00"), M("2200.00"), M("165.28")],
    })
    f = build_features(_with(priced_activity=priced), REF).to_pandas().set_index("patient_id")
    # 1000 + 300 + 0 + 100 (the spell before R) + 150.25 (the A&E attendance); the spell on
    # R is outside the window
    assert f.loc["P1", "prior_cost"] == pytest.approx(1550.25, abs=1e-9)


def test_leavers_and_deaths_in_the_outcome_year_are_not_negatives() -> None:
    from pbc.risk.features import outcome_cohort

    patients = pd.DataFrame({
        "patient_id": ["P1", "P6", "P7", "P8", "P9"],
        "practice_code": ["A81001"] * 5, "sex": ["F", "M", "F", "M", "F"],
        "age": [80, 90, 30, 85, 60], "imd_decile": [1, 2, 3, 4, 5],
        "neighbourhood_code": ["N1"] * 5, "registered_from": [None] * 5,
        # P6 died in the outcome year with no admission; P7 moved away in it; P8 died before
        # R; P9 stayed to the last day of the outcome year
        "registered_to": [None, D(2025, 8, 1), D(2025, 10, 1), D(2025, 3, 1), D(2026, 3, 31)],
        "date_of_death": [None, D(2025, 8, 1), None, D(2025, 3, 1), None],
    })
    f = build_features(_with(patients=patients), REF, with_outcome=True).to_pandas()
    f = f.set_index("patient_id")
    assert sorted(f.index) == ["P1", "P6", "P7", "P9"]  # the dead are not registered
    assert f["outcome_complete"].to_dict() == {"P1": 1, "P6": 0, "P7": 0, "P9": 1}
    cohort = outcome_cohort(f)
    assert sorted(cohort.index) == ["P1", "P9"]
    assert cohort.loc["P1", "outcome_emergency"] == 1 and cohort.loc["P9",
                                                                     "outcome_emergency"] == 0


def test_feature_windows_covered_by_the_data() -> None:
    from pbc.risk.features import FEATURE_WINDOWS, covered_features

    assert set(FEATURE_WINDOWS) == set(FEATURE_COLUMNS)
    one_year = covered_features(D(2024, 4, 1), D(2025, 4, 1))
    assert "emergency_12m" in one_year and "ae_24m" not in one_year
    assert not {"emergency_24m", "elective_24m", "op_24m"} & set(one_year)
    assert "emergency_24m" in covered_features(D(2024, 4, 1), D(2026, 4, 1))
    # activity from 3 April: the data start on 1 May, so 12 months are not covered at R
    assert "emergency_12m" not in covered_features(D(2024, 4, 3), D(2025, 4, 1))
    assert "ltc_copd" in covered_features(D(2025, 1, 1), D(2025, 4, 1))
