"""``pbc load``: validate input files against the data contract and load the warehouse.

For every input table found in the delivery folder:

* a file already loaded (same content hash) is skipped: loading twice changes nothing;
* rows that break a rule go to ``quarantine`` with file, row, column, value and reason;
  the rest are accepted into the table, partitioned by financial year and month;
* a ``reconciliation`` row records rows in = rows accepted + rows quarantined (and money);
* the whole load is one warehouse transaction, built aside and swapped in.

Errors that stop a load (an unreadable file, a missing required column, a reserved column
name, a reference snapshot far smaller than the table it replaces, a full disk) raise
:class:`LoadError` naming the file and column; the warehouse is left as it was.

CSV is read by a stated dialect (RFC 4180, UTF-8), never sniffed; a row's number is its place
in its file, the same on every run. docs/bad-input.md lists every kind of bad input.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import hashlib
import mmap
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import duckdb

from pbc.calendar import format_financial_year, sql_financial_month, sql_financial_year
from pbc.contracts import STORAGE_TYPE, TABLES, Table
from pbc.warehouse.store import Transaction, Warehouse, WarehouseError, scan_sql
from pbc.warehouse.validate import (
    MAX_AMOUNT,
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
    "money_in", "money_out", "money_unattributed", "recorded_at", "rows_replaced",
)
#: the history of rows replaced by a revision (docs/deliveries.md)
REVISION_COLUMNS = (
    "source_table", "key", "replaced_source", "replaced_load_version", "replaced_row",
    "revision_source", "revision_file", "load_version", "revised_at",
)
#: the folder of a delivery that holds resubmitted rows (original or replacement)
REVISIONS_FOLDER = "revisions"
#: provenance columns of every accepted row: the source file (first 12 hex digits of its
#: SHA-256), the delivery folder and the warehouse version the load created
PROVENANCE_COLUMNS = ("_source", "_delivery", "_load_version")


class LoadError(WarehouseError):
    """A delivery that cannot be loaded; the message names the file and column."""


@dataclass
class TableLoad:
    table: str
    source_file: str
    status: str  # loaded | replaced | revised | unchanged
    rows_in: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    money_in: Decimal | None = None
    money_out: Decimal | None = None
    money_unattributed: Decimal | None = None
    extra_columns: list[str] = field(default_factory=list)
    #: quarantined rows whose money could not be read (not counted in ``money_in``)
    money_unknown_rows: int = 0
    #: stored rows of earlier deliveries that this file's rows replaced (a revision)
    rows_replaced: int = 0


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

    @property
    def rows_replaced(self) -> int:
        return sum(t.rows_replaced for t in self.tables)


# ------------------------------------------------------------------ discovery
#: files that are not tables but are kept in the warehouse as reference (validated on load)
REFERENCE_FILES = ("tariff_settings.toml",)


def discover(input_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """Find each contract table's file in ``input_dir``: ``name.csv``, ``name.parquet``
    or a folder ``name/`` of parts. Returns the files found and the names ignored.

    Files in a ``revisions/`` folder are resubmitted rows of activity tables (SUS's
    "original or replacement"): they are found under the name ``revisions/<table>``."""
    if not input_dir.is_dir():
        raise LoadError(f"{input_dir}: no such folder")
    found: dict[str, Path] = {}
    ignored: list[str] = []
    for entry in sorted(input_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        name = entry.name
        if entry.is_dir() and name == REVISIONS_FOLDER:
            inner, skipped = discover(entry)
            for revised, path in inner.items():
                if revised not in TABLES or TABLES[revised].load_mode != "append" \
                        or not TABLES[revised].key_columns:
                    raise LoadError(
                        f"{path}: only activity tables with a key can be revised (a revision "
                        "replaces the stored row with the same key); "
                        f"{revised} cannot be")
                found[f"{REVISIONS_FOLDER}/{revised}"] = path
            ignored += [f"{REVISIONS_FOLDER}/{x}" for x in skipped]
            continue
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
#: column names pbc derives or stores itself: an input column may not take them
RESERVED_COLUMNS = ("financial_year", "month", "_source", "_delivery", "_load_version")
#: the CSV dialect, stated rather than sniffed from a sample (RFC 4180, UTF-8)
CSV_DIALECT = "delim = ',', quote = '\"', escape = '\"', header = true, auto_detect = false"
#: DuckDB's default maximum CSV line (bytes); a longer line is quarantined as unreadable
MAX_LINE_BYTES = 2_000_000
#: characters of an unreadable line kept as the quarantine ``value``
QUARANTINE_VALUE_CHARS = 1000


def _check_column_names(path: Path, table: Table, columns: list[str]) -> None:
    """Refuse input columns that would shadow pbc's own (a reserved name, an internal
    ``__`` name, a name differing from another only in case)."""
    contract = {c.lower(): c for c in table.column_names}
    seen: dict[str, str] = {}
    for name in columns:
        low = name.lower()
        if (low in RESERVED_COLUMNS or name.startswith("__")
                or (len(name) > 3 and name[1:3] == "__" and name[0] in "vdn")):
            raise LoadError(
                f"{path}: column {name!r} is reserved (pbc derives or uses a column of that "
                "name); rename or remove it"
            )
        if low in contract and contract[low] != name and contract[low] in columns:
            raise LoadError(
                f"{path}: column {name!r} differs from the contract's {contract[low]!r} "
                "only in case; rename or remove it (names are case-sensitive)"
            )
        if low in seen:
            raise LoadError(
                f"{path}: columns {seen[low]!r} and {name!r} differ only in case; "
                "keep one (names are case-sensitive)"
            )
        seen[low] = name


def _csv_header(path: Path) -> list[str]:
    """The header row of a CSV file, read by the stated dialect (a UTF-8 BOM is allowed).

    Only the first line is read, so a fault in a later row is that row's, not the header's."""
    with open(path, "rb") as f:
        first = f.readline(MAX_LINE_BYTES + 1)
    if len(first) > MAX_LINE_BYTES:
        raise LoadError(f"{path}, row 0 (header): longer than {MAX_LINE_BYTES:,} bytes")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LoadError(f"{path}, row 0 (header): not UTF-8 text (byte 0x{e.object[e.start]:02x} "
                        f"at position {e.start}); save the file as UTF-8") from e
    try:
        header = next(csv.reader([text.rstrip("\r\n")]), None)
    except csv.Error as e:
        raise LoadError(f"{path}, row 0 (header): cannot be read as CSV: {e}") from e
    if not header:
        raise LoadError(f"{path}: empty file (no header row)")
    for i, name in enumerate(header, 1):
        if not name.strip():
            raise LoadError(f"{path}, row 0 (header): column {i} has no name")
        if name != name.strip():
            raise LoadError(f"{path}, row 0 (header): column {name!r} has spaces around "
                            "its name")
    dup = next((h for h in header if header.count(h) > 1), None)
    if dup is not None:
        raise LoadError(f"{path}, row 0 (header): column {dup!r} appears twice")
    return header


def _read_raw(
    con: duckdb.DuckDBPyConnection, path: Path, table: Table
) -> tuple[list[str], str, list[Path]]:
    """Create ``raw`` (with ``__row``, ``__fno`` and ``__file``) from a table's files.

    ``__row`` is the row's position in its file (1 = the first row after a CSV header; a
    Parquet file's row number), ``__fno`` the file's place in delivery order. Returns the
    column names, the format and the files. CSV rows that cannot be parsed at all (wrong
    number of fields, bad quoting, bad UTF-8, a line too long) land in temp table
    ``rejects``."""
    fmt, files = _data_files(path)
    _drop_raw(con)
    con.execute("DROP TABLE IF EXISTS rejects")
    try:
        if fmt == "csv":
            cols = _read_csv_raw(con, path, files, table)
        else:
            file_list = "[" + ", ".join(lit(str(f)) for f in files) + "]"
            src = f"read_parquet({file_list}, filename = true, file_row_number = true, " \
                "union_by_name = true)"
            # a view, not a copy: Parquet is read again cheaply, and the copy is the size
            # of the table (at national scale, 128 million outpatient rows)
            con.execute(
                "CREATE TEMP VIEW raw AS SELECT file_row_number + 1 AS __row, "
                f"CAST(list_position({file_list}, filename) AS INTEGER) AS __fno, filename AS "
                f"__file, * EXCLUDE (filename, file_row_number) FROM {src}"
            )
            con.execute(
                "CREATE TEMP TABLE rejects (__file VARCHAR, __fno INTEGER, __row BIGINT, "
                "col VARCHAR, value VARCHAR, kind VARCHAR, message VARCHAR)"
            )
            cols = [r[0] for r in con.execute("DESCRIBE raw").fetchall()]
            cols = [c for c in cols if c not in ("__row", "__fno", "__file")]
            _check_column_names(path, table, cols)
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise LoadError(f"{path}: cannot be read as {fmt.upper()}: {first}") from e
    return cols, fmt, files


def _read_csv_raw(
    con: duckdb.DuckDBPyConnection, path: Path, files: list[Path], table: Table
) -> list[str]:
    """Read CSV parts in delivery order into ``raw0``; ``raw`` numbers their rows.

    The dialect is stated (:data:`CSV_DIALECT`), never sniffed: a quoted field late in a
    file is read as one field. Rows are inserted in file order (``preserve_insertion_order``),
    so a row's place in ``raw0`` is its place in its file; the rows the reader rejected are
    counted back in from their line numbers."""
    headers = [_csv_header(f) for f in files]
    columns = headers[0]
    _check_column_names(files[0], table, columns)
    for f, h in zip(files[1:], headers[1:], strict=True):
        if set(h) != set(columns):
            raise LoadError(f"{f}: its columns differ from those of {files[0]}; every part "
                            "of a table has the same columns")
    con.execute("DROP TABLE IF EXISTS raw0")
    con.execute("DROP TABLE IF EXISTS csv_reject_errors")
    con.execute("DROP TABLE IF EXISTS csv_reject_scans")
    con.execute(
        "CREATE TEMP TABLE raw0 (__fno INTEGER, __file VARCHAR, "
        + ", ".join(f"{q(c)} VARCHAR" for c in columns) + ")"
    )
    bases = []
    for i, (f, header) in enumerate(zip(files, headers, strict=True), 1):
        bases.append(int(con.execute("SELECT count(*) FROM raw0").fetchall()[0][0]))
        spec = "{" + ", ".join(f"{lit(c)}: 'VARCHAR'" for c in header) + "}"
        con.execute(
            f"INSERT INTO raw0 SELECT {i}, {lit(str(f))}, "
            + ", ".join(q(c) for c in columns)
            + f" FROM read_csv({lit(str(f))}, columns = {spec}, {CSV_DIALECT}, "
            f"max_line_size = {MAX_LINE_BYTES}, store_rejects = true, "
            "rejects_table = 'csv_reject_errors', rejects_scan = 'csv_reject_scans', "
            "strict_mode = true)"
        )
    fno = "CASE s.file_path " + " ".join(
        f"WHEN {lit(str(f))} THEN {i}" for i, f in enumerate(files, 1)) + " END"
    con.execute(
        # one row per bad line (a line missing two fields gives two errors)
        f"CREATE TEMP TABLE rejects AS SELECT DISTINCT ON (s.file_path, e.line) "
        f"s.file_path AS __file, CAST({fno} AS INTEGER) AS __fno, "
        "CAST(e.line - 1 AS BIGINT) AS __row, e.column_name AS col, "
        "trim(e.csv_line, chr(13) || chr(10)) AS value, "
        "CAST(e.error_type AS VARCHAR) AS kind, "
        "e.error_message AS message "
        "FROM csv_reject_errors e JOIN csv_reject_scans s USING (scan_id) "
        "ORDER BY s.file_path, e.line, e.column_idx"
    )
    base_sql = "CASE __fno " + " ".join(
        f"WHEN {i} THEN {b}" for i, b in enumerate(bases, 1)) + " END"
    # blank lines: DuckDB skips them, but counts them in its line numbers
    gaps = [(i, r) for i, f in enumerate(files, 1) for r in _blank_rows(f)]
    con.execute("CREATE OR REPLACE TEMP TABLE __gaps (__fno INTEGER, __row BIGINT)")
    if gaps:
        con.executemany("INSERT INTO __gaps VALUES (?, ?)", gaps)
    n_rejects = con.execute("SELECT count(*) FROM rejects").fetchall()[0][0]
    if not n_rejects and not gaps:
        con.execute(f"CREATE TEMP VIEW raw AS SELECT rowid - {base_sql} + 1 AS __row, * "
                    "FROM raw0")
    else:
        # good row k of a file is row k + (rejected rows before it): the i-th rejected row
        # r_i comes before good row k when r_i - i < k
        con.execute("""
            CREATE OR REPLACE TEMP TABLE __shift AS
            SELECT __fno, __row - i AS __thr, max(i) AS __n FROM (
              SELECT __fno, __row, row_number() OVER (PARTITION BY __fno ORDER BY __row) AS i
              FROM (SELECT __fno, __row FROM rejects UNION ALL SELECT * FROM __gaps))
            GROUP BY 1, 2""")
        con.execute(f"""
            CREATE TEMP VIEW raw AS
            SELECT r.__k + coalesce(s.__n, 0) AS __row, r.* EXCLUDE (__k)
            FROM (SELECT rowid - {base_sql} + 1 AS __k, * FROM raw0) r
            ASOF LEFT JOIN __shift s ON r.__fno = s.__fno AND r.__k > s.__thr""")
    return columns


def _blank_rows(path: Path) -> list[int]:
    """Row numbers (1 = the first after the header) of the blank lines of a CSV file.

    Most files have none before their end, which a byte search shows at once; otherwise
    the file is read by Python's csv module, which, like DuckDB's line numbers, counts a
    quoted field spanning lines as one row and a blank line as a row of its own."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        end = len(mm)
        while end and mm[end - 1] in b"\r\n":  # blank lines at the end number nothing
            end -= 1
        if all(mm.find(sep, 0, end) < 0 for sep in (b"\n\n", b"\n\r\n", b"\r\r")):
            return []
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.reader(fh)
            next(reader, None)
            return [i for i, record in enumerate(reader, 1) if not record]
    except csv.Error as e:
        raise LoadError(f"{path}: cannot be read as CSV: {e}") from e
    finally:
        csv.field_size_limit(limit)


