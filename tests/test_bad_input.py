"""The bad-input suite: each kind of bad input, what ``pbc load`` does, and its message.

Every case runs the ``pbc load`` command on a warehouse already holding the valid delivery
(tests/delivery.py) and asserts: the exit code; the message naming the file (and row and
column where there is one), or the quarantine row's file, row, column and value; and that
nothing stored was lost or changed (a refused load: the same version, the same rows; a load
that quarantines: every row stored before is still stored, unchanged). docs/bad-input.md is
the same list, for users.
"""

from __future__ import annotations

import errno
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from delivery import (
    VALID,
    warehouse_state,
    write_csv,
    write_delivery,
    write_table,
)
from pbc.cli import app
from pbc.warehouse import Warehouse


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse holding the valid delivery (copied for each case)."""
    from pbc.warehouse.load import load

    root = tmp_path_factory.mktemp("base")
    load(write_delivery(root / "in"), Warehouse(root / "w"))
    return root / "w"


def run_load(folder: Path, warehouse: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["load", str(folder), "--warehouse", str(warehouse),
                                      *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception)
    return result.exit_code, " ".join((result.stderr or "").split())


# ------------------------------------------------------------------ new rows with one fault
def _new_rows(table: str) -> list[dict[str, str]]:
    """Rows of ``table`` not yet loaded (new ids; prescribing: a new month)."""
    rows = [dict(r) for r in VALID[table]]
    for r in rows:
        for col in ("spell_id", "attendance_id", "package_id"):
            if col in r:
                r[col] = "N" + r[col]
        if table == "prescribing":
            r["year_month"] = "2025-07"
    return rows


@dataclass(frozen=True)
class Row:
    """A delivery of new activity with one bad row; its expected quarantine entry."""

    kind: str
    table: str
    row: int  # 1-based data row of the bad row
    column: str
    value: str  # as written to the file; the quarantine value unless ``shown`` is given
    reason: str
    shown: str | None = None
    raw: Callable[[Path], None] | None = None  # rewrites the file's bytes


def _append_line(row: int, suffix: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        lines = path.read_bytes().split(b"\r\n")
        lines[row] += suffix.encode()
        path.write_bytes(b"\r\n".join(lines))
    return edit


def _cut_line(row: int) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        lines = path.read_bytes().split(b"\r\n")
        lines[row] = lines[row].rsplit(b",", 1)[0]
        path.write_bytes(b"\r\n".join(lines))
    return edit


def _replace_in_line(row: int, old: bytes, new: bytes) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        lines = path.read_bytes().split(b"\r\n")
        lines[row] = lines[row].replace(old, new, 1)
        path.write_bytes(b"\r\n".join(lines))
    return edit


ROW_CASES = [
    Row("date not YYYY-MM-DD", "apc_spells", 2, "admission_date", "03/05/2025",
        "not a valid date (expected YYYY-MM-DD)"),
    Row("impossible date", "apc_spells", 2, "admission_date", "2025-02-30",
        "not a valid date (expected YYYY-MM-DD)"),
    Row("date with a time of day", "ae_attendances", 1, "arrival_date", "2025-12-24 13:00:00",
        "not a valid date (expected YYYY-MM-DD; this timestamp has a time of day)"),
    Row("date out of range", "apc_spells", 2, "discharge_date", "1850-01-01",
        "date out of range (1900-01-01 to 2100-12-31)"),
    Row("discharge before admission", "apc_spells", 2, "discharge_date", "2025-05-01",
        "discharge_date is before admission_date"),
    Row("implausible length of stay", "apc_spells", 2, "admission_date", "1901-01-01",
        "length of stay 45,419 days is longer than 3,653 (admission_date to discharge_date)"),
    Row("activity date far from the file's year", "op_attendances", 2, "appointment_date",
        "2040-06-17", "appointment_date 2040-06-17 is more than 5 years from the file's main "
        "financial year 2025-26"),
    Row("month out of range", "prescribing", 1, "year_month", "9999-12",
        "month out of range (1900-01 to 2100-12)"),
    Row("not a month", "prescribing", 1, "year_month", "2025-13",
        "not a month (expected YYYY-MM)"),
    Row("blank required value", "ae_attendances", 3, "patient_id", "",
        "missing value (required)"),
    Row("repeated id in the file", "apc_spells", 2, "spell_id", "NS1",
        "duplicate spell_id (first seen at row 1)"),
    Row("unknown provider", "apc_spells", 2, "provider_code", "ZZZ",
        "unknown provider_code 'ZZZ' (not in providers)"),
    Row("code not allowed", "apc_spells", 2, "admission_method", "99",
        "not an allowed code (11, 12, 13, 21, 22, 23, 24, 25, 2A, 2B, 2C, 2D, 28, 31, 32, 81, "
        "82, 83)"),
    Row("code of the wrong format", "apc_spells", 2, "hrg_code", "12345",
        "does not match the code format ^[A-Z]{2}[0-9]{2}[A-Z0-9]{0,3}$"),
    Row("not a whole number", "apc_spells", 2, "age_on_admission", "sixty",
        "not a whole number"),
    Row("number above the maximum", "apc_spells", 2, "age_on_admission", "130",
        "above the maximum 120"),
    Row("not true/false", "op_attendances", 1, "attended", "maybe", "not true/false"),
    Row("infinite number", "prescribing", 1, "items", "inf", "not a finite number"),
    Row("not-a-number", "prescribing", 1, "items", "NaN", "not a finite number"),
    Row("whole number too large", "prescribing", 1, "items", "1e30",
        "out of range (a whole number must be at most 9,007,199,254,740,991)"),
    Row("amount too large", "prescribing", 1, "actual_cost", "9999999999999999.99",
        "out of range (an amount must be below 10,000,000,000,000)"),
    Row("amount with fractions of a penny", "prescribing", 1, "actual_cost", "12.345",
        "not an amount in pounds with at most 2 decimals"),
    Row("negative amount", "social_care_packages", 1, "weekly_cost", "-5.00",
        "below the minimum 0"),
    Row("too many fields", "ae_attendances", 2, "", "", "unreadable row: too many columns",
        raw=_append_line(2, ",surplus")),
    Row("too few fields", "ae_attendances", 4, "hrg_code", "",
        "unreadable row: missing columns", raw=_cut_line(4)),
    Row("unterminated quote", "ae_attendances", 5, "", "", "unreadable row: unquoted value",
        raw=_replace_in_line(5, b",VB07Z", b',"VB07Z')),
    Row("row not UTF-8", "ae_attendances", 3, "", "", "unreadable row: invalid encoding",
        raw=_replace_in_line(3, b"RTR", b"R\xff\xfeR")),
    Row("10 MB field", "ae_attendances", 3, "", "",
        "unreadable row: line longer than 2,000,000 bytes", raw=_replace_in_line(
            3, b"VB07Z", b"x" * 10_000_000)),
]


@pytest.mark.parametrize("case", ROW_CASES, ids=[c.kind for c in ROW_CASES])
def test_bad_row_is_quarantined(base: Path, tmp_path: Path, case: Row) -> None:
    wh_dir = tmp_path / "w"
    shutil.copytree(base, wh_dir, symlinks=True)
    wh = Warehouse(wh_dir)
    version, before = warehouse_state(wh)
    rows = _new_rows(case.table)
    if case.raw is None:
        rows[case.row - 1][case.column] = case.value
    path = write_table(tmp_path / "in", case.table, rows)
    if case.raw is not None:
        case.raw(path)
    code, message = run_load(path.parent, wh_dir)
    assert code == 0, message
    q = wh.query('SELECT source_file, row_number, "column", value, reason FROM quarantine '
                 f"WHERE source_table = '{case.table}'")
    assert len(q) == 1, q
    source_file, row, column, value, reason = q[0]
    assert (source_file, row) == (str(path), case.row)
    if case.raw is None:  # a rule broken: the cell
        assert (column, value or "", reason) == (case.column, case.value, case.reason)
    else:  # an unreadable row: the line as the file has it (its first 1,000 characters)
        assert reason.startswith(case.reason), reason
        line = path.read_bytes().split(b"\r\n")[case.row].decode("utf-8", "replace")
        line = line.replace("\ufffd", "?")  # as DuckDB shows a byte that is not UTF-8
        assert value[:200] == line[:200]
        assert len(value) <= 1003
    new_version, after = warehouse_state(wh)
    assert new_version == version + 1
    for table, stored in before.items():  # nothing stored before is lost or changed
        if table == "reconciliation":
            continue
        assert not Counter(stored) - Counter(after[table]), table
    accepted = wh.query(f"SELECT count(*) FROM {case.table}")[0][0]
    assert accepted == len(before[case.table]) + len(rows) - 1


def test_redelivered_rows_without_an_id_are_quarantined(base: Path, tmp_path: Path) -> None:
    """Prescribing re-delivered with other bytes (LF line endings): already loaded."""
    wh_dir = tmp_path / "w"
    shutil.copytree(base, wh_dir, symlinks=True)
    wh = Warehouse(wh_dir)
    header = list(VALID["prescribing"][0])
    path = write_csv(tmp_path / "in" / "prescribing.csv", header,
                     [[r[c] for c in header] for r in VALID["prescribing"]], newline="\n")
    _, before = warehouse_state(wh)
    code, _ = run_load(path.parent, wh_dir)
    assert code == 0
    q = wh.query('SELECT row_number, "column", value, reason FROM quarantine '
                 "WHERE source_table = 'prescribing' ORDER BY 1")
    assert [r[:3] for r in q] == [(1, "practice_code", "A81001"), (2, "practice_code", None)]
    assert all("(practice_code, year_month, bnf_code) already loaded" in r[3] for r in q)
    assert sorted(wh.query("SELECT * FROM prescribing"), key=repr) == before["prescribing"]


# ------------------------------------------------------------------ deliveries refused whole
@dataclass(frozen=True)
class Refused:
    kind: str
    message: str  # a regular expression the one-line message matches
    make: Callable[[Path], Path]  # writes the delivery under the given folder; its folder
    fresh: bool = False  # against an empty warehouse rather than the loaded one


def _csv(table: str, rows: list[dict[str, str]]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        write_table(folder, table, rows)
        return folder
    return make


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        return folder
    return make


def _with_column(table: str, name: str, value: str = "x") -> list[dict[str, str]]:
    return [{**r, name: value} for r in _new_rows(table)]


def _parts_differ(folder: Path) -> Path:
    rows = _new_rows("ae_attendances")
    write_csv(folder / "ae_attendances" / "a.csv", list(rows[0]), [list(rows[0].values())])
    other = {k: v for k, v in rows[1].items() if k != "hrg_code"}
    write_csv(folder / "ae_attendances" / "b.csv", list(other), [list(other.values())])
    return folder


def _twice(folder: Path) -> Path:
    write_table(folder, "tariff_ae", VALID["tariff_ae"])
    (folder / "tariff_ae.parquet").write_bytes(b"PAR1")
    return folder


def _empty_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not a table")
    return folder


def _parquet_reserved(folder: Path) -> Path:
    folder.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT 'NS1' AS spell_id, '2025-26' AS financial_year) TO "
               f"'{folder / 'apc_spells.parquet'}'")
    return folder


REFUSED = [
    Refused("required column missing",
            r"apc_spells\.csv: missing required column 'admission_date' for table apc_spells",
            _csv("apc_spells", [{k: v for k, v in r.items() if k != "admission_date"}
                                for r in _new_rows("apc_spells")])),
    Refused("required column in the wrong case",
            r"apc_spells\.csv: missing required column 'spell_id' .*\(found 'Spell_ID': names "
            r"are case-sensitive\)",
            _csv("apc_spells", [{("Spell_ID" if k == "spell_id" else k): v for k, v in r.items()}
                                for r in _new_rows("apc_spells")])),
    Refused("column financial_year (pbc's own)",
            r"apc_spells\.csv: column 'financial_year' is reserved",
            _csv("apc_spells", _with_column("apc_spells", "financial_year", "2025/26"))),
    Refused("column month (pbc's own)", r"ae_attendances\.csv: column 'month' is reserved",
            _csv("ae_attendances", _with_column("ae_attendances", "month", "May"))),
    Refused("column _source (pbc's own)",
            r"prescribing\.csv: column '_source' is reserved",
            _csv("prescribing", _with_column("prescribing", "_source"))),
    Refused("column _load_version (pbc's provenance)",
            r"apc_spells\.csv: column '_load_version' is reserved",
            _csv("apc_spells", _with_column("apc_spells", "_load_version", "3"))),
    Refused("column _delivery (pbc's provenance)",
            r"op_attendances\.csv: column '_delivery' is reserved",
            _csv("op_attendances", _with_column("op_attendances", "_delivery", "2025-11"))),
    Refused("a reference table in revisions/",
            r"revisions/practices\.csv: only activity tables with a key can be revised .* "
            r"practices cannot be",
            lambda folder: _csv("practices", [dict(r) for r in VALID["practices"]])(
                folder / "revisions").parent),
    Refused("column __f (loader's own)", r"apc_spells\.csv: column '__f' is reserved",
            _csv("apc_spells", _with_column("apc_spells", "__f"))),
    Refused("reserved column in Parquet",
            r"apc_spells\.parquet: column 'financial_year' is reserved", _parquet_reserved),
    Refused("column differing from the contract's only in case",
            r"apc_spells\.csv: column 'HRG_code' differs from the contract's 'hrg_code' only "
            "in case", _csv("apc_spells", _with_column("apc_spells", "HRG_code"))),
    Refused("column named twice",
            r"ae_attendances\.csv, row 0 \(header\): column 'hrg_code' appears twice",
            _bytes("ae_attendances.csv",
                   b"attendance_id,patient_id,practice_code,provider_code,arrival_date,"
                   b"department_type,hrg_code,hrg_code\r\n")),
    Refused("empty file", r"ae_attendances\.csv: empty file \(no header row\)",
            _bytes("ae_attendances.csv", b"")),
    Refused("header column without a name",
            r"ae_attendances\.csv, row 0 \(header\): column 3 has no name",
            _bytes("ae_attendances.csv", b"attendance_id,patient_id,,provider_code\r\n")),
    Refused("header not UTF-8", r"ae_attendances\.csv, row 0 \(header\): not UTF-8 text",
            _bytes("ae_attendances.csv", b"attendance_id,patient_id\xa3\r\n")),
    Refused("parts with different columns",
            r"b\.csv: its columns differ from those of .*a\.csv", _parts_differ),
    Refused("not a Parquet file", r"apc_spells\.parquet: cannot be read as PARQUET",
            _bytes("apc_spells.parquet", b"this is not parquet")),
    Refused("table given twice", r"table tariff_ae is given twice", _twice),
    Refused("no table in the folder", r"no input tables found", _empty_folder),
    Refused("empty reference file",
            r"practices\.csv: would replace practices \(2 rows\) with 0 rows; .*"
            "--allow-shrink", _bytes("practices.csv", b"practice_code,practice_name,"
                                     b"group_code,commissioner_code\r\n")),
    Refused("reference file with under half the rows",
            r"patients\.csv: would replace patients \(8 rows\) with 3 rows",
            _csv("patients", VALID["patients"][:3])),
    Refused("settings not UTF-8", r"tariff_settings\.toml: not UTF-8 text \(byte 0xa3",
            _bytes("tariff_settings.toml", b'financial_year = "2025/26" # \xa3\n')),
    Refused("settings not TOML", r"tariff_settings\.toml: not a valid TOML file",
            _bytes("tariff_settings.toml", b"financial_year = \n")),
    Refused("settings with an unknown key", r"tariff_settings\.toml: .*not_a_setting",
            _bytes("tariff_settings.toml", b"not_a_setting = 1\n")),
    Refused("reference to a table not delivered",
            r"apc_spells\.csv: table apc_spells refers to providers, which is neither in this "
            "delivery nor in the warehouse", _csv("apc_spells", _new_rows("apc_spells")),
            fresh=True),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c.kind for c in REFUSED])
def test_bad_delivery_is_refused_and_nothing_changes(
    base: Path, tmp_path: Path, case: Refused
) -> None:
    wh_dir = tmp_path / "w"
    if not case.fresh:
        shutil.copytree(base, wh_dir, symlinks=True)
    wh = Warehouse(wh_dir)
    before = warehouse_state(wh)
    folder = case.make(tmp_path / "in")
    code, message = run_load(folder, wh_dir)
    assert code == 2
    assert message.startswith("error: ") and "Traceback" not in message
    assert re.search(case.message, message), message
    assert warehouse_state(wh) == before


def test_shrink_is_allowed_when_asked(base: Path, tmp_path: Path) -> None:
    wh_dir = tmp_path / "w"
    shutil.copytree(base, wh_dir, symlinks=True)
    folder = _csv("patients", VALID["patients"][:3])(tmp_path / "in")
    code, _ = run_load(folder, wh_dir, "--allow-shrink")
    assert code == 0
    assert Warehouse(wh_dir).query("SELECT count(*) FROM patients") == [(3,)]


# ------------------------------------------------------------------ the warehouse itself
@pytest.mark.parametrize(("name", "message"), [
    ("it's", r"the warehouse path contains ', which pbc cannot use"),
    ("w[1]", r"the warehouse path contains \[ \], which pbc cannot use"),
])
def test_unusable_warehouse_path_is_refused(tmp_path: Path, name: str, message: str) -> None:
    code, text = run_load(write_delivery(tmp_path / "in"), tmp_path / name)
    assert code == 2 and re.search(message, text), text
    assert not (tmp_path / name).exists()


def test_warehouse_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "w").write_text("a file")
    code, text = run_load(write_delivery(tmp_path / "in"), tmp_path / "w")
    assert code == 2 and "the warehouse path is a file, not a folder" in text, text
    assert (tmp_path / "w").read_text() == "a file"


def test_disk_full(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pbc.warehouse.store import Transaction

    wh_dir = tmp_path / "w"
    shutil.copytree(base, wh_dir, symlinks=True)
    wh = Warehouse(wh_dir)
    before = warehouse_state(wh)
    folder = _csv("apc_spells", _new_rows("apc_spells"))(tmp_path / "in")

    def full(*args: object, **kwargs: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Transaction, "write", full)
    code, text = run_load(folder, wh_dir)
    monkeypatch.undo()
    assert code == 2
    assert "cannot write the warehouse" in text and "No space left on device" in text
    assert "the warehouse is unchanged (version 1)" in text
    assert warehouse_state(wh) == before
