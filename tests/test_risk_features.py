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