def _drop_raw(con: duckdb.DuckDBPyConnection) -> None:
    """Drop ``raw`` (a view over Parquet files or over ``raw0``) and ``raw0``."""
    kind = con.execute("SELECT table_type FROM information_schema.tables "
                       "WHERE table_name = 'raw'").fetchall()
    if kind:
        con.execute("DROP VIEW raw" if kind[0][0] == "VIEW" else "DROP TABLE raw")
    con.execute("DROP TABLE IF EXISTS raw0")
    con.execute("DROP TABLE IF EXISTS __shift")
    con.execute("DROP TABLE IF EXISTS __gaps")


# ------------------------------------------------------------------ one table
def _activity_partitions(table: Table) -> str:
    date = _activity_date_sql(table)
    return (
        f"{sql_financial_year(date)} AS financial_year, "
        f"CAST({sql_financial_month(date)} AS INTEGER) AS month"
    )


def _key_sql(cols: tuple[str, ...], value: Callable[[str], str]) -> str:
    """One text value identifying a row by ``cols`` (blank parts as empty text)."""
    if len(cols) == 1:
        return value(cols[0])
    return " || chr(31) || ".join(f"coalesce({value(c)}, '')" for c in cols)


def _activity_date_sql(table: Table) -> str:
    assert table.activity_date is not None
    col = table.column(table.activity_date)
    if col.type == "year_month":
        return f"CAST({v(col.name)} || '-01' AS DATE)"
    return date_of(col.name)


