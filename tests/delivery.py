"""A small, valid delivery of every input table, written as CSV, for loader tests.

Tests change one cell or one row to produce each kind of bad input.
"""

from __future__ import annotations

import csv
from pathlib import Path

VALID: dict[str, list[dict[str, str]]] = {
    "commissioners": [{"commissioner_code": "QHM", "commissioner_name": "Test ICB"}],
    "groups": [
        {"group_code": "G1", "group_name": "North", "group_type": "locality",
         "commissioner_code": "QHM"},
        {"group_code": "G2", "group_name": "South", "group_type": "pcn",
         "commissioner_code": "QHM"},
    ],
    "local_authorities": [
        {"local_authority_code": "E06000004", "local_authority_name": "Stockton-on-Tees"},
    ],
    "neighbourhoods": [
        {"neighbourhood_code": "N1", "local_authority_code": "E06000004",
         "neighbourhood_name": "Norton"},
    ],
    "practices": [
        {"practice_code": "A81001", "practice_name": "One", "group_code": "G1",
         "commissioner_code": "QHM", "local_authority_code": "E06000004",
         "neighbourhood_code": "N1", "open_date": "1990-04-01", "close_date": ""},
        {"practice_code": "A81002", "practice_name": "Two", "group_code": "G2",
         "commissioner_code": "QHM", "local_authority_code": "E06000004",
         "neighbourhood_code": "N1", "open_date": "", "close_date": ""},
    ],
    "providers": [
        {"provider_code": "RTR", "provider_name": "Trust A", "provider_type": "acute",
         "mff_payment_index": "1.0461"},
        {"provider_code": "RVW", "provider_name": "Trust B", "provider_type": "acute",
         "mff_payment_index": "1.0"},
    ],
    "patients": [
        {"patient_id": f"P{i}", "practice_code": "A81001" if i % 2 else "A81002",
         "sex": "F" if i % 3 else "M", "age": str(20 + i * 7), "imd_decile": str(1 + i % 10),
         "neighbourhood_code": "N1", "registered_from": "2010-01-01", "registered_to": ""}
        for i in range(1, 9)
    ],
    "patient_conditions": [
        {"patient_id": "P1", "condition": "COPD", "recorded_date": "2019-11-12"},
        {"patient_id": "P2", "condition": "HF", "recorded_date": ""},
    ],
    "tariff_apc": [
        {"hrg_code": "DZ65K", "hrg_name": "COPD", "day_case_price": "", "ordinary_elective_price":
         "", "combined_elective_price": "2102.00", "elective_trim_days": "12",
         "non_elective_price": "1826.00", "non_elective_trim_days": "19",
         "excess_bed_day_price": "247.00", "sse_applies": "Y", "sse_price": "548.00",
         "outpatient_procedure_price": ""},
    ],
    "tariff_op": [
        {"treatment_function_code": "110", "first_attendance_price": "168.00",
         "follow_up_price": "84.00"},
    ],
    "tariff_ae": [{"hrg_code": "VB07Z", "price": "148.00"}],
    "apc_spells": [
        {"spell_id": f"S{i}", "patient_id": f"P{i % 8 + 1}",
         "practice_code": "A81001" if i % 2 else "A81002", "commissioner_code": "QHM",
         "provider_code": "RTR", "admission_date": "2025-05-03", "discharge_date": "2025-05-09",
         "admission_method": "21", "patient_classification": "1", "hrg_code": "DZ65K",
         "age_on_admission": "78", "primary_diagnosis": "J441", "treatment_function_code": "300",
         "top_up_category": ""}
        for i in range(1, 11)
    ],
    "op_attendances": [
        {"attendance_id": f"O{i}", "patient_id": "P1", "practice_code": "A81001",
         "commissioner_code": "QHM", "provider_code": "RVW", "appointment_date": "2025-06-17",
         "treatment_function_code": "110", "first_attendance": "1", "attended": "true",
         "referral_source": "03", "hrg_code": ""}
        for i in range(1, 6)
    ],
    "ae_attendances": [
        {"attendance_id": f"E{i}", "patient_id": "P2", "practice_code": "A81002",
         "commissioner_code": "QHM", "provider_code": "RTR", "arrival_date": "2025-12-24",
         "department_type": "1", "hrg_code": "VB07Z"}
        for i in range(1, 6)
    ],
    "prescribing": [
        {"practice_code": "A81001", "year_month": "2025-04", "bnf_code": "0206020A0AAAAAA",
         "bnf_name": "Amlodipine 5mg tablets", "items": "412", "actual_cost": "1234.56"},
        {"practice_code": "", "year_month": "2025-05", "bnf_code": "0206020A0AAAAAA",
         "bnf_name": "Amlodipine 5mg tablets", "items": "10", "actual_cost": "10.00"},
    ],
    "social_care_packages": [
        {"package_id": "C1", "local_authority_code": "E06000004", "service_type": "home_care",
         "start_date": "2025-07-01", "end_date": "", "weekly_cost": "434.00",
         "patient_id": "P3"},
    ],
}


def write_table(folder: Path, table: str, rows: list[dict[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{table}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_delivery(folder: Path, tables: list[str] | None = None) -> Path:
    """Write the valid delivery (or some of its tables) to ``folder``."""
    for name, rows in VALID.items():
        if tables is None or name in tables:
            write_table(folder, name, [dict(r) for r in rows])
    return folder


def with_change(table: str, row: int, column: str, value: str) -> list[dict[str, str]]:
    """The valid rows of ``table`` with one cell changed."""
    rows = [dict(r) for r in VALID[table]]
    rows[row][column] = value
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[str]], newline: str = "\n") -> Path:
    """Write a CSV file (RFC 4180 quoting) with the given line ending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_records(path: Path) -> list[dict[str, str]]:
    """The data records of a CSV file as Python's csv module reads them (row 1 = first)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def warehouse_state(wh: object) -> tuple[int, dict[str, list[tuple[object, ...]]]]:
    """The warehouse's current version and every table's rows (sorted), to compare a
    warehouse before and after a load that must change nothing."""
    from pbc.warehouse import Warehouse

    assert isinstance(wh, Warehouse)
    if not wh.exists():
        return 0, {}
    tables = {}
    for name in wh.table_names():
        rows = wh.query(f'SELECT * FROM "{name}"')
        tables[name] = sorted(rows, key=repr)
    return wh.manifest()["version"], tables
