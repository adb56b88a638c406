"""``pbc load``: validate input files against the data contract and load the warehouse.

For every input table found in the delivery folder:

* a file already loaded (same content hash) is skipped: loading twice changes nothing;
* rows that break a rule go to ``quarantine`` with file, row, column, value and reason;
  the rest are accepted into the table, partitioned by financial year and month;
* a ``reconciliation`` row records rows in = rows accepted + rows quarantined (and money);
* the whole load is one warehouse transaction, built aside and swapped in.

Errors that stop a load (an unreadable file, a missing required column) raise
:class:`LoadError` naming the file and column; the warehouse is left as it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pbc.calendar import sql_financial_month, sql_financial_year
from pbc.contracts import TABLES, Table
from pbc.warehouse.store import Transaction, Warehouse, WarehouseError, scan_sql
from pbc.warehouse.validate import (
    Check,
    first_failure,
    lit,
    n,
    normalise,
    q,
    row_checks,
    typed,
    v,
)
from pbc.warehouse.validate import d as date_of

Progress = Callable[[str, int, int], None]

QUARANTINE_COLUMNS = (
    "source_table", "source_file", "row_number", "column", "value", "reason", "loaded_at",
)
RECONCILIATION_COLUMNS = (
    "stage", "source_table", "source_file", "rows_in", "rows_accepted", "rows_quarantined",
    "money_in", "money_out", "money_unattributed", "recorded_at",
)


class LoadError(WarehouseError):
    """A delivery that cannot be loaded; the message names the file and column."""


@dataclass
class TableLoad:
    table: str
    source_file: str
    status: str  # loaded | replaced | unchanged
    rows_in: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    money_in: float | None = None
    money_out: float | None = None
    money_unattributed: float | None = None
    extra_columns: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    warehouse: Path
    tables: list[TableLoad]
    ignored: list[str]
    version: int
    changed: bool

    @property
    def rows_in(self) -> int:
        return sum(t.rows_in for t in self.tables)

    @property
    def rows_quarantined(self) -> int:
        return sum(t.rows_quarantined for t in self.tables)


# ------------------------------------------------------------------ discovery
#: files that are not tables but are kept in the warehouse as reference (validated on load)
REFERENCE_FILES = ("tariff_settings.toml",)


def discover(input_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """Find each contract table's file in ``input_dir``: ``name.csv``, ``name.parquet``
    or a folder ``name/`` of parts. Returns the files found and the names ignored."""
    if not input_dir.is_dir():
        raise LoadError(f"{input_dir}: no such folder")
    found: dict[str, Path] = {}
    ignored: list[str] = []
    for entry in sorted(input_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        name = entry.name
        table = None
        if entry.is_file() and entry.suffix.lower() in (".csv", ".parquet"):
            table = entry.stem
        elif entry.is_dir() and entry.name in TABLES:
            table = entry.name
        if entry.is_file() and name in REFERENCE_FILES:
            found[name] = entry
        elif table in TABLES:
            if table in found:
                raise LoadError(
                    f"{input_dir}: table {table} is given twice ({found[table].name} and "
                    f"{name}); keep one"
                )
            found[table] = entry
        else:
            ignored.append(name)
    return found, ignored


def content_hash(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and contents)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _data_files(path: Path) -> tuple[str, list[Path]]:
    """The format (csv | parquet) and files of a table given as a file or a folder."""
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".csv", ".parquet")
    )
    if not files:
        raise LoadError(f"{path}: folder holds no .csv or .parquet files")
    kinds = {f.suffix.lower() for f in files}
    if len(kinds) > 1:
        raise LoadError(f"{path}: mixes CSV and Parquet parts; use one format per table")
    return kinds.pop().lstrip("."), files


# ------------------------------------------------------------------ reading
def _read_raw(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[list[str], str]:
    """Create ``raw`` (with ``__row`` and ``__file``) from a table's files: a view over
    Parquet files, a temporary table of CSV rows (their row numbers are corrected).

    Returns the file's column names and the format. CSV rows that cannot be parsed at all
    (wrong number of fields, bad quoting, bad UTF-8) land in temp table ``rejects``."""
    fmt, files = _data_files(path)
    file_list = "[" + ", ".join(lit(str(f)) for f in files) + "]"
    _drop_raw(con)
    con.execute("DROP TABLE IF EXISTS rejects")
    try:
        if fmt == "csv":
            src = (
                f"read_csv({file_list}, all_varchar = true, header = true, filename = true, "
                "store_rejects = true, rejects_table = 'csv_reject_errors', "
                "rejects_scan = 'csv_reject_scans', strict_mode = true)"
            )
            con.execute(
                "CREATE TEMP TABLE raw AS SELECT row_number() OVER (PARTITION BY filename) "
                f"AS __row, filename AS __file, * EXCLUDE (filename) FROM {src}"
            )
            con.execute(
                # one row per bad line (a line missing two fields gives two errors)
                "CREATE TEMP TABLE rejects AS SELECT DISTINCT ON (s.file_path, e.line) "
                "s.file_path AS __file, e.line - 1 AS __row, e.column_name AS col, "
                "e.csv_line AS value, e.error_type AS kind, e.error_message AS message "
                "FROM csv_reject_errors e JOIN csv_reject_scans s USING (scan_id) "
                "ORDER BY s.file_path, e.line, e.column_idx"
            )
        else:
            src = f"read_parquet({file_list}, filename = true, file_row_number = true, " \
                "union_by_name = true)"
            # a view, not a copy: Parquet is read again cheaply, and the copy is the size
            # of the table (at national scale, 128 million outpatient rows)
            con.execute(
                "CREATE TEMP VIEW raw AS SELECT file_row_number + 1 AS __row, filename AS "
                f"__file, * EXCLUDE (filename, file_row_number) FROM {src}"
            )
            con.execute(
                "CREATE TEMP TABLE rejects (__file VARCHAR, __row BIGINT, col VARCHAR, "
                "value VARCHAR, kind VARCHAR, message VARCHAR)"
            )
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise LoadError(f"{path}: cannot be read as {fmt.upper()}: {first}") from e
    cols = [r[0] for r in con.execute("DESCRIBE raw").fetchall()]
    if fmt == "csv" and files:
        # a CSV row shifted by rejected rows before it: restore its data-row number
        con.execute(
            "UPDATE raw SET __row = __row + (SELECT count(*) FROM rejects r WHERE "
            "r.__file = raw.__file AND r.__row - (SELECT count(*) FROM rejects r2 WHERE "
            "r2.__file = r.__file AND r2.__row <= r.__row) < raw.__row) "
            "WHERE EXISTS (SELECT 1 FROM rejects)"
        )
    return [c for c in cols if c not in ("__row", "__file")], fmt


def _drop_raw(con: duckdb.DuckDBPyConnection) -> None:
    """Drop ``raw``: a view over Parquet files, or a table of CSV rows."""
    kind = con.execute("SELECT table_type FROM information_schema.tables "
                       "WHERE table_name = 'raw'").fetchall()
    if kind:
        con.execute("DROP VIEW raw" if kind[0][0] == "VIEW" else "DROP TABLE raw")


# ------------------------------------------------------------------ one table
def _activity_partitions(table: Table) -> str:
    assert table.activity_date is not None
    col = table.column(table.activity_date)
    if col.type == "year_month":
        date = f"CAST({v(col.name)} || '-01' AS DATE)"
    else:
        date = date_of(col.name)
    return (
        f"{sql_financial_year(date)} AS financial_year, "
        f"CAST({sql_financial_month(date)} AS INTEGER) AS month"
    )


def _load_table(
    tx: Transaction,
    con: duckdb.DuckDBPyConnection,
    table: Table,
    path: Path,
    digest: str,
    loaded_at: str,
) -> TableLoad:
    columns, _ = _read_raw(con, path)
    present = set(columns)
    missing = [c for c in table.required_columns if c not in present]
    if missing:
        hints = []
        lower = {c.lower(): c for c in columns}
        for m in missing:
            if m.lower() in lower:
                hints.append(f" (found {lower[m.lower()]!r}: names are case-sensitive)")
        raise LoadError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} for table {table.name}"
            + "".join(hints)
            + f"; required: {', '.join(table.required_columns)}"
        )
    extras = [c for c in columns if c not in table.column_names]
    source_id = digest[:12]

    checks: list[Check] = row_checks(table, present)
    # (column, condition over the joins, reason SQL over the ``checked`` table's columns)
    extra_conds: list[tuple[str, str, str]] = []
    joins: list[str] = []
    carried: list[str] = []  # join columns kept in ``checked`` for the reasons
    if table.key:
        key = v(table.key)
        order = "(__file, __row)"
        joins.append(
            f"LEFT JOIN (SELECT {key} AS __k, arg_min(__row, {order}) AS __first_row, "
            f"arg_min(__file, {order}) AS __first_file FROM c WHERE __f IS NULL "
            f"GROUP BY 1 HAVING count(*) > 1) __dup ON __dup.__k = {key}"
        )
        extra_conds.append((
            table.key,
            "__dup.__k IS NOT NULL AND (__dup.__first_row <> __row "
            "OR __dup.__first_file <> __file)",
            f"'duplicate {table.key} (first seen at row ' || __dup_first_row || "
            "CASE WHEN __dup_first_file <> __file THEN ' of ' || __dup_first_file "
            "ELSE '' END || ')'",
        ))
        carried += ["__dup.__first_row AS __dup_first_row",
                    "__dup.__first_file AS __dup_first_file"]
        if table.load_mode == "append" and tx.has_table(table.name):
            joins.append(
                f"LEFT JOIN (SELECT CAST({q(table.key)} AS VARCHAR) AS __k, "
                f"first(_source) AS __src FROM {q(table.name)} GROUP BY 1) __old "
                f"ON __old.__k = {key}"
            )
            extra_conds.append((
                table.key, "__old.__k IS NOT NULL",
                f"'{table.key} already loaded (from an earlier file, source ' || __old_src "
                "|| ')'",
            ))
            carried.append("__old.__src AS __old_src")
    for i, ref in enumerate(table.references):
        if not ref.enforce or ref.column not in present or ref.table == table.name:
            continue
        if not tx.has_table(ref.table):
            raise LoadError(
                f"{path}: table {table.name} refers to {ref.table}, which is neither in this "
                f"delivery nor in the warehouse; deliver {ref.table} too"
            )
        alias = f"__ref{i}"
        val = v(ref.column)
        joins.append(
            f"LEFT JOIN (SELECT DISTINCT CAST({q(ref.target)} AS VARCHAR) AS __k FROM "
            f"{q(ref.table)}) {alias} ON {alias}.__k = {val}"
        )
        extra_conds.append((
            ref.column, f"{val} IS NOT NULL AND {alias}.__k IS NULL",
            "'unknown " + ref.column + " ''' || " + val + " || ''' (not in " + ref.table + ")'",
        ))

    n_checks = len(checks)
    fail_whens = " ".join(
        f"WHEN {cond} THEN {n_checks + j}" for j, (_, cond, _) in enumerate(extra_conds, 1)
    )
    extras_sql = "".join(f", CAST({q(c)} AS VARCHAR) AS {q(c)}" for c in extras)
    # two steps, each materialised once: single-row checks, then the cross-row checks
    try:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE c AS
            SELECT *, {first_failure(checks)} AS __f
            FROM (SELECT {normalise(table, present)}{extras_sql} FROM raw)
        """)
    except (duckdb.IOException, duckdb.InvalidInputException) as e:
        first = str(e).strip().splitlines()[0]
        if "Failed to read file" not in first and not isinstance(e, duckdb.IOException):
            raise
        # the footer was readable, a data page is not (the view reads pages only here)
        raise LoadError(f"{path}: cannot be read as PARQUET: {first}") from e
    _drop_raw(con)
    carry = "".join(", " + c for c in carried)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE checked AS
        SELECT c.*, CASE WHEN __f IS NOT NULL THEN __f {fail_whens} END AS __fail{carry}
        FROM c {' '.join(joins)}
    """)
    con.execute("DROP TABLE c")

    # accepted rows, typed to the contract
    select_cols = []
    for col in table.columns:
        if col.name in present:
            select_cols.append(f"{typed(col)} AS {q(col.name)}")
        else:
            from pbc.contracts import STORAGE_TYPE

            select_cols.append(f"CAST(NULL AS {STORAGE_TYPE[col.type]}) AS {q(col.name)}")
    select_cols += [f"CAST({q(c)} AS VARCHAR) AS {q(c)}" for c in extras]
    select_cols.append(f"{lit(source_id)} AS _source")
    partition_by: tuple[str, ...] = ()
    if table.activity_date:
        select_cols.append(_activity_partitions(table))
        partition_by = ("financial_year", "month")
    accepted_sql = f"SELECT {', '.join(select_cols)} FROM checked WHERE __fail IS NULL"

    replace = table.load_mode == "replace"
    if replace and tx.has_table(table.name):
        tx.drop_files("quarantine", f"q-{table.name}-")
        tx.drop_files("reconciliation", f"r-load-{table.name}-")
    rows_accepted = tx.write(
        con, table.name, accepted_sql, file_prefix=f"src-{source_id}",
        partition_by=partition_by, replace=replace,
        meta={"kind": table.kind, "load_mode": table.load_mode},
    )
    sources = tx.manifest["tables"][table.name].setdefault("sources", {})
    if replace:
        sources.clear()

    # quarantine: rule failures plus rows the CSV reader could not parse
    vsql = _value_sql(checks, extra_conds)
    quarantine_sql = f"""
        SELECT {lit(table.name)} AS source_table, __file AS source_file,
               CAST(__row AS BIGINT) AS row_number, __col AS "column", __value AS value,
               __reason AS reason, CAST({lit(loaded_at)} AS TIMESTAMP) AS loaded_at
        FROM (SELECT *, {_pick_column(checks, extra_conds)} AS __col, {vsql} AS __value,
                     {_pick_reason(checks, extra_conds)} AS __reason
              FROM checked WHERE __fail IS NOT NULL)
        UNION ALL
        SELECT {lit(table.name)}, __file, CAST(__row AS BIGINT), col, value,
               'unreadable row: ' || lower(replace(kind, '_', ' ')) || ' (' || message || ')',
               CAST({lit(loaded_at)} AS TIMESTAMP)
        FROM rejects
        ORDER BY source_file, row_number
    """
    rows_quarantined = tx.write(
        con, "quarantine", quarantine_sql, file_prefix=f"q-{table.name}-{source_id}",
        meta={"kind": "output"},
    )
    rows_in = con.execute(
        "SELECT (SELECT count(*) FROM checked) + (SELECT count(*) FROM rejects)")
    n_in = int(rows_in.fetchall()[0][0])

    money_in = money_out = money_unattributed = None
    if table.money:
        m = f"CAST(round({n(table.money)}, 2) AS DECIMAL(18,2))"
        unknown = "FALSE"
        if "practice_code" in present and tx.has_table("practices"):
            pc = v("practice_code")
            unknown = f"({pc} IS NULL OR {pc} NOT IN (SELECT practice_code FROM practices))"
        money_in, money_out, money_unattributed = con.execute(f"""
            SELECT coalesce(sum({m}), 0), coalesce(sum({m}) FILTER (WHERE __fail IS NULL), 0),
                   coalesce(sum({m}) FILTER (WHERE __fail IS NULL AND {unknown}), 0)
            FROM checked""").fetchall()[0]
    rec = TableLoad(
        table.name, str(path), "replaced" if replace and sources == {} and
        tx.base_version > 0 else "loaded", n_in, rows_accepted, rows_quarantined,
        None if money_in is None else float(money_in),
        None if money_out is None else float(money_out),
        None if money_unattributed is None else float(money_unattributed), extras,
    )
    if rec.rows_in != rec.rows_accepted + rec.rows_quarantined:  # conservation, never silent
        raise LoadError(
            f"{path}: internal reconciliation failure: {rec.rows_in} rows in, "
            f"{rec.rows_accepted} accepted, {rec.rows_quarantined} quarantined"
        )
    _write_reconciliation(tx, con, rec, source_id, loaded_at)
    sources[digest] = {
        "file": str(path), "source_id": source_id, "loaded_at": loaded_at,
        "rows_in": n_in, "rows_accepted": rows_accepted, "rows_quarantined": rows_quarantined,
    }
    con.execute(f"CREATE OR REPLACE VIEW {q(table.name)} AS {scan_sql(tx.glob(table.name))}")
    return rec


def _load_reference_file(tx: Transaction, path: Path, digest: str, at: str) -> TableLoad:
    """Keep a settings file (e.g. tariff settings) in the warehouse, after checking it."""
    validate_reference_file(path)
    tx.put_file(path, f"reference/{path.name}")
    tx.manifest.setdefault("files", {})[path.name] = {
        "file": str(path), "sha256": digest, "loaded_at": at,
    }
    return TableLoad(path.name, str(path), "loaded", 1, 1, 0)


def validate_reference_file(path: Path) -> None:
    """Raise LoadError naming the file (and key) when a settings file is not valid."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise LoadError(f"{path}: not a valid TOML file: {e}") from e
    if path.name == "tariff_settings.toml":
        try:
            from pbc.pricing.settings import TariffSettings
        except ImportError:  # pricing not installed: a syntax check is all we can do
            return
        try:
            TariffSettings.model_validate(data)
        except Exception as e:  # pydantic's ValidationError lists each bad key
            raise LoadError(f"{path}: {e}") from e


