"""The loader: conservation, clear errors for bad input, idempotence and atomicity."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delivery import (
    VALID,
    read_records,
    warehouse_state,
    with_change,
    write_csv,
    write_delivery,
    write_table,
)
from pbc.warehouse import Warehouse
from pbc.warehouse.load import LoadError, load

ACTIVITY_ROWS = sum(len(VALID[t]) for t in VALID)


def quarantine(wh: Warehouse, table: str | None = None) -> list[tuple]:
    where = f"WHERE source_table = '{table}'" if table else ""
    return wh.query(
        f'SELECT source_table, row_number, "column", value, reason FROM quarantine {where} '
        "ORDER BY source_table, row_number"
    )


def snapshot(wh: Warehouse) -> dict[str, str]:
    """Content of the current version: relative path -> sha256 of each file."""
    cur = wh.current
    assert cur is not None
    return {
        str(p.relative_to(cur)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(cur.rglob("*")) if p.is_file() and p.suffix != ".duckdb"
    }


# ------------------------------------------------------------------ a good delivery
def test_valid_delivery_loads_everything(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w")
    report = load(write_delivery(tmp_path / "in"), wh)
    assert report.rows_quarantined == 0
    assert report.rows_in == ACTIVITY_ROWS
    for t in report.tables:
        assert t.rows_in == t.rows_accepted + t.rows_quarantined
        assert wh.query(f"SELECT count(*) FROM {t.table}")[0][0] == len(VALID[t.table])
    # activity is partitioned by financial year and month (month 1 = April)
    assert wh.query("SELECT DISTINCT financial_year, month FROM apc_spells") == [("2025-26", 2)]
    assert wh.query("SELECT DISTINCT month FROM ae_attendances") == [(9,)]
    # types follow the contract
    row = wh.query("SELECT typeof(admission_date), typeof(age_on_admission) FROM apc_spells")[0]
    assert row == ("DATE", "BIGINT")
    assert wh.query("SELECT typeof(actual_cost) FROM prescribing LIMIT 1")[0][0] == "DECIMAL(18,2)"


def test_reconciliation_rows_and_money(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w")
    load(write_delivery(tmp_path / "in"), wh)
    rec = {
        r[0]: r[1:] for r in wh.query(
            "SELECT source_table, rows_in, rows_accepted, rows_quarantined, money_in, money_out, "
            "money_unattributed FROM reconciliation WHERE stage = 'load'")
    }
    assert set(rec) == set(VALID)
    assert rec["prescribing"][:3] == (2, 2, 0)
    # money in = money out; the row with a blank practice is unattributed money
    assert float(rec["prescribing"][3]) == pytest.approx(1244.56)
    assert float(rec["prescribing"][4]) == pytest.approx(1244.56)
    assert float(rec["prescribing"][5]) == pytest.approx(10.00)


def test_unknown_practice_on_activity_is_kept(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in")
    write_table(folder, "apc_spells", with_change("apc_spells", 0, "practice_code", "Z99999"))
    wh = Warehouse(tmp_path / "w")
    load(folder, wh)
    assert quarantine(wh, "apc_spells") == []
    assert wh.query("SELECT count(*) FROM apc_spells WHERE practice_code = 'Z99999'")[0][0] == 1


# ------------------------------------------------------------------ bad rows: quarantined
BAD_ROWS = [
    # (table, row, column, value, reason fragment)
    ("apc_spells", 2, "admission_date", "31/12/2025", "not a valid date"),
    ("apc_spells", 2, "admission_date", "2025-13-45", "not a valid date"),
    ("apc_spells", 2, "discharge_date", "", "missing value"),
    ("apc_spells", 2, "discharge_date", "2025-05-01", "discharge_date is before admission_date"),
    ("apc_spells", 2, "spell_id", "S1", "duplicate spell_id (first seen at row 1)"),
    ("apc_spells", 2, "age_on_admission", "130", "above the maximum 120"),
    ("apc_spells", 2, "age_on_admission", "-1", "below the minimum 0"),
    ("apc_spells", 2, "age_on_admission", "sixty", "not a whole number"),
    ("apc_spells", 2, "provider_code", "ZZZ", "unknown provider_code 'ZZZ' (not in providers)"),
    ("apc_spells", 2, "admission_method", "99", "not an allowed code"),
    ("apc_spells", 2, "hrg_code", "12345", "does not match the code format"),
    ("apc_spells", 2, "discharge_date", "1850-01-01", "date out of range"),
    ("op_attendances", 1, "attended", "maybe", "not true/false"),
    ("op_attendances", 1, "first_attendance", "7", "not an allowed code"),
    ("prescribing", 0, "actual_cost", "12.345", "not an amount in pounds with at most 2 decimals"),
    ("prescribing", 0, "year_month", "2025-13", "not a month (expected YYYY-MM)"),
    ("prescribing", 0, "items", "-4", "below the minimum 0"),
    ("providers", 1, "mff_payment_index", "0.95", "below the minimum 1"),
    ("practices", 1, "practice_code", "XYZ", "does not match the code format"),
    ("practices", 1, "group_code", "G9", "unknown group_code 'G9' (not in groups)"),
    ("patients", 3, "patient_id", "P1", "duplicate patient_id (first seen at row 1)"),
    ("patients", 3, "sex", "X", "not an allowed code (M, F)"),
    ("patient_conditions", 1, "patient_id", "P999", "unknown patient_id 'P999'"),
    ("social_care_packages", 0, "end_date", "2025-01-01", "end_date is before start_date"),
]


@pytest.mark.parametrize(("table", "row", "column", "value", "reason"), BAD_ROWS)
def test_bad_row_is_quarantined_with_reason(
    tmp_path: Path, table: str, row: int, column: str, value: str, reason: str
) -> None:
    folder = write_delivery(tmp_path / "in")
    write_table(folder, table, with_change(table, row, column, value))
    wh = Warehouse(tmp_path / "w")
    report = load(folder, wh)
    q = quarantine(wh, table)
    assert len(q) == 1, q
    source_table, row_number, q_column, q_value, q_reason = q[0]
    assert (source_table, row_number, q_column) == (table, row + 1, column)
    assert (q_value or "") == value
    assert reason in q_reason
    loaded = next(t for t in report.tables if t.table == table)
    assert loaded.rows_in == len(VALID[table])
    assert loaded.rows_accepted == len(VALID[table]) - 1


def test_unparseable_csv_rows_are_quarantined(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in")
    path = folder / "ae_attendances.csv"
    lines = path.read_text().splitlines()
    lines[2] += ",surplus"           # data row 2: too many fields
    lines[4] = lines[4].rsplit(",", 2)[0]  # data row 4: too few fields
    path.write_text("\n".join(lines) + "\n")
    wh = Warehouse(tmp_path / "w")
    report = load(folder, wh)
    q = quarantine(wh, "ae_attendances")
    assert [r[1] for r in q] == [2, 4]
    assert all(r[4].startswith("unreadable row") for r in q)
    ae = next(t for t in report.tables if t.table == "ae_attendances")
    assert (ae.rows_in, ae.rows_accepted, ae.rows_quarantined) == (5, 3, 2)
    # the rows after a rejected one keep their own row numbers
    assert wh.query("SELECT attendance_id FROM ae_attendances ORDER BY 1") == [
        ("E1",), ("E3",), ("E5",)]


# ------------------------------------------------------------------ errors that stop a load
def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in")
    rows = [{k: v for k, v in r.items() if k != "admission_date"} for r in VALID["apc_spells"]]
    write_table(folder, "apc_spells", rows)
    with pytest.raises(LoadError, match=r"apc_spells\.csv: missing required column "
                       r"'admission_date' for table apc_spells"):
        load(folder, Warehouse(tmp_path / "w"))
    assert not Warehouse(tmp_path / "w").exists()


def test_column_name_case_gets_a_hint(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in")
    rows = [{("Spell_ID" if k == "spell_id" else k): v for k, v in r.items()}
            for r in VALID["apc_spells"]]
    write_table(folder, "apc_spells", rows)
    with pytest.raises(LoadError, match="names are case-sensitive"):
        load(folder, Warehouse(tmp_path / "w"))


def test_unreadable_parquet_names_the_file(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in")
    (folder / "apc_spells.csv").unlink()
    (folder / "apc_spells.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(LoadError, match=r"apc_spells\.parquet: cannot be read as PARQUET"):
        load(folder, Warehouse(tmp_path / "w"))


def test_corrupt_parquet_page_names_the_file_and_keeps_the_warehouse(tmp_path: Path) -> None:
    """A Parquet file whose footer reads but whose data does not (Parquet is read by a
    view, so the pages are read only when the rows are checked)."""
    import duckdb

    wh = Warehouse(tmp_path / "w")
    load(write_delivery(tmp_path / "in"), wh)
    version = wh.manifest()["version"]
    folder = tmp_path / "in2"
    folder.mkdir()
    good, bad = folder / "good.parquet", folder / "patients.parquet"
    duckdb.sql(f"COPY (SELECT 'P' || i AS patient_id, 'A81001' AS practice_code, 'F' AS sex, "
               f"i % 100 AS age, repeat('x', 50) AS pad FROM range(100000) t(i)) TO '{good}' "
               "(FORMAT parquet, COMPRESSION zstd)")
    data = bytearray(good.read_bytes())
    for i in range(1000, len(data) // 2, 997):  # data pages only: the footer is at the end
        data[i] ^= 0xFF
    bad.write_bytes(bytes(data))
    good.unlink()
    with pytest.raises(LoadError, match=r"patients\.parquet: cannot be read as PARQUET"):
        load(folder, wh)
    assert wh.manifest()["version"] == version


def test_table_given_twice_is_an_error(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in")
    (folder / "tariff_ae.parquet").write_bytes(b"x")
    with pytest.raises(LoadError, match="table tariff_ae is given twice"):
        load(folder, Warehouse(tmp_path / "w"))


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with pytest.raises(LoadError, match="no input tables found"):
        load(tmp_path / "in", Warehouse(tmp_path / "w"))


def test_reference_to_absent_table_is_an_error(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in", tables=["apc_spells"])
    with pytest.raises(LoadError, match="refers to providers, which is neither"):
        load(folder, Warehouse(tmp_path / "w"))


def test_cli_error_has_no_stack_trace(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in")
    rows = [{k: v for k, v in r.items() if k != "provider_code"} for r in VALID["ae_attendances"]]
    write_table(folder, "ae_attendances", rows)
    proc = subprocess.run(
        [sys.executable, "-m", "pbc.cli", "load", str(folder), "--warehouse", str(tmp_path / "w")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "ae_attendances.csv" in proc.stderr and "provider_code" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


# ------------------------------------------------------------------ idempotence, appends
def test_loading_the_same_files_twice_changes_nothing(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in")
    wh = Warehouse(tmp_path / "w")
    load(folder, wh)
    before = snapshot(wh)
    report = load(folder, wh)
    assert not report.changed
    assert all(t.status == "unchanged" for t in report.tables)
    assert snapshot(wh) == before
    assert wh.manifest()["version"] == 1


def test_new_activity_file_appends_and_rejects_ids_already_loaded(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w")
    load(write_delivery(tmp_path / "m1"), wh)
    month2 = [dict(r) for r in VALID["apc_spells"][:2]]  # S1 again: already loaded
    month2.append({**VALID["apc_spells"][0], "spell_id": "S100", "discharge_date": "2025-06-02"})
    folder = tmp_path / "m2"
    write_table(folder, "apc_spells", month2)
    load(folder, wh)
    assert wh.query("SELECT count(*) FROM apc_spells")[0][0] == len(VALID["apc_spells"]) + 1
    reasons = [r[4] for r in quarantine(wh, "apc_spells")]
    assert len(reasons) == 2 and all("already loaded" in r for r in reasons)


def test_new_snapshot_replaces_reference_table(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w")
    load(write_delivery(tmp_path / "in"), wh)
    folder = tmp_path / "in2"
    write_table(folder, "providers", with_change("providers", 1, "mff_payment_index", "1.1"))
    load(folder, wh)
    assert wh.query("SELECT mff_payment_index FROM providers WHERE provider_code = 'RVW'") == [
        (1.1,)]
    assert wh.query("SELECT count(*) FROM providers")[0][0] == 2
    assert wh.query(
        "SELECT count(*) FROM reconciliation WHERE source_table = 'providers'")[0][0] == 1


# ------------------------------------------------------------------ atomicity
def test_failed_load_leaves_previous_warehouse_intact(tmp_path: Path, monkeypatch) -> None:
    wh = Warehouse(tmp_path / "w")
    load(write_delivery(tmp_path / "in"), wh)
    before = snapshot(wh)
    folder = tmp_path / "in2"
    write_table(folder, "apc_spells", [
        {**VALID["apc_spells"][0], "spell_id": f"N{i}"} for i in range(5)])
    write_table(folder, "ae_attendances", [
        {**VALID["ae_attendances"][0], "attendance_id": f"N{i}"} for i in range(5)])
    monkeypatch.setenv("PBC_TEST_FAIL_AFTER", "apc_spells")
    with pytest.raises(RuntimeError, match="simulated failure"):
        load(folder, wh)
    assert snapshot(wh) == before
    assert wh.query("SELECT count(*) FROM apc_spells")[0][0] == len(VALID["apc_spells"])
    assert not list((tmp_path / "w" / "versions").glob(".staging-*"))
    monkeypatch.delenv("PBC_TEST_FAIL_AFTER")
    load(folder, wh)  # and the next load works
    assert wh.query("SELECT count(*) FROM apc_spells")[0][0] == len(VALID["apc_spells"]) + 5


@pytest.mark.slow
def test_killed_load_leaves_previous_warehouse_readable(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w")
    load(write_delivery(tmp_path / "in"), wh)
    before = snapshot(wh)
    big = tmp_path / "big"
    rows = [{**VALID["op_attendances"][0], "attendance_id": f"B{i}"} for i in range(300_000)]
    write_table(big, "op_attendances", rows)
    for delay in (0.3, 1.0, 2.0):
        proc = subprocess.Popen(
            [sys.executable, "-m", "pbc.cli", "load", str(big), "--warehouse",
             str(tmp_path / "w")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        current = json.loads((wh.current / "manifest.json").read_text())  # type: ignore[operator]
        if current["version"] == 1:
            assert snapshot(wh) == before
            assert wh.query("SELECT count(*) FROM op_attendances")[0][0] == 5
        else:  # the load finished before the kill: it must be whole
            assert wh.query("SELECT count(*) FROM op_attendances")[0][0] == 300_005
            break
    report = load(big, wh)  # a later load cleans up and completes
    assert wh.query("SELECT count(*) FROM op_attendances")[0][0] == 300_005
    assert not list((tmp_path / "w" / "versions").glob(".staging-*")) or report


# ------------------------------------------------------------------ conservation, any input
cell = st.one_of(
    st.sampled_from(["", " ", "2025-05-03", "2025-02-30", "21", "11", "1", "2", "DZ65K", "RTR",
                     "ZZZ", "78", "-3", "200", "A81001", "J441", "x", "S1"]),
    st.text(alphabet="ABCZ019-/ ,", max_size=8),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.fixed_dictionaries({c: cell for c in VALID["apc_spells"][0]}), min_size=1,
                max_size=25))
def test_conservation_under_random_rows(tmp_path_factory, rows: list[dict[str, str]]) -> None:
    base = tmp_path_factory.mktemp("h")
    folder = write_delivery(base / "in", tables=["commissioners", "providers"])
    write_table(folder, "apc_spells", rows)
    wh = Warehouse(base / "w")
    report = load(folder, wh)
    apc = next(t for t in report.tables if t.table == "apc_spells")
    assert apc.rows_in == len(rows) == apc.rows_accepted + apc.rows_quarantined
    accepted = wh.query("SELECT count(*) FROM apc_spells")[0][0]
    q_rows = [r[1] for r in quarantine(wh, "apc_spells")]
    assert accepted == apc.rows_accepted
    assert len(q_rows) == len(set(q_rows)) == apc.rows_quarantined  # one reason per bad row
    assert all(1 <= r <= len(rows) for r in q_rows)
    assert all(r[4] for r in quarantine(wh, "apc_spells"))


# ------------------------------------------------------------------ reference files
def test_tariff_settings_are_kept_and_checked(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in", tables=["commissioners", "providers"])
    (folder / "tariff_settings.toml").write_text('financial_year = "2025/26"\n')
    wh = Warehouse(tmp_path / "w")
    load(folder, wh)
    kept = wh.reference_file("tariff_settings.toml")
    assert kept is not None and "2025/26" in kept.read_text()
    assert not load(folder, wh).changed
    (folder / "tariff_settings.toml").write_text("financial_year = \n")
    with pytest.raises(LoadError, match=r"tariff_settings\.toml: not a valid TOML file"):
        load(folder, wh)
    assert wh.reference_file("tariff_settings.toml").read_text() == (  # type: ignore[union-attr]
        'financial_year = "2025/26"\n')


# ------------------------------------------------------------------ issue 12: loader items
def _apc_rows(n: int) -> list[list[str]]:
    base = VALID["apc_spells"][0]
    return [[f"S{i}" if c == "spell_id" else base[c] for c in base] for i in range(1, n + 1)]


APC_HEADER = list(VALID["apc_spells"][0])


@pytest.mark.parametrize("name", ["financial_year", "month", "_source", "Financial_Year",
                                  "__f", "__row", "v__spell_id"])
def test_reserved_column_names_are_refused(tmp_path: Path, name: str) -> None:
    """Item 1: a column pbc derives (or uses inside) cannot come from the input."""
    wh = Warehouse(tmp_path / "w")
    load(write_delivery(tmp_path / "in"), wh)
    before = warehouse_state(wh)
    folder = tmp_path / "in2"
    write_table(folder, "apc_spells", [{**r, "spell_id": "N" + r["spell_id"], name: "2025/26"}
                                       for r in VALID["apc_spells"]])
    with pytest.raises(LoadError, match=rf"apc_spells\.csv: column '{name}' is reserved"):
        load(folder, wh)
    assert warehouse_state(wh) == before


def test_reserved_column_cannot_shadow_partitions_via_cli(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in")
    write_table(folder, "apc_spells", [{**r, "month": "May"} for r in VALID["apc_spells"]])
    proc = subprocess.run(
        [sys.executable, "-m", "pbc.cli", "load", str(folder), "--warehouse", str(tmp_path / "w")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stdout
    assert "column 'month' is reserved" in proc.stderr and "Traceback" not in proc.stderr


def test_csv_quarantine_rows_match_the_file_and_are_stable(tmp_path: Path) -> None:
    """Item 2: every quarantine row's (file, row, column, value) is the file's own."""
    rows = _apc_rows(60_000)
    bad = {7: "31/12/2025", 20_001: "2025-13-01", 45_000: "x", 59_999: "2025-02-30"}
    for r, value in bad.items():
        rows[r - 1][APC_HEADER.index("admission_date")] = value
    rows[3 - 1][APC_HEADER.index("primary_diagnosis")] = "J441"
    rows[30_000 - 1][APC_HEADER.index("top_up_category")] = "bad,\"quoted\"\nvalue"
    rows[50_000 - 1][APC_HEADER.index("spell_id")] = "S10"  # a repeat of row 10: the later
    rows[40_000 - 1].append("surplus")  # an unreadable row (one field too many)
    folder = write_delivery(tmp_path / "in", tables=["commissioners", "providers"])
    path = write_csv(folder / "apc_spells.csv", APC_HEADER, rows)
    records = read_records(path)
    seen = []
    for run in range(2):
        wh = Warehouse(tmp_path / f"w{run}")
        load(folder, wh)
        q = wh.query('SELECT source_file, row_number, "column", value, reason FROM quarantine '
                     "ORDER BY row_number")
        assert [r[1] for r in q] == [7, 20_001, 30_000, 40_000, 45_000, 50_000, 59_999]
        for source_file, row, column, value, reason in q:
            assert source_file == str(path)
            record = records[row - 1]
            if reason.startswith("unreadable row"):  # the value is the whole line
                fields = [record[c] for c in APC_HEADER] + record[None]  # type: ignore[index]
                assert value == ",".join(fields), (row, value)
            else:
                assert record[column] == value, (row, column, value)
        assert "first seen at row 10)" in q[5][4]
        seen.append(q)
        # the first copy of S10 is the one kept
        assert wh.query("SELECT count(*) FROM apc_spells WHERE spell_id = 'S10'") == [(1,)]
    assert seen[0] == seen[1]


def test_first_seen_is_first_in_delivery_order_across_parts(tmp_path: Path) -> None:
    """Item 2: parts are read in delivery order (folder by folder), and a repeat in a later
    part is the one quarantined: ``p/1.csv`` comes before ``p-1/1.csv``."""
    folder = write_delivery(tmp_path / "in", tables=["commissioners", "providers"])
    write_csv(folder / "apc_spells" / "p" / "1.csv", APC_HEADER, _apc_rows(3))
    later = write_csv(folder / "apc_spells" / "p-1" / "1.csv", APC_HEADER, _apc_rows(1))
    wh = Warehouse(tmp_path / "w")
    load(folder, wh)
    q = wh.query('SELECT source_file, row_number, "column" FROM quarantine')
    assert q == [(str(later), 1, "spell_id")]


def test_quoted_fields_late_in_a_csv_are_read(tmp_path: Path) -> None:
    """Item 5: the dialect is stated (RFC 4180), not sniffed from a sample."""
    header = list(VALID["prescribing"][0])
    rows = [["A81001", "2025-04", f"0206020A0AA{i:04d}", "Amlodipine 5mg tablets", "1", "1.00"]
            for i in range(30_000)]
    rows[25_000][3] = 'Co-codamol 30mg/500mg "effervescent", tablets'
    folder = write_delivery(tmp_path / "in", tables=["practices", "groups", "commissioners",
                                                      "local_authorities", "neighbourhoods"])
    write_csv(folder / "prescribing.csv", header, rows)
    wh = Warehouse(tmp_path / "w")
    report = load(folder, wh)
    p = next(t for t in report.tables if t.table == "prescribing")
    assert (p.rows_in, p.rows_accepted, p.rows_quarantined) == (30_000, 30_000, 0)
    assert wh.query("SELECT bnf_name FROM prescribing WHERE bnf_code = '0206020A0AA25000'") == [
        ('Co-codamol 30mg/500mg "effervescent", tablets',)]


def test_money_of_unreadable_rows_is_money_in(tmp_path: Path) -> None:
    """Item 5: a row that cannot be read still brought money: in = out + quarantined."""
    folder = write_delivery(tmp_path / "in")
    path = folder / "prescribing.csv"
    lines = path.read_text().splitlines()
    lines[1] += ",surplus"  # row 1 (1234.56): too many fields
    path.write_text("\n".join(lines) + "\n")
    wh = Warehouse(tmp_path / "w")
    load(folder, wh)
    money_in, money_out = wh.query("SELECT money_in, money_out FROM reconciliation "
                                   "WHERE source_table = 'prescribing'")[0]
    assert (str(money_in), str(money_out)) == ("1244.56", "10.00")


def test_rows_with_no_readable_amount_are_counted(tmp_path: Path) -> None:
    """Item 5: money that cannot be read is not guessed; the load says how many rows."""
    folder = write_delivery(tmp_path / "in")
    write_table(folder, "prescribing", with_change("prescribing", 0, "actual_cost", "abc"))
    report = load(folder, Warehouse(tmp_path / "w"))
    p = next(t for t in report.tables if t.table == "prescribing")
    assert (p.money_in, p.money_out, p.money_unknown_rows) == (
        Decimal("10.00"), Decimal("10.00"), 1)


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("items", "inf", "not a finite number"),
    ("items", "-inf", "not a finite number"),
    ("items", "nan", "not a finite number"),
    ("items", "1e30", "out of range (a whole number must be at most 9,007,199,254,740,991)"),
    ("actual_cost", "1e16", "out of range (an amount must be below 10,000,000,000,000)"),
    ("actual_cost", "9999999999999999.99",
     "out of range (an amount must be below 10,000,000,000,000)"),
    ("actual_cost", "1e300", "out of range (an amount must be below 10,000,000,000,000)"),
    ("actual_cost", "inf", "not a finite number"),
])
def test_out_of_range_numbers_are_quarantined(
    tmp_path: Path, column: str, value: str, reason: str
) -> None:
    """Item 12: a number no column can hold is a quarantined row, not a crash."""
    folder = write_delivery(tmp_path / "in")
    write_table(folder, "prescribing", with_change("prescribing", 1, column, value))
    wh = Warehouse(tmp_path / "w")
    load(folder, wh)
    assert quarantine(wh, "prescribing") == [("prescribing", 2, column, value, reason)]
    assert wh.query("SELECT sum(actual_cost) FROM prescribing")[0][0] == Decimal("1234.56")


def test_parquet_midnight_timestamps_are_dates(tmp_path: Path) -> None:
    """Item 14: pandas writes dates as TIMESTAMP at midnight; they are the dates."""
    import duckdb

    folder = write_delivery(tmp_path / "in")
    (folder / "apc_spells.csv").unlink()
    src = tmp_path / "apc.csv"
    write_table(tmp_path, "apc", with_change("apc_spells", 3, "discharge_date", "2025-05-10"))
    duckdb.sql(
        f"COPY (SELECT * REPLACE (CAST(admission_date AS TIMESTAMP) AS admission_date, "
        f"CASE WHEN spell_id = 'S5' THEN TIMESTAMP '2025-05-09 13:30:00' ELSE "
        f"CAST(discharge_date AS TIMESTAMP_NS) END AS discharge_date) "
        f"FROM read_csv('{src}', all_varchar = true)) TO '{folder / 'apc_spells.parquet'}'")
    wh = Warehouse(tmp_path / "w")
    load(folder, wh)
    assert quarantine(wh, "apc_spells") == [
        ("apc_spells", 5, "discharge_date", "2025-05-09 13:30:00",
         "not a valid date (expected YYYY-MM-DD; this timestamp has a time of day)")]
    assert wh.query("SELECT admission_date, discharge_date FROM apc_spells "
                    "WHERE spell_id = 'S4'") == [(date(2025, 5, 3), date(2025, 5, 10))]


@pytest.mark.parametrize(("table", "row", "column", "value", "reason"), [
    ("apc_spells", 2, "admission_date", "1901-01-01",
     "length of stay 45,419 days is longer than 3,653 (admission_date to discharge_date)"),
    ("ae_attendances", 2, "arrival_date", "2040-12-24",
     "arrival_date 2040-12-24 is more than 5 years from the file's main financial year "
     "2025-26"),
    ("prescribing", 1, "year_month", "0000-01", "month out of range (1900-01 to 2100-12)"),
    ("prescribing", 1, "year_month", "9999-12", "month out of range (1900-01 to 2100-12)"),
    ("prescribing", 1, "year_month", "2012-05",
     "year_month 2012-05 is more than 5 years from the file's main financial year 2025-26"),
])
def test_implausible_values_are_quarantined(
    tmp_path: Path, table: str, row: int, column: str, value: str, reason: str
) -> None:
    """Item 13: implausible dates and months are quarantined and never priced."""
    folder = write_delivery(tmp_path / "in")
    rows = with_change(table, row, column, value)
    if table == "prescribing":  # three rows, so the file has a main year
        rows.append({**rows[0], "bnf_code": "0206020A0AAABAB"})
    write_table(folder, table, rows)
    wh = Warehouse(tmp_path / "w")
    load(folder, wh)
    assert quarantine(wh, table) == [(table, row + 1, column, value, reason)]


def test_redelivered_prescribing_is_not_loaded_twice(tmp_path: Path) -> None:
    """Item 4: the same rows with other bytes (LF, not CRLF) or in a year-to-date file are
    already loaded: quarantined, the money counted once."""
    header = list(VALID["prescribing"][0])
    april = [[r[c] for c in header] for r in VALID["prescribing"]]
    wh = Warehouse(tmp_path / "w")
    load(write_delivery(tmp_path / "in"), wh)
    total = wh.query("SELECT sum(actual_cost) FROM prescribing")[0][0]
    assert total == Decimal("1244.56")
    # write_table writes CRLF line endings (csv's default); the same rows with LF
    lf = write_csv(tmp_path / "lf" / "prescribing.csv", header, april, newline="\n")
    assert lf.read_bytes() != (tmp_path / "in" / "prescribing.csv").read_bytes()
    load(lf.parent, wh)
    assert wh.query("SELECT sum(actual_cost) FROM prescribing")[0][0] == total
    june = ["A81001", "2025-06", "0206020A0AAAAAA", "Amlodipine 5mg tablets", "400", "1200.00"]
    ytd = write_csv(tmp_path / "ytd" / "prescribing.csv", header, [*april, june])
    load(ytd.parent, wh)
    assert wh.query("SELECT sum(actual_cost) FROM prescribing")[0][0] == total + Decimal("1200")
    reasons = [r[4] for r in quarantine(wh, "prescribing") if r[1] == 1]
    assert reasons and all("(practice_code, year_month, bnf_code) already loaded" in r
                           for r in reasons)


def test_repeated_natural_key_in_one_file_is_a_duplicate(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in")
    rows = [dict(r) for r in VALID["prescribing"]]
    rows.append(dict(rows[0]))  # practice A81001, 2025-04, same BNF code
    rows.append(dict(rows[1]))  # blank practice: not identifiable, kept
    write_table(folder, "prescribing", rows)
    wh = Warehouse(tmp_path / "w")
    load(folder, wh)
    assert [r[1:] for r in quarantine(wh, "prescribing")] == [
        (3, "practice_code", "A81001",
         "duplicate (practice_code, year_month, bnf_code) (first seen at row 1)")]


def test_empty_reference_file_does_not_empty_the_table(tmp_path: Path) -> None:
    """Item 6: a header-only or much smaller snapshot is refused without --allow-shrink."""
    wh = Warehouse(tmp_path / "w")
    load(write_delivery(tmp_path / "in"), wh)
    before = warehouse_state(wh)
    empty = tmp_path / "empty"
    write_csv(empty / "practices.csv", list(VALID["practices"][0]), [])
    with pytest.raises(LoadError, match=r"practices\.csv: would replace practices \(2 rows\) "
                       r"with 0 rows; .*--allow-shrink"):
        load(empty, wh)
    assert warehouse_state(wh) == before
    few = tmp_path / "few"
    write_table(few, "patients", VALID["patients"][:3])
    with pytest.raises(LoadError, match=r"would replace patients \(8 rows\) with 3 rows"):
        load(few, wh)
    assert warehouse_state(wh) == before
    load(few, wh, allow_shrink=True)
    assert wh.query("SELECT count(*) FROM patients") == [(3,)]


def test_disk_full_is_one_clear_error_and_the_warehouse_is_intact(
    tmp_path: Path, monkeypatch
) -> None:
    """Item 15: ENOSPC while writing says so, and nothing stored changes."""
    import errno

    from pbc.warehouse.store import Transaction

    wh = Warehouse(tmp_path / "w")
    load(write_delivery(tmp_path / "in"), wh)
    before = warehouse_state(wh)
    folder = tmp_path / "in2"
    write_table(folder, "apc_spells", [{**r, "spell_id": "N" + r["spell_id"]}
                                       for r in VALID["apc_spells"]])

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Transaction, "write", full)
    with pytest.raises(LoadError, match=r"cannot write the warehouse .*: No space left on "
                       r"device; the warehouse is unchanged"):
        load(folder, wh)
    monkeypatch.undo()
    assert warehouse_state(wh) == before


def test_warehouse_path_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "w").write_text("not a folder")
    with pytest.raises(LoadError, match=r"w: the warehouse path is a file, not a folder"):
        load(write_delivery(tmp_path / "in"), Warehouse(tmp_path / "w"))


def test_non_utf8_settings_file_names_the_file(tmp_path: Path) -> None:
    from pbc.pricing.settings import SettingsError, load_settings

    folder = write_delivery(tmp_path / "in", tables=["commissioners", "providers"])
    (folder / "tariff_settings.toml").write_bytes('financial_year = "2025/26" # £\n'
                                                  .encode("latin-1"))
    with pytest.raises(LoadError, match=r"tariff_settings\.toml: not UTF-8 text"):
        load(folder, Warehouse(tmp_path / "w"))
    with pytest.raises(SettingsError, match=r"tariff_settings\.toml: not UTF-8 text"):
        load_settings(folder / "tariff_settings.toml")


def test_a_10mb_field_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    folder = write_delivery(tmp_path / "in")
    write_table(folder, "ae_attendances", with_change("ae_attendances", 2, "hrg_code",
                                                      "x" * 10_000_000))
    wh = Warehouse(tmp_path / "w")
    load(folder, wh)
    (row, reason), = [(r[1], r[4]) for r in quarantine(wh, "ae_attendances")]
    assert row == 3
    assert "longer than 2,000,000 bytes" in reason


def test_blank_lines_keep_the_row_numbers_of_the_file(tmp_path: Path) -> None:
    """Item 2: a blank line is no row, but it is a line: the rows after it keep their own
    numbers (DuckDB skips it; its rejected rows' numbers count it)."""
    folder = write_delivery(tmp_path / "in")
    path = write_table(folder, "ae_attendances",
                       with_change("ae_attendances", 3, "department_type", "9"))
    lines = path.read_bytes().split(b"\r\n")
    lines.insert(2, b"")  # a blank line after data row 1
    lines[4] += b",surplus"  # file data row 4 (after the blank line): unreadable
    path.write_bytes(b"\r\n".join(lines))
    wh = Warehouse(tmp_path / "w")
    load(folder, wh)
    with open(path, newline="", encoding="utf-8") as f:
        records = list(csv.reader(f))[1:]  # csv.reader keeps blank lines as []
    q = quarantine(wh, "ae_attendances")
    assert [(r[1], r[2]) for r in q] == [(4, None), (5, "department_type")]
    assert records[5 - 1][6] == "9"
