"""Loading in bounded memory (issue 17, item 1): a big table is validated in pieces.

The single-row checks stream into a work file; the key check runs bucket by bucket (a
key's rows all fall in one bucket); the outputs stream from the work file. So memory is
bounded by a piece (a Parquet row group, a bucket of keys), not by the table.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delivery import VALID, write_delivery
from pbc.warehouse import Warehouse, store
from pbc.warehouse import load as load_module
from pbc.warehouse.load import load

REFERENCE_TABLES = ["commissioners", "groups", "local_authorities", "neighbourhoods",
                    "practices", "providers", "patients"]


def _attendances_parquet(folder: Path, rows: int, parts: int) -> Path:
    """``op_attendances`` as a folder of Parquet parts: valid rows over a financial year."""
    target = folder / "op_attendances"
    target.mkdir(parents=True)
    con = duckdb.connect()
    for part in range(parts):
        lo, hi = part * rows // parts, (part + 1) * rows // parts
        con.execute(f"""
            COPY (SELECT 'O' || lpad(CAST(i AS VARCHAR), 10, '0') AS attendance_id,
                         'P' || (i % 8 + 1) AS patient_id,
                         CASE WHEN i % 2 = 0 THEN 'A81001' ELSE 'A81002' END AS practice_code,
                         'QHM' AS commissioner_code, 'RVW' AS provider_code,
                         CAST(DATE '2025-04-01' + CAST(i % 365 AS INTEGER) AS VARCHAR)
                             AS appointment_date,
                         '110' AS treatment_function_code, '1' AS first_attendance,
                         'true' AS attended, '03' AS referral_source, '' AS hrg_code
                  FROM range({lo}, {hi}) t(i))
            TO '{target}/part-{part}.parquet' (FORMAT parquet)""")
    con.close()
    return folder


def test_a_table_larger_than_the_memory_limit_loads_without_spilling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """240,000 attendances under a 96 MB DuckDB limit, one thread, and (almost) no room to
    spill: the old loader's full-width temporary copies ran out of memory here; the
    streaming loader needs a row group and a bucket of keys at a time."""
    wh = Warehouse(tmp_path / "w")
    load(write_delivery(tmp_path / "ref", tables=REFERENCE_TABLES), wh)
    folder = _attendances_parquet(tmp_path / "in", 240_000, parts=2)

    plain = store.quiet_connection

    def tight() -> duckdb.DuckDBPyConnection:
        con = plain()
        con.execute("SET max_temp_directory_size = '1MB'")
        con.execute("SET threads = 1")
        return con

    monkeypatch.setattr(store, "quiet_connection", tight)
    monkeypatch.setattr(load_module, "KEY_BUCKET_ROWS", 50_000)
    monkeypatch.setenv("PBC_MEMORY_LIMIT", "96MB")
    report = load(folder, wh)
    monkeypatch.undo()

    (op,) = [t for t in report.tables if t.table == "op_attendances"]
    assert (op.rows_in, op.rows_accepted, op.rows_quarantined) == (240_000, 240_000, 0)
    months = wh.query("SELECT financial_year, month, count(*) FROM op_attendances "
                      "GROUP BY ALL ORDER BY 2")
    assert [(fy, m) for fy, m, _ in months] == [("2025-26", m) for m in range(1, 13)]
    assert sum(n for _, _, n in months) == 240_000
    assert not list(wh.root.glob("versions/*/.work-*"))  # the work folder is gone


@pytest.fixture(scope="module")
def reference_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse holding the reference tables only (copied by each example)."""
    root = tmp_path_factory.mktemp("ref")
    load(write_delivery(root / "in", tables=REFERENCE_TABLES), Warehouse(root / "w"))
    return root / "w"


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ids=st.lists(st.integers(0, 14), min_size=1, max_size=24),
    split=st.integers(0, 24),
    stored=st.sets(st.integers(0, 14), max_size=4),
    bucket_rows=st.sampled_from([1, 2, 5, 1000]),
)
def test_duplicates_are_found_across_files_buckets_and_loads(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
    reference_warehouse: Path, ids: list[int], split: int, stored: set[int], bucket_rows: int,
) -> None:
    """Attendance ids (with repeats) split over two files, checked in buckets of
    ``bucket_rows`` keys, after an earlier load of the ids in ``stored``: every repeat after
    the first (in file, then row order) is a duplicate naming the first, every id stored
    before is already loaded, and the rest are accepted; rows in = accepted + quarantined."""
    tmp = tmp_path_factory.mktemp("dup")
    monkeypatch.setattr(load_module, "KEY_BUCKET_ROWS", bucket_rows)
    shutil.copytree(reference_warehouse, tmp / "w", symlinks=True)
    wh = Warehouse(tmp / "w")
    template = VALID["op_attendances"][0]
    if stored:
        first = tmp / "first" / "op_attendances"
        first.mkdir(parents=True)
        _write_rows(first / "a.csv", template, sorted(stored))
        load(first.parent, wh)
    folder = tmp / "in" / "op_attendances"
    folder.mkdir(parents=True)
    cut = min(split, len(ids))
    files = [("a.csv", ids[:cut]), ("b.csv", ids[cut:])]
    for name, part in files:
        _write_rows(folder / name, template, part)

    expected: dict[tuple[str, int], str] = {}
    seen: dict[int, tuple[str, int]] = {}
    for name, part in files:
        for row, i in enumerate(part, 1):
            if i in seen:
                f0, r0 = seen[i]
                where = "" if f0 == name else f" of {folder / f0}"
                expected[(name, row)] = f"duplicate attendance_id (first seen at row {r0}{where})"
            else:
                seen[i] = (name, row)
                if i in stored:
                    expected[(name, row)] = "attendance_id already loaded"
    report = load(folder.parent, wh)

    (op,) = [t for t in report.tables if t.table == "op_attendances"]
    assert op.rows_in == len(ids) == op.rows_accepted + op.rows_quarantined
    got = {(Path(f).name, r): reason for f, r, reason in wh.query(
        "SELECT source_file, row_number, reason FROM quarantine "
        "WHERE source_table = 'op_attendances' AND source_file LIKE ?",
        [f"{folder}%"])}
    assert {k: r.split(" (from an earlier")[0] for k, r in got.items()} == expected
    accepted = {r[0] for r in wh.query(
        "SELECT attendance_id FROM op_attendances WHERE _delivery = 'in'")}
    assert accepted == {f"O{i}" for i in set(ids) - stored}


def _write_rows(path: Path, template: dict[str, str], ids: list[int]) -> None:
    header = list(template)
    lines = [",".join(header)]
    for i in ids:
        lines.append(",".join(f"O{i}" if h == "attendance_id" else template[h] for h in header))
    path.write_text("\n".join(lines) + "\n")