def _write_reconciliation(
    tx: Transaction, con: duckdb.DuckDBPyConnection, rec: TableLoad, source_id: str, at: str
) -> None:
    def money(v: float | None) -> str:
        return "CAST(NULL AS DECIMAL(18,2))" if v is None else f"CAST({v!r} AS DECIMAL(18,2))"

    sql = (
        f"SELECT 'load' AS stage, {lit(rec.table)} AS source_table, "
        f"{lit(rec.source_file)} AS source_file, CAST({rec.rows_in} AS BIGINT) AS rows_in, "
        f"CAST({rec.rows_accepted} AS BIGINT) AS rows_accepted, "
        f"CAST({rec.rows_quarantined} AS BIGINT) AS rows_quarantined, "
        f"{money(rec.money_in)} AS money_in, {money(rec.money_out)} AS money_out, "
        f"{money(rec.money_unattributed)} AS money_unattributed, "
        f"CAST({lit(at)} AS TIMESTAMP) AS recorded_at"
    )
    tx.write(con, "reconciliation", sql, file_prefix=f"r-load-{rec.table}-{source_id}",
             meta={"kind": "output"})


def _pick_reason(checks: list[Check], extra: list[tuple[str, str, str]]) -> str:
    whens = [f"WHEN {i} THEN {lit(c.reason)}" for i, c in enumerate(checks, 1)]
    whens += [f"WHEN {len(checks) + j} THEN {r}" for j, (_, _, r) in enumerate(extra, 1)]
    return f"CASE __fail {' '.join(whens)} END" if whens else "CAST(NULL AS VARCHAR)"


