"""Small input tables for the pricing and attribution tests, typed as in the warehouse.

Tables are built as pyarrow tables with the warehouse storage types of the data contract
(codes VARCHAR, dates DATE, ints BIGINT, money DECIMAL(18,2), floats DOUBLE, bool BOOLEAN),
plus the ``financial_year``/``month`` partition columns on activity tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import ibis
import pyarrow as pa

from pbc.calendar import financial_month, financial_year_start
from pbc.contracts import TABLES

ARROW_TYPE = {
    "code": pa.string(), "text": pa.string(), "date": pa.date32(), "int": pa.int64(),
    "decimal": pa.decimal128(18, 2), "float": pa.float64(), "bool": pa.bool_(),
    "year_month": pa.string(),
}


def _convert(value: Any, kind: str) -> Any:
    if value is None or (value == "" and kind not in ("code", "text")):
        return None
    if kind == "date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(str(value))
    return value


def arrow_table(name: str, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts; missing optional columns are NULL) as a typed arrow table."""
    table = TABLES[name]
    rows = list(rows)
    data: dict[str, pa.Array] = {}
    for col in table.columns:
        values = [_convert(r.get(col.name), col.type) for r in rows]
        data[col.name] = pa.array(values, ARROW_TYPE[col.type])
    if table.kind == "activity" and table.activity_date:
        dates = []
        for r in rows:
            d = r[table.activity_date]
            if table.activity_date == "year_month":
                d = f"{d}-01"
            dates.append(dt.date.fromisoformat(d) if isinstance(d, str) else d)
        data["financial_year"] = pa.array(
            [f"{financial_year_start(d)}-{(financial_year_start(d) + 1) % 100:02d}"
             for d in dates], pa.string())
        data["month"] = pa.array([financial_month(d) for d in dates], pa.int64())
    return pa.table(data)


def memtables(tables: Mapping[str, pa.Table]) -> dict[str, ibis.Table]:
    return {k: ibis.memtable(v) for k, v in tables.items()}


# ---------------------------------------------------------------------------- a small economy

COMMISSIONERS = [{"commissioner_code": "QHM", "commissioner_name": "North ICB"}]
GROUPS = [
    {"group_code": "G01", "group_name": "North", "group_type": "locality",
     "commissioner_code": "QHM"},
    {"group_code": "G02", "group_name": "South", "group_type": "locality",
     "commissioner_code": "QHM"},
]
PRACTICES = [
    {"practice_code": "A81001", "practice_name": "One", "group_code": "G01",
     "commissioner_code": "QHM"},
    {"practice_code": "A81002", "practice_name": "Two", "group_code": "G02",
     "commissioner_code": "QHM"},
]
PROVIDERS = [
    {"provider_code": "RTR", "provider_name": "Tees", "provider_type": "acute",
     "mff_payment_index": 1.0461},
    {"provider_code": "RXX", "provider_name": "Flat", "provider_type": "acute",
     "mff_payment_index": 1.0},
]
TARIFF_APC = [
    # HRG with every price
    {"hrg_code": "DZ65K", "hrg_name": "COPD", "day_case_price": "600.00",
     "ordinary_elective_price": "1500.00", "combined_elective_price": "1200.00",
     "elective_trim_days": 5, "non_elective_price": "1000.00", "non_elective_trim_days": 10,
     "excess_bed_day_price": "250.00", "sse_applies": "Y", "sse_price": "700.00",
     "outpatient_procedure_price": None},
    # only a combined elective price; no SSEM
    {"hrg_code": "HB12C", "hrg_name": "Hip", "day_case_price": None,
     "ordinary_elective_price": None, "combined_elective_price": "2000.00",
     "elective_trim_days": 3, "non_elective_price": "3000.00", "non_elective_trim_days": 7,
     "excess_bed_day_price": "300.00", "sse_applies": "N", "sse_price": None,
     "outpatient_procedure_price": "150.00"},
]
TARIFF_OP = [
    {"treatment_function_code": "110", "first_attendance_price": "168.00",
     "follow_up_price": "84.00"},
    {"treatment_function_code": "300", "first_attendance_price": "200.00",
     "follow_up_price": "100.00"},
]
TARIFF_AE = [
    {"hrg_code": "VB07Z", "price": "148.00"},
    {"hrg_code": "VB11Z", "price": "60.00"},
]


def spell(spell_id: str, **kw: Any) -> dict[str, Any]:
    """An APC spell with defaults (emergency, ordinary, DZ65K, age 70, 3 days at RXX)."""
    row = {
        "spell_id": spell_id, "patient_id": "P1", "practice_code": "A81001",
        "provider_code": "RXX", "admission_date": "2025-05-01",
        "discharge_date": "2025-05-04", "admission_method": "21",
        "patient_classification": "1", "hrg_code": "DZ65K", "age_on_admission": 70,
    }
    if "los" in kw:
        los = kw.pop("los")
        adm = dt.date.fromisoformat(kw.get("admission_date", row["admission_date"]))
        row["discharge_date"] = (adm + dt.timedelta(days=los)).isoformat()
    row.update(kw)
    return row


def op(attendance_id: str, **kw: Any) -> dict[str, Any]:
    row = {
        "attendance_id": attendance_id, "patient_id": "P1", "practice_code": "A81001",
        "provider_code": "RTR", "appointment_date": "2025-06-17",
        "treatment_function_code": "110", "first_attendance": "1", "attended": True,
    }
    row.update(kw)
    return row


def ae(attendance_id: str, **kw: Any) -> dict[str, Any]:
    row = {
        "attendance_id": attendance_id, "patient_id": "P1", "practice_code": "A81001",
        "provider_code": "RXX", "arrival_date": "2025-12-24", "department_type": "1",
        "hrg_code": "VB07Z",
    }
    row.update(kw)
    return row


def economy(apc: Iterable[Mapping[str, Any]] = (), ops: Iterable[Mapping[str, Any]] = (),
            aes: Iterable[Mapping[str, Any]] = (), **overrides: Any) -> dict[str, pa.Table]:
    """Arrow tables of the small economy with the given activity."""
    rows: dict[str, Any] = {
        "commissioners": COMMISSIONERS, "groups": GROUPS, "practices": PRACTICES,
        "providers": PROVIDERS, "tariff_apc": TARIFF_APC, "tariff_op": TARIFF_OP,
        "tariff_ae": TARIFF_AE, "apc_spells": list(apc), "op_attendances": list(ops),
        "ae_attendances": list(aes),
    }
    rows.update(overrides)
    return {k: arrow_table(k, v) for k, v in rows.items() if v is not None}


def price_rows(raw: Mapping[str, pa.Table], settings: Any = None,
               keep_exact: bool = True) -> dict[str, dict[str, Any]]:
    """Price on DuckDB (memtables); rows keyed by activity_id."""
    from pbc.pricing import price_activity

    expr = price_activity(memtables(raw), settings, keep_exact=keep_exact)
    return {r["activity_id"]: r for r in expr.to_pyarrow().to_pylist()}