def _main_financial_year(con: duckdb.DuckDBPyConnection, table: Table) -> int | None:
    """The financial year (start year) holding most of the file's valid rows (the latest
    such year on a tie): the centre of the plausible window for its activity dates."""
    date = _activity_date_sql(table)
    row = con.execute(f"""
        SELECT year({date}) - CASE WHEN month({date}) < 4 THEN 1 ELSE 0 END AS fy, count(*)
        FROM c WHERE __f IS NULL GROUP BY 1 ORDER BY 2 DESC, 1 DESC LIMIT 1""").fetchall()
    return int(row[0][0]) if row else None


#: one number for a row of the delivery: its file's place and its row in that file (a
#: file holds fewer than 2**40 rows)
_ROW_ID = "((CAST({fno} AS BIGINT) << 40) + {row})"

#: input rows (passing the single-row checks) per bucket of the key check: the keys of one
#: bucket are all the key check holds in memory at once (about 100 bytes a key)
KEY_BUCKET_ROWS = 4_000_000
#: a work folder's name inside the version being built (removed before it is committed;
#: a killed load's is removed with its staging folder by the next writer)
WORK_PREFIX = ".work-"


#: the suffix of a stored file's key summary, beside it: ``<file>.parquet`` + ``.keys``
KEY_SUMMARY_SUFFIX = ".keys"
#: a fixed text whose ``hash`` is kept with the summaries: if DuckDB's hash function ever
#: changes, the summaries written before are not used (every stored file is scanned)
_HASH_PROBE = "pbc key summary"


def _hash_probe(con: duckdb.DuckDBPyConnection) -> str:
    return str(con.execute(f"SELECT hash({lit(_HASH_PROBE)})").fetchall()[0][0])


