"""The warehouse's two Parquet writers (DuckDB ``COPY`` and the streamed Arrow writer) make
the same table: hive directories, partition columns kept in the files, every row once."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.store import KEY_PREFIX

SCHEMA = pa.schema([
    ("activity_id", pa.string()), ("financial_year", pa.string()), ("month", pa.int64()),
    ("activity_date", pa.date32()), ("price", pa.decimal128(18, 2)), ("attributed", pa.bool_()),
])


def _batches(rows: list[dict], size: int = 7) -> pa.RecordBatchReader:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return pa.RecordBatchReader.from_batches(SCHEMA, table.to_batches(max_chunksize=size))


def _row(i: int, fy: str = "2025-26", month: int = 1, price: str | None = "1.23") -> dict:
    return {"activity_id": f"A{i:06d}", "financial_year": fy, "month": month,
            "activity_date": dt.date(2025, 4, 1) + dt.timedelta(days=i % 300),
            "price": None if price is None else Decimal(price), "attributed": i % 3 != 0}


def _write_both(wh: Warehouse, rows: list[dict]) -> tuple[int, int]:
    with wh.begin("test") as tx:
        con = tx.connect()
        con.register("src", pa.Table.from_pylist(rows, schema=SCHEMA))
        n_copy = tx.write(con, "by_copy", "SELECT * FROM src", file_prefix="c",
                          partition_by=("financial_year", "month"))
        n_arrow = tx.write_batches("by_arrow", _batches(rows), file_prefix="a",
                                   partition_by=("financial_year", "month"),
                                   unique_columns=("activity_id",))
        con.close()
    return n_copy, n_arrow


def test_arrow_writer_makes_the_same_table_as_copy(tmp_path: Path) -> None:
    rows = [_row(i, fy=("2025-26", "2026-27")[i % 2], month=1 + (i // 2) % 12,
                 price=None if i % 5 == 0 else f"{i}.{i % 100:02d}") for i in range(200)]
    wh = Warehouse(tmp_path / "wh")
    assert _write_both(wh, rows) == (200, 200)
    con = wh.connect()
    assert con.execute("DESCRIBE by_arrow").fetchall() == con.execute("DESCRIBE by_copy").fetchall()
    assert con.execute("SELECT * FROM by_arrow EXCEPT ALL SELECT * FROM by_copy").fetchall() == []
    assert con.execute("SELECT * FROM by_copy EXCEPT ALL SELECT * FROM by_arrow").fetchall() == []
    dirs = {p.relative_to(wh.table_dir("by_arrow")).parent.as_posix()
            for p in wh.table_dir("by_arrow").rglob("*.parquet")}
    assert "financial_year=2026-27/month=2" in dirs and len(dirs) == 24
    assert not list(wh.table_dir("by_arrow").rglob(KEY_PREFIX + "*"))
    for f in wh.table_dir("by_arrow").rglob("*.parquet"):
        assert f.name.startswith("a-")
        # the partition columns are in each file, holding the directory's value
        t = pq.read_table(f)
        assert t.column_names == SCHEMA.names
        assert f"month={t['month'][0].as_py()}" == f.parent.name
        assert pq.ParquetFile(f).schema_arrow.field("price").type == pa.decimal128(18, 2)


def test_arrow_writer_with_no_rows_keeps_the_columns(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    with wh.begin("test") as tx:
        assert tx.write_batches("empty", _batches([]), file_prefix="e",
                                partition_by=("financial_year", "month")) == 0
    files = list(wh.table_dir("empty").rglob("*.parquet"))
    assert len(files) == 1 and pq.read_schema(files[0]).names == SCHEMA.names
    assert wh.query("SELECT count(*) FROM empty") == [(0,)]


def test_failed_arrow_write_leaves_the_warehouse_as_it_was(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    _write_both(wh, [_row(i) for i in range(10)])
    version = wh.manifest()["version"]

    def failing() -> pa.RecordBatchReader:
        def gen():
            yield from _batches([_row(i) for i in range(5)])
            raise OSError("disk full")
        return pa.RecordBatchReader.from_batches(SCHEMA, gen())

    with pytest.raises(OSError, match="disk full"), wh.begin("test") as tx:
        tx.write_batches("by_arrow", failing(), file_prefix="a",
                         partition_by=("financial_year", "month"), replace=True)
    assert wh.manifest()["version"] == version
    assert wh.query("SELECT count(*) FROM by_arrow") == [(10,)]
    assert not list((wh.root / "versions").glob(".staging-*"))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["2024-25", "2025-26"]), st.integers(1, 12),
                          st.one_of(st.none(), st.decimals(0, 10**8, places=2))),
                max_size=60))
def test_arrow_writer_keeps_every_row_and_penny(tmp_path_factory, cells) -> None:
    rows = [_row(i, fy, m, None if p is None else str(p)) for i, (fy, m, p) in enumerate(cells)]
    wh = Warehouse(tmp_path_factory.mktemp("wh"))
    with wh.begin("test") as tx:
        n = tx.write_batches("t", _batches(rows, size=5), file_prefix="t",
                             partition_by=("financial_year", "month"))
    assert n == len(rows)
    got = wh.query("SELECT count(*), sum(price) FROM t")[0]
    assert got[0] == len(rows)
    prices = [r["price"] for r in rows if r["price"] is not None]
    assert got[1] == (sum(prices) if prices else None)


# ------------------------------------------------------------------ issue 12: items 3 and 7
def _ref_version(wh: Warehouse, text: str) -> None:
    """Commit a version whose reference/tariff_settings.toml holds ``text``."""
    src = wh.root.parent / f"settings-{len(text)}-{abs(hash(text))}.toml"
    src.write_text(text, encoding="utf-8")
    with wh.begin("test") as tx:
        tx.put_file(src, "reference/tariff_settings.toml")


def test_failed_change_leaves_current_reference_file_alone(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    _write_both(wh, [_row(i) for i in range(3)])
    _ref_version(wh, "year = 'old'\n")
    current = wh.reference_file("tariff_settings.toml")
    assert current is not None
    src = tmp_path / "new.toml"
    src.write_text("year = 'new'\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="boom"), wh.begin("test") as tx:
        tx.put_file(src, "reference/tariff_settings.toml")
        raise RuntimeError("boom")
    assert current.read_text(encoding="utf-8") == "year = 'old'\n"


def test_later_commit_leaves_previous_versions_reference_file_alone(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    _ref_version(wh, "year = 'one'\n")
    first = wh.current
    assert first is not None
    _ref_version(wh, "year = 'two'\n")
    assert (first / "reference" / "tariff_settings.toml").read_text(encoding="utf-8") == \
        "year = 'one'\n"
    assert wh.verify(first) == [] and wh.verify() == []


def test_manifest_hashes_every_file_and_verify_finds_a_change(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    _write_both(wh, [_row(i) for i in range(4)])
    _ref_version(wh, "x = 1\n")
    sums = wh.manifest()["checksums"]
    cur = wh.current
    assert cur is not None
    on_disk = {p.relative_to(cur).as_posix() for p in cur.rglob("*") if p.is_file()}
    assert set(sums) == on_disk - {"manifest.json", "catalogue.duckdb"}
    assert "reference/tariff_settings.toml" in sums
    (cur / "reference" / "tariff_settings.toml").write_text("x = 2\n", encoding="utf-8")
    assert wh.verify() == ["reference/tariff_settings.toml: content differs from the manifest"]


def test_readers_read_only_the_manifests_files(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    _write_both(wh, [_row(i) for i in range(10)])
    folder = wh.current / "tables" / "by_copy"  # type: ignore[operator]
    stray = next(folder.rglob("*.parquet"))
    (stray.parent / "export.parquet").write_bytes(stray.read_bytes())  # e.g. an export
    assert wh.query("SELECT count(*) FROM by_copy") == [(10,)]
    con = duckdb.connect(str(wh.current / "catalogue.duckdb"))  # type: ignore[operator]
    assert con.execute("SELECT count(*) FROM by_copy").fetchall() == [(10,)]
    con.close()
    # the stray file is not carried into the next version either
    _ref_version(wh, "x = 1\n")
    assert wh.query("SELECT count(*) FROM by_copy") == [(10,)]
    assert not list(wh.current.rglob("export.parquet"))  # type: ignore[union-attr]


def test_warehouse_files_are_not_readable_by_others(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    _write_both(wh, [_row(i) for i in range(3)])
    _ref_version(wh, "x = 1\n")
    assert (wh.root / "versions").stat().st_mode & 0o007 == 0
    assert wh.root.stat().st_mode & 0o007 == 0
    for p in wh.current.rglob("*"):  # type: ignore[union-attr]
        assert p.stat().st_mode & 0o007 == 0, p


def test_a_version_without_file_list_is_upgraded_by_the_next_change(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    _write_both(wh, [_row(i) for i in range(5)])
    manifest_path = wh.current / "manifest.json"  # type: ignore[operator]
    old = json.loads(manifest_path.read_text())
    del old["checksums"]  # as an older pbc wrote it
    manifest_path.write_text(json.dumps(old))
    with pytest.raises(WarehouseError, match="run pbc load once"):
        wh.query("SELECT count(*) FROM by_copy")
    with wh.begin("upgrade"):
        pass  # nothing written: the version is still rewritten with its file list
    assert wh.manifest()["version"] == old["version"] + 1
    assert wh.query("SELECT count(*) FROM by_copy") == [(5,)] and wh.verify() == []


def test_reference_file_is_one_the_manifest_lists(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    _write_both(wh, [_row(0)])
    (wh.current / "reference").mkdir()  # type: ignore[operator]
    (wh.current / "reference" / "tariff_settings.toml").write_text("x = 1\n")  # type: ignore[operator]
    assert wh.reference_file("tariff_settings.toml") is None