def _pick_column(checks: list[Check], extra: list[tuple[str, str, str]]) -> str:
    whens = [f"WHEN {i} THEN {lit(c.column)}" for i, c in enumerate(checks, 1)]
    whens += [f"WHEN {len(checks) + j} THEN {lit(col)}" for j, (col, _, _) in enumerate(extra, 1)]
    return f"CASE __fail {' '.join(whens)} END" if whens else "CAST(NULL AS VARCHAR)"


def _value_sql(checks: list[Check], extra: list[tuple[str, str, str]]) -> str:
    cols = [c.column for c in checks] + [col for col, _, _ in extra]
    whens = [f"WHEN {i} THEN {v(c)}" for i, c in enumerate(cols, 1)]
    return f"CASE __fail {' '.join(whens)} END" if whens else "CAST(NULL AS VARCHAR)"


# ------------------------------------------------------------------ the load
def load(
    input_dir: Path | str,
    warehouse: Warehouse,
    progress: Progress | None = None,
) -> LoadReport:
    """Load every contract table found in ``input_dir`` into ``warehouse`` atomically."""
    input_dir = Path(input_dir)
    found, ignored = discover(input_dir)
    if not found:
        raise LoadError(
            f"{input_dir}: no input tables found (expected files named after the contract "
            f"tables, e.g. apc_spells.parquet or practices.csv)"
        )
    loaded_at = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    order = [t for t in TABLES if t in found] + [f for f in REFERENCE_FILES if f in found]
    results: list[TableLoad] = []
    fail_after = os.environ.get("PBC_TEST_FAIL_AFTER")  # test hook: simulate a crash
    tmp = warehouse.root / ".tmp"
    with warehouse.begin("load") as tx:
        tmp.mkdir(parents=True, exist_ok=True)
        con = tx.connect()
        con.execute(f"SET temp_directory = {lit(str(tmp))}")
        con.execute("SET preserve_insertion_order = true")
        try:
            for i, name in enumerate(order):
                path = found[name]
                if progress:
                    progress(f"load {name}", i, len(order))
                digest = content_hash(path)
                entry = tx.manifest["tables"].get(name)
                known = tx.manifest.get("files", {}).get(name, {}).get("sha256")
                if (entry and digest in entry.get("sources", {})) or known == digest:
                    results.append(TableLoad(name, str(path), "unchanged"))
                    continue
                if name in REFERENCE_FILES:
                    results.append(_load_reference_file(tx, path, digest, loaded_at))
                else:
                    results.append(_load_table(tx, con, TABLES[name], path, digest, loaded_at))
                if fail_after == name:
                    raise RuntimeError(f"PBC_TEST_FAIL_AFTER={name}: simulated failure")
            if progress:
                progress("load", len(order), len(order))
        finally:
            con.close()
        changed = tx.changed
        version = tx.base_version + (1 if changed else 0)
    return LoadReport(warehouse.root, results, ignored, version, changed)