def write_key_summaries(
    con: duckdb.DuckDBPyConnection, tx: Transaction, table: Table, files: list[Path]
) -> None:
    """Beside each new stored file of an activity table, write its key summary: the
    distinct hashes of its rows' keys, sorted (Parquet, named ``<file>.keys``; read by the
    check that a key was not loaded before, docs/performance.md "Monthly deliveries").

    A summary may list more keys than its file holds (a revision takes rows out of the
    file, not out of the summary), never fewer: it only decides which files to scan."""
    stored = _key_sql(table.key_columns, lambda col: f"CAST({q(col)} AS VARCHAR)")
    for f in files:
        con.execute(f"""
            COPY (SELECT DISTINCT hash({stored}) AS h FROM read_parquet({lit(str(f))})
                  ORDER BY h) TO {lit(str(f) + KEY_SUMMARY_SUFFIX)} (FORMAT parquet)""")
    tx.manifest["tables"][table.name]["key_summary_hash"] = _hash_probe(con)


def key_summaries(
    con: duckdb.DuckDBPyConnection, tx: Transaction, table: Table
) -> dict[Path, Path]:
    """The stored files of ``table`` that have a usable key summary (file -> summary):
    none when the summaries were hashed by another hash function than this DuckDB's."""
    table_dir = tx.table_dir(table.name)
    probe = tx.manifest["tables"].get(table.name, {}).get("key_summary_hash")
    if probe is None or probe != _hash_probe(con):
        return {}
    out = {}
    for f in sorted(table_dir.rglob("*.parquet")):
        summary = f.with_name(f.name + KEY_SUMMARY_SUFFIX)
        if summary.is_file():
            out[f] = summary
    return out


def _files_to_check(
    con: duckdb.DuckDBPyConnection, table_dir: Path, summarised: dict[Path, Path]
) -> list[Path]:
    """The stored files to scan for the keys of ``__bucket``: every file without a key
    summary, and those whose summary has the hash of one of the bucket's keys (a key
    stored before has the same hash, so its file is always scanned: the check stays
    exact; a hash shared by chance only costs a scan)."""
    files = sorted(table_dir.rglob("*.parquet"))
    scan = [f for f in files if f not in summarised]
    if summarised:
        listed = "[" + ", ".join(lit(str(s)) for s in summarised.values()) + "]"
        hit = {str(r[0]) for r in con.execute(f"""
            SELECT DISTINCT filename FROM read_parquet({listed}, filename = true)
            WHERE h IN (SELECT hash(__k) FROM __bucket)""").fetchall()}
        scan += [f for f, s in summarised.items() if str(s) in hit]
    return sorted(scan)


def _mark_keys(
    con: duckdb.DuckDBPyConnection, table: Table, work: Path, *, check_old: bool,
    table_dir: Path, summarised: dict[Path, Path],
) -> None:
    """Mark in ``__marks`` the rows of ``c`` whose key repeats an earlier row of the file
    (kind 0, with the first row and file) or a stored row (kind 1, with its source).

    The check is global but held in bounded memory: the keys of the rows that passed the
    single-row checks are written once, split by a hash of the key into buckets of about
    :data:`KEY_BUCKET_ROWS`; a key's rows all fall in one bucket, so each bucket is checked
    on its own, against its own keys and the stored rows with the same hash. Stored keys
    are matched to the bucket's keys (the bucket is the hash table; the stored table is
    only scanned), so the cost against earlier loads is bounded by the delivery, not by
    the warehouse."""
    key_cols = table.key_columns
    key = _key_sql(key_cols, v)
    whole = " AND ".join(f"{v(col)} IS NOT NULL" for col in key_cols)
    n_ok = int(con.execute("SELECT count(*) FROM c WHERE __f IS NULL").fetchall()[0][0])
    buckets = max(1, -(-n_ok // KEY_BUCKET_ROWS))
    keys = work / "keys"
    select = f"SELECT {key} AS __k, ({whole}) AS __whole, __fno, __row, __file"
    if buckets > 1:
        con.execute(f"""
            COPY ({select}, CAST(hash({key}) % {buckets} AS INTEGER) AS __b
                  FROM c WHERE __f IS NULL)
            TO {lit(str(keys))} (FORMAT parquet, PARTITION_BY (__b))""")
    stored = _key_sql(key_cols, lambda col: f"CAST({q(col)} AS VARCHAR)")
    order = "(__fno, __row)"
    for b in range(buckets):
        part = keys / f"__b={b}"
        if buckets == 1:  # one bucket: its keys straight from the work file
            source = f"{select} FROM c WHERE __f IS NULL"
        elif part.is_dir():
            source = ("SELECT __k, __whole, __fno, __row, __file FROM read_parquet("
                      f"{lit(str(part / '*.parquet'))}, hive_partitioning = false)")
        else:
            continue
        con.execute(f"CREATE OR REPLACE TEMP TABLE __bucket AS {source}")
        # a natural key with a blank part does not identify its row within a file. The
        # repeated keys are found first by a plain count (no ordering: cheap); the first
        # row of each (by file, then row) is then found among their few rows only
        con.execute(f"""
            INSERT INTO __marks
            WITH r AS (SELECT k.* FROM __bucket k WHERE k.__whole AND k.__k IN (
                         SELECT __k FROM __bucket WHERE __whole
                         GROUP BY 1 HAVING count(*) > 1))
            SELECT k.__fno, k.__row, 0, g.__first_row, g.__first_file, NULL
            FROM r k JOIN (
                SELECT __k, arg_min(__row, {order}) AS __first_row,
                       arg_min(__file, {order}) AS __first_file
                FROM r GROUP BY 1) g
              ON g.__k = k.__k
            WHERE g.__first_row <> k.__row OR g.__first_file <> k.__file""")
        # the stored files that may hold one of the bucket's keys: those whose key summary
        # has one of the bucket's key hashes, and any file without a summary
        scan = _files_to_check(con, table_dir, summarised) if check_old else []
        if scan:
            con.execute(f"""
                INSERT INTO __marks
                SELECT k.__fno, k.__row, 1, NULL, NULL, o.__src
                FROM __bucket k JOIN (
                    SELECT {stored} AS __k, first(_source) AS __src FROM ({scan_sql(scan)})
                    WHERE hash({stored}) % {buckets} = {b}
                      AND {stored} IN (SELECT __k FROM __bucket)
                    GROUP BY 1) o ON o.__k = k.__k""")
        con.execute("DROP TABLE __bucket")


def _load_table(
    tx: Transaction,
    con: duckdb.DuckDBPyConnection,
    table: Table,
    path: Path,
    digest: str,
    loaded_at: str,
    allow_shrink: bool = False,
    *,
    revision: bool = False,
    load_version: int = 0,
    delivery: str = "",
) -> TableLoad:
    """Validate and store one table's file. ``revision``: the file holds resubmitted rows
    (from a delivery's ``revisions/`` folder); a row whose key is already stored replaces
    the stored row, which is kept in the ``revisions`` history table.

    The table is validated in a work folder inside the version being built, removed when
    the table is stored (or the load fails)."""
    work = tx.staging / f"{WORK_PREFIX}{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        return _validate_and_store(
            tx, con, table, path, digest, loaded_at, allow_shrink, work,
            revision=revision, load_version=load_version, delivery=delivery)
    finally:
        with contextlib.suppress(duckdb.Error):  # never hide the error that ended the load
            for view in ("checked", "c"):
                con.execute(f"DROP VIEW IF EXISTS {view}")
            con.execute("DROP TABLE IF EXISTS __x")
        shutil.rmtree(work, ignore_errors=True)


def _validate_and_store(
    tx: Transaction,
    con: duckdb.DuckDBPyConnection,
    table: Table,
    path: Path,
    digest: str,
    loaded_at: str,
    allow_shrink: bool,
    work: Path,
    *,
    revision: bool,
    load_version: int,
    delivery: str,
) -> TableLoad:
    columns, fmt, _files = _read_raw(con, path, table)
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
    n_checks = len(checks)
    extras_sql = "".join(f", CAST({q(c)} AS VARCHAR) AS {q(c)}" for c in extras)
    # Single-row checks in one streaming pass, written to a Parquet work file (compressed,
    # read back column by column); nothing table-sized is held in memory
    # (docs/performance.md, "Loading in bounded memory").
    c_file = work / "c.parquet"
    try:
        con.execute(f"""
            COPY (SELECT *, {first_failure(checks)} AS __f
                  FROM (SELECT {normalise(table, present)}{extras_sql} FROM raw))
            TO {lit(str(c_file))} (FORMAT parquet)
        """)
    except (duckdb.IOException, duckdb.InvalidInputException) as e:
        first = str(e).strip().splitlines()[0]
        if "Failed to read file" not in first and not isinstance(e, duckdb.IOException):
            raise
        # the footer was readable, a data page is not (the view reads pages only here)
        raise LoadError(f"{path}: cannot be read as {fmt.upper()}: {first}") from e
    _drop_raw(con)
    con.execute(f"CREATE OR REPLACE TEMP VIEW c AS SELECT * FROM read_parquet({lit(str(c_file))})")

    # Cross-row checks, found for the few rows they concern and kept in ``__x`` (one row per
    # failing input row): (column, condition over ``__x``'s columns, reason SQL over the
    # ``checked`` view's columns)
    extra_conds: list[tuple[str, str, str]] = []
    # the cross-row conditions decided by the row's own values (the others by ``__x``)
    row_level: list[str] = []
    # the rows a cross-row check fails: 0 duplicate, 1 already loaded, 2.. a reference
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __marks (__fno INTEGER, __row BIGINT, __kind INTEGER, "
        "__first_row BIGINT, __first_file VARCHAR, __src VARCHAR)")
    carried = ["__dup_first_row", "__dup_first_file", "__old_src"]
    key_cols = table.key_columns
    if key_cols:
        label = key_cols[0] if len(key_cols) == 1 else "(" + ", ".join(key_cols) + ")"
        check_old = table.load_mode == "append" and tx.has_table(table.name) and not revision
        _mark_keys(con, table, work, check_old=check_old, table_dir=tx.table_dir(table.name),
                   summarised=key_summaries(con, tx, table) if check_old else {})
        extra_conds.append((
            key_cols[0], "coalesce(__x_dup, FALSE)",
            f"'duplicate {label} (first seen at row ' || __dup_first_row || "
            "CASE WHEN __dup_first_file <> __file THEN ' of ' || __dup_first_file "
            "ELSE '' END || ')'",
        ))
        if check_old:
            extra_conds.append((
                key_cols[0], "coalesce(__x_old, FALSE)",
                f"'{label} already loaded (from an earlier file, source ' || __old_src "
                "|| ')'",
            ))
    if table.activity_date and table.plausible_years is not None:
        main = _main_financial_year(con, table)
        if main is not None:
            lo = dt.date(main - table.plausible_years, 4, 1)
            hi = dt.date(main + 1 + table.plausible_years, 3, 31)
            act = table.activity_date
            implausible = f"{_activity_date_sql(table)} NOT BETWEEN DATE '{lo}' AND DATE '{hi}'"
            row_level.append(implausible)
            extra_conds.append((
                act, implausible,
                f"'{act} ' || {v(act)} || ' is more than {table.plausible_years} years from "
                f"the file''s main financial year {format_financial_year(main, '-')}'",
            ))
    ref_flags: list[str] = []
    for i, ref in enumerate(table.references):
        if not ref.enforce or ref.column not in present or ref.table == table.name:
            continue
        if not tx.has_table(ref.table):
            raise LoadError(
                f"{path}: table {table.name} refers to {ref.table}, which is neither in this "
                f"delivery nor in the warehouse; deliver {ref.table} too"
            )
        val = v(ref.column)
        kind = 2 + len(ref_flags)
        # the reference's values that the file uses: only those are held in memory
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE __ref{i} AS
            SELECT DISTINCT CAST({q(ref.target)} AS VARCHAR) AS __k FROM {q(ref.table)}
            WHERE CAST({q(ref.target)} AS VARCHAR) IN
                  (SELECT DISTINCT {val} FROM c WHERE __f IS NULL AND {val} IS NOT NULL)""")
        con.execute(
            f"INSERT INTO __marks SELECT __fno, __row, {kind}, NULL, NULL, NULL FROM c "
            f"WHERE __f IS NULL AND {val} IS NOT NULL AND {val} NOT IN "
            f"(SELECT __k FROM __ref{i})")
        con.execute(f"DROP TABLE __ref{i}")
        flag = f"__x_ref{kind}"
        ref_flags.append(f"bool_or(__kind = {kind}) AS {flag}")
        extra_conds.append((
            ref.column, f"coalesce({flag}, FALSE)",
            "'unknown " + ref.column + " ''' || " + val + " || ''' (not in " + ref.table + ")'",
        ))
    row_id = _ROW_ID.format(fno="__fno", row="__row")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __x AS
        SELECT __fno AS __x_fno, __row AS __x_row, {row_id} AS __x_id,
               bool_or(__kind = 0) AS __x_dup, bool_or(__kind = 1) AS __x_old,
               max(__first_row) FILTER (WHERE __kind = 0) AS __dup_first_row,
               max(__first_file) FILTER (WHERE __kind = 0) AS __dup_first_file,
               max(__src) FILTER (WHERE __kind = 1) AS __old_src
               {''.join(', ' + f for f in ref_flags)}
        FROM __marks GROUP BY 1, 2, 3""")
    con.execute("DROP TABLE __marks")

    fail_whens = " ".join(
        f"WHEN {cond} THEN {n_checks + j}" for j, (_, cond, _) in enumerate(extra_conds, 1)
    )
    carry = "".join(", " + col for col in carried)
    # a view: each output (accepted rows, quarantine, money) streams the work file again
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW checked AS
        SELECT c.*, CASE WHEN __f IS NOT NULL THEN __f {fail_whens} END AS __fail{carry}
        FROM c LEFT JOIN __x ON __x_fno = c.__fno AND __x_row = c.__row
    """)

    # accepted rows, typed to the contract
    select_cols = []
    for col in table.columns:
        if col.name in present:
            select_cols.append(f"{typed(col)} AS {q(col.name)}")
        else:
            select_cols.append(f"CAST(NULL AS {STORAGE_TYPE[col.type]}) AS {q(col.name)}")
    select_cols += [f"CAST({q(c)} AS VARCHAR) AS {q(c)}" for c in extras]
    select_cols.append(f"{lit(source_id)} AS _source")
    if table.load_mode == "append":
        select_cols.append(f"{lit(delivery)} AS _delivery")
        select_cols.append(f"CAST({int(load_version)} AS INTEGER) AS _load_version")
    partition_by: tuple[str, ...] = ()
    if table.activity_date:
        select_cols.append(_activity_partitions(table))
        partition_by = ("financial_year", "month")
    # every row of ``__x`` fails a cross-row check: the accepted rows are those passing the
    # single-row and row-level checks and absent from ``__x``, found by an anti-join on
    # one number (cheaper than joining ``__x``'s columns to every row, as ``checked`` does)
    passes = "".join(f" AND NOT coalesce({cond}, FALSE)" for cond in row_level)
    accepted_sql = (
        f"SELECT {', '.join(select_cols)} FROM c ANTI JOIN __x "
        f"ON __x_id = {_ROW_ID.format(fno='c.__fno', row='c.__row')} WHERE __f IS NULL{passes}")

    replace = table.load_mode == "replace"
    if replace and tx.has_table(table.name):
        _refuse_shrink(con, table, path, allow_shrink)
        tx.drop_files("quarantine", f"q-{table.name}-")
        tx.drop_files("reconciliation", f"r-load-{table.name}-")
    rows_replaced = 0
    if revision and tx.has_table(table.name):
        rows_replaced = _replace_revised(tx, con, table, source_id, str(path), load_version,
                                         loaded_at)
    rows_accepted = tx.write(
        con, table.name, accepted_sql, file_prefix=f"src-{source_id}",
        partition_by=partition_by, replace=replace,
        meta={"kind": table.kind, "load_mode": table.load_mode},
    )
    if table.load_mode == "append" and table.key_columns:
        write_key_summaries(con, tx, table, sorted(
            tx.table_dir(table.name).rglob(f"src-{source_id}-*.parquet")))
    sources = tx.manifest["tables"][table.name].setdefault("sources", {})
    if replace:
        sources.clear()

    # quarantine: rule failures plus rows the CSV reader could not parse
    vsql = _value_sql(checks, extra_conds)
    keep = QUARANTINE_VALUE_CHARS
    quarantine_sql = f"""
        SELECT {lit(table.name)} AS source_table, __file AS source_file,
               CAST(__row AS BIGINT) AS row_number, __col AS "column", __value AS value,
               __reason AS reason, CAST({lit(loaded_at)} AS TIMESTAMP) AS loaded_at
        FROM (SELECT *, {_pick_column(checks, extra_conds)} AS __col, {vsql} AS __value,
                     {_pick_reason(checks, extra_conds)} AS __reason
              FROM checked WHERE __fail IS NOT NULL)
        UNION ALL
        SELECT {lit(table.name)}, __file, CAST(__row AS BIGINT), col,
               CASE WHEN length(value) > {keep} THEN left(value, {keep}) || '...' ELSE value END,
               CASE WHEN kind = 'LINE SIZE OVER MAXIMUM' THEN 'unreadable row: line longer '
                    || 'than {MAX_LINE_BYTES:,} bytes (' || message || ')'
                    ELSE 'unreadable row: ' || lower(replace(kind, '_', ' ')) || ' ('
                    || message || ')' END,
               CAST({lit(loaded_at)} AS TIMESTAMP)
        FROM rejects
        ORDER BY source_file, row_number
    """
    rows_quarantined = tx.write(
        con, "quarantine", quarantine_sql, file_prefix=f"q-{table.name}-{source_id}",
        meta={"kind": "output"},
    )
    rows_in = con.execute(  # ``checked`` has one row per row of ``c``
        "SELECT (SELECT count(*) FROM c) + (SELECT count(*) FROM rejects)")
    n_in = int(rows_in.fetchall()[0][0])

    money_in = money_out = money_unattributed = None
    money_unknown = 0
    if table.money:
        num = n(table.money)
        ok = f"(isfinite({num}) AND abs({num}) < {MAX_AMOUNT})"
        m = f"CASE WHEN {ok} THEN CAST(round({num}, 2) AS DECIMAL(18,2)) END"
        unknown = "FALSE"
        if "practice_code" in present and tx.has_table("practices"):
            pc = v("practice_code")
            unknown = f"({pc} IS NULL OR {pc} NOT IN (SELECT practice_code FROM practices))"
        row = con.execute(f"""
            SELECT coalesce(sum({m}), 0), coalesce(sum({m}) FILTER (WHERE __fail IS NULL), 0),
                   coalesce(sum({m}) FILTER (WHERE __fail IS NULL AND {unknown}), 0),
                   count(*) FILTER (WHERE {v(table.money)} IS NOT NULL AND NOT
                                    coalesce({ok}, FALSE))
            FROM checked""").fetchall()[0]
        money_in, money_out, money_unattributed = (Decimal(x) for x in row[:3])
        money_unknown = int(row[3])
        read, unread = _rejected_money(con, columns, table.money)
        money_in += read
        money_unknown += unread
    status = ("revised" if revision else "replaced" if replace and sources == {} and
              tx.base_version > 0 else "loaded")
    rec = TableLoad(
        table.name, str(path), status, n_in, rows_accepted, rows_quarantined,
        money_in, money_out, money_unattributed, extras, money_unknown, rows_replaced,
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
        "delivery": delivery, "load_version": load_version, "revision": revision,
        "rows_replaced": rows_replaced,
    }
    con.execute(f"CREATE OR REPLACE VIEW {q(table.name)} AS {scan_sql(tx.glob(table.name))}")
    return rec


def _replace_revised(
    tx: Transaction, con: duckdb.DuckDBPyConnection, table: Table, source_id: str,
    path: str, load_version: int, at: str,
) -> int:
    """Move the stored rows whose key an accepted revision row carries into the
    ``revisions`` history, and take them out of the table; returns how many.

    Each stored file holding such a row is rewritten without it under a new inode (the
    file may be a hard link shared with the current version, which must not change)."""
    stored = _key_sql(table.key_columns, lambda c: f"CAST({q(c)} AS VARCHAR)")
    key = _key_sql(table.key_columns, v)
    whole = "".join(f" AND {v(c)} IS NOT NULL" for c in table.key_columns)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __revised AS
        SELECT DISTINCT {key} AS __k FROM checked WHERE __fail IS NULL{whole}""")
    files = [str(f) for f in sorted(tx.table_dir(table.name).rglob("*.parquet"))]
    hit = [str(r[0]) for r in con.execute(f"""
        SELECT DISTINCT filename FROM read_parquet(
            {'[' + ', '.join(lit(f) for f in files) + ']'}, filename = true,
            union_by_name = true)
        WHERE {stored} IN (SELECT __k FROM __revised) ORDER BY 1""").fetchall()]
    if not hit:
        return 0
    con.execute("CREATE OR REPLACE TEMP TABLE __old (__k VARCHAR, __file VARCHAR, "
                "replaced_source VARCHAR, replaced_load_version INTEGER, replaced_row JSON)")
    for name in hit:
        cols = {r[0] for r in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({lit(name)})").fetchall()}
        version = "CAST(t._load_version AS INTEGER)" if "_load_version" in cols else "NULL"
        con.execute(f"""
            INSERT INTO __old SELECT {stored}, {lit(name)}, CAST(t._source AS VARCHAR),
                   {version}, to_json(t)
            FROM (SELECT * FROM read_parquet({lit(name)})) t
            WHERE {stored} IN (SELECT __k FROM __revised)""")
    n_old = int(con.execute("SELECT count(*) FROM __old").fetchall()[0][0])
    tx.write(con, "revisions", f"""
        SELECT {lit(table.name)} AS source_table, __k AS key, replaced_source,
               replaced_load_version, CAST(replaced_row AS VARCHAR) AS replaced_row,
               {lit(source_id)} AS revision_source, {lit(path)} AS revision_file,
               CAST({int(load_version)} AS INTEGER) AS load_version,
               CAST({lit(at)} AS TIMESTAMP) AS revised_at
        FROM __old ORDER BY __k, __file""", file_prefix=f"v-{table.name}-{source_id}",
             meta={"kind": "output"})
    for name in hit:
        target = Path(name)
        tmp = target.with_name(f".{target.name}.{source_id}.tmp")
        con.execute(f"""
            COPY (SELECT * FROM read_parquet({lit(name)}) WHERE {stored} NOT IN
                  (SELECT __k FROM __revised)) TO {lit(str(tmp))} (FORMAT parquet)""")
        os.replace(tmp, target)
    tx.changed = True
    return n_old


def _refuse_shrink(
    con: duckdb.DuckDBPyConnection, table: Table, path: Path, allow_shrink: bool
) -> None:
    """Refuse to replace a reference table by a snapshot with far fewer rows (none, or
    fewer than half), unless asked for explicitly: an empty ``practices.csv`` would
    otherwise make all activity unattributed."""
    if allow_shrink:
        return
    old = int(con.execute(f"SELECT count(*) FROM {q(table.name)}").fetchall()[0][0])
    new = int(con.execute("SELECT count(*) FROM checked WHERE __fail IS NULL").fetchall()[0][0])
    if old > 0 and (new == 0 or new * 2 < old):
        raise LoadError(
            f"{path}: would replace {table.name} ({old:,} rows) with {new:,} rows; check the "
            "file, or pass --allow-shrink to replace the table anyway"
        )


def _rejected_money(
    con: duckdb.DuckDBPyConnection, columns: list[str], money: str
) -> tuple[Decimal, int]:
    """The money of CSV rows that could not be read: the field in the money column's
    place, when it is an amount (e.g. a row with a surplus field at its end); and how
    many such rows have no readable amount."""
    total, unread = Decimal(0), 0
    at = columns.index(money)
    for (line,) in con.execute("SELECT value FROM rejects").fetchall():
        amount = None
        try:
            fields = next(csv.reader([line or ""]), [])
            if len(fields) > at:
                amount = Decimal(fields[at].strip())
        except (csv.Error, InvalidOperation):
            amount = None
        if (amount is not None and amount.is_finite() and abs(amount) < MAX_AMOUNT
                and amount == amount.quantize(Decimal("0.01"))):
            total += amount
        else:
            unread += 1
    return total, unread


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
    except UnicodeDecodeError as e:
        raise LoadError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at position "
                        f"{e.start}); save the file as UTF-8") from e
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
    def money(v: Decimal | None) -> str:
        return "CAST(NULL AS DECIMAL(18,2))" if v is None else f"CAST('{v}' AS DECIMAL(18,2))"

    sql = (
        f"SELECT 'load' AS stage, {lit(rec.table)} AS source_table, "
        f"{lit(rec.source_file)} AS source_file, CAST({rec.rows_in} AS BIGINT) AS rows_in, "
        f"CAST({rec.rows_accepted} AS BIGINT) AS rows_accepted, "
        f"CAST({rec.rows_quarantined} AS BIGINT) AS rows_quarantined, "
        f"{money(rec.money_in)} AS money_in, {money(rec.money_out)} AS money_out, "
        f"{money(rec.money_unattributed)} AS money_unattributed, "
        f"CAST({lit(at)} AS TIMESTAMP) AS recorded_at, "
        f"CAST({rec.rows_replaced} AS BIGINT) AS rows_replaced"
    )
    tx.write(con, "reconciliation", sql, file_prefix=f"r-load-{rec.table}-{source_id}",
             meta={"kind": "output"})


def _pick_reason(checks: list[Check], extra: list[tuple[str, str, str]]) -> str:
    whens = [f"WHEN {i} THEN {c.reason_sql or lit(c.reason)}" for i, c in enumerate(checks, 1)]
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
    *,
    allow_shrink: bool = False,
) -> LoadReport:
    """Load every contract table found in ``input_dir`` into ``warehouse`` atomically.

    ``allow_shrink`` lets a reference snapshot replace a table with far fewer rows (see
    :func:`_refuse_shrink`). Any error leaves the warehouse as it was; an error writing
    the warehouse (a full disk) is a :class:`LoadError` saying so."""
    input_dir = Path(input_dir)
    root = warehouse.root
    if root.exists() and not root.is_dir():
        raise LoadError(f"{root}: the warehouse path is a file, not a folder; choose a folder")
    bad = sorted({ch for ch in "'[]*?{}" if ch in str(root)})
    if bad:
        raise LoadError(
            f"{root}: the warehouse path contains {' '.join(bad)}, which pbc cannot use in a "
            "path (they are quoting and wildcard characters); choose another folder"
        )
    found, ignored = discover(input_dir)
    if not found:
        raise LoadError(
            f"{input_dir}: no input tables found (expected files named after the contract "
            f"tables, e.g. apc_spells.parquet or practices.csv)"
        )
    base = warehouse.manifest()["version"] if warehouse.exists() else 0
    try:
        return _load(input_dir, warehouse, found, ignored, progress, allow_shrink)
    except (OSError, duckdb.IOException) as e:
        if isinstance(e, OSError) and e.errno not in _WRITE_ERRNOS:
            raise LoadError(f"{e.filename or root}: {e.strerror or e}") from e
        reason = e.strerror if isinstance(e, OSError) else str(e).strip().splitlines()[0]
        raise LoadError(
            f"cannot write the warehouse {root}: {reason}; the warehouse is unchanged "
            f"(version {base})"
        ) from e


#: errors of writing (a full disk, a quota, a read-only or failing file system)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG}


def _load(
    input_dir: Path,
    warehouse: Warehouse,
    found: dict[str, Path],
    ignored: list[str],
    progress: Progress | None,
    allow_shrink: bool,
) -> LoadReport:
    loaded_at = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    order = ([t for t in TABLES if t in found]
             + [f"{REVISIONS_FOLDER}/{t}" for t in TABLES if f"{REVISIONS_FOLDER}/{t}" in found]
             + [f for f in REFERENCE_FILES if f in found])
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
                revision = name.startswith(f"{REVISIONS_FOLDER}/")
                name = name.removeprefix(f"{REVISIONS_FOLDER}/")
                entry = tx.manifest["tables"].get(name)
                known = tx.manifest.get("files", {}).get(name, {}).get("sha256")
                if (entry and digest in entry.get("sources", {})) or known == digest:
                    results.append(TableLoad(name, str(path), "unchanged"))
                    continue
                if name in REFERENCE_FILES:
                    results.append(_load_reference_file(tx, path, digest, loaded_at))
                else:
                    results.append(_load_table(
                        tx, con, TABLES[name], path, digest, loaded_at, allow_shrink,
                        revision=revision, load_version=tx.base_version + 1,
                        delivery=input_dir.name))
                if fail_after == name:
                    raise RuntimeError(f"PBC_TEST_FAIL_AFTER={name}: simulated failure")
            if progress:
                progress("load", len(order), len(order))
        finally:
            con.close()
        changed = tx.changed
        version = tx.base_version + (1 if changed else 0)
    return LoadReport(warehouse.root, results, ignored, version, changed)
