"""The synthetic economy as the provider would send it: monthly deliveries, late and revised.

``pbc synth --deliveries monthly`` writes the same economy as ``--deliveries none`` (the same
seed gives the same rows), split into delivery folders named by the calendar month in which
they arrive (``deliveries/2025-04/``, ``deliveries/2025-05/``, ...):

* the **first delivery** (the first month of the last financial year) holds every reference
  table and tariff file, and all activity that has arrived by then (earlier years, and the
  late rows of the last months before it);
* activity dated in month *M* arrives in delivery *M + lag*: 1 month for 80% of rows, 2 for
  15%, 3 for 5% (docs/calibration.md, "Monthly deliveries": the SUS+ flex and freeze
  timetable, with a tail of late coding);
* a few rows are **revised**: the first delivery of the row carries a version with another
  HRG (admitted care, A&E), another treatment function (outpatients) or a cost 10% higher
  (prescribing); the true row comes one or two months later in that delivery's
  ``revisions/`` folder (SUS's "original or replacement": the later submission of a record
  replaces the earlier). A revision never moves a row to another month or practice;
* the last delivery is three months after the last month of activity, so every row arrives.

The union of the deliveries, each revision replacing the row it revises, is exactly the
``--deliveries none`` output (``tests/test_deliveries.py``). The draws are hashes of the
seed and each row's content, so a seed gives the same deliveries on every run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pbc.contracts import TABLES, Table
from pbc.warehouse.load import REVISIONS_FOLDER
from pbc.warehouse.validate import lit, q

#: share of rows arriving 1, 2 and 3 months after their activity month (cumulative bounds)
LAG_PROFILE: tuple[tuple[int, float], ...] = ((1, 0.80), (2, 0.95), (3, 1.0))
#: share of rows of each table delivered first in a wrong version and revised later
REVISION_RATES: dict[str, float] = {
    "apc_spells": 0.01, "op_attendances": 0.002, "ae_attendances": 0.002,
    "prescribing": 0.002,
}
#: the activity tables split into deliveries (the rest are reference tables)
DELIVERED = ("apc_spells", "op_attendances", "ae_attendances", "prescribing",
             "social_care_packages")
MAX_LAG = max(lag for lag, _ in LAG_PROFILE)


@dataclass
class DeliveriesSummary:
    """What was written: the delivery folders in order, rows per delivery and table, and
    revisions per delivery and table."""

    folders: list[Path]
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    revisions: dict[str, dict[str, int]] = field(default_factory=dict)


def month_name(index: int) -> str:
    """``year * 12 + month - 1`` -> ``YYYY-MM``."""
    return f"{index // 12}-{index % 12 + 1:02d}"


def _activity_date(table: Table) -> str:
    """The row's activity date (NULL when it is not a valid date: a deliberate fault)."""
    assert table.activity_date is not None
    col = f"CAST({q(table.activity_date)} AS VARCHAR)"
    if table.column(table.activity_date).type == "year_month":
        return f"TRY_CAST({col} || '-01' AS DATE)"
    return f"TRY_CAST({col} AS DATE)"


def _altered(table: Table, types: dict[str, str]) -> dict[str, str]:
    """The columns a wrong first version changes, as SQL over the row and its neighbour in
    file order (an HRG or treatment function that exists in the economy)."""
    def same(col: str, expr: str) -> str:
        return f"CAST({expr} AS {types[col]})"

    if table.name in ("apc_spells", "ae_attendances"):
        col = "hrg_code"
    elif table.name == "op_attendances":
        col = "treatment_function_code"
    elif table.name == "prescribing":
        cost = "TRY_CAST(CAST(actual_cost AS VARCHAR) AS DECIMAL(18,2))"
        raised = f"CAST(CAST(round({cost} * 1.1, 2) AS DECIMAL(18,2)) AS {types['actual_cost']})"
        return {"actual_cost": f"coalesce({raised}, actual_cost)"}
    else:
        return {}
    other = f"lag({q(col)}) OVER (ORDER BY __pos)"
    return {col: same(col, f"CASE WHEN {other} IS NULL OR {other} = {q(col)} THEN "
                           f"lead({q(col)}) OVER (ORDER BY __pos) ELSE {other} END")}


def _source(out: Path, name: str) -> tuple[Path, str] | None:
    for ext in ("parquet", "csv"):
        if (out / f"{name}.{ext}").exists():
            return out / f"{name}.{ext}", ext
    if (out / name).is_dir():
        ext = "parquet" if any((out / name).glob("*.parquet")) else "csv"
        return out / name, ext
    return None


def _reader(path: Path, ext: str) -> str:
    target = str(path / f"*.{ext}") if path.is_dir() else str(path)
    if ext == "parquet":
        return f"read_parquet({lit(target)})"
    return (f"read_csv({lit(target)}, all_varchar = true, header = true, delim = ',', "
            "quote = '\"', escape = '\"', auto_detect = false, "
            "columns = __COLUMNS__)")


def split_into_deliveries(out: Path, *, seed: int, last_start_year: int) -> DeliveriesSummary:
    """Move the economy written in ``out`` (one file per table) into monthly delivery
    folders under ``out/deliveries``; see the module's docstring."""
    first = last_start_year * 12 + 3  # April of the last financial year
    final = (last_start_year + 1) * 12 + 2 + MAX_LAG  # three months after its March
    root = out / "deliveries"
    shutil.rmtree(root, ignore_errors=True)
    folders = [root / month_name(m) for m in range(first, final + 1)]
    for f in folders:
        f.mkdir(parents=True)
    summary = DeliveriesSummary(folders)
    first_dir = folders[0]
    # reference tables and the tariff files: all in the first delivery
    for name in TABLES:
        found = _source(out, name)
        if found is None or name in DELIVERED:
            continue
        shutil.move(str(found[0]), first_dir / found[0].name)
    if (out / "tariff_settings.toml").exists():
        shutil.move(str(out / "tariff_settings.toml"), first_dir / "tariff_settings.toml")
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("SET preserve_insertion_order = true")
        for name in DELIVERED:
            found = _source(out, name)
            if found is None:
                continue
            _split_table(con, TABLES[name], found[0], found[1], seed, first, final, folders,
                         summary)
            if found[0].is_dir():
                shutil.rmtree(found[0])
            else:
                found[0].unlink()
    finally:
        con.close()
    return summary


def _split_table(con: duckdb.DuckDBPyConnection, table: Table, path: Path, ext: str,
                 seed: int, first: int, final: int, folders: list[Path],
                 summary: DeliveriesSummary) -> None:
    cols = [c.name for c in table.columns]
    reader = _reader(path, ext).replace(
        "__COLUMNS__", "{" + ", ".join(f"{lit(c)}: 'VARCHAR'" for c in cols) + "}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE src AS SELECT row_number() OVER () AS __pos, "
                f"{', '.join(q(c) for c in cols)} FROM {reader}")
    types = {str(r[0]): str(r[1]) for r in con.execute("DESCRIBE src").fetchall()}
    row_text = " || chr(31) || ".join(f"coalesce(CAST({q(c)} AS VARCHAR), '')" for c in cols)
    date = _activity_date(table)
    u = f"(hash({int(seed)}, 'lag', {row_text}) % 1000000) / 1000000.0"
    lag = "CASE " + " ".join(f"WHEN {u} < {bound} THEN {n}" for n, bound in LAG_PROFILE) + \
        f" ELSE {MAX_LAG} END"
    month = f"year({date}) * 12 + month({date}) - 1"
    arrives = (f"CASE WHEN {date} IS NULL THEN {first} "
               f"ELSE greatest({first}, least({final}, {month} + {lag})) END")
    rate = REVISION_RATES.get(table.name, 0.0)
    key = " || chr(31) || ".join(f"coalesce(CAST({q(c)} AS VARCHAR), '')"
                                 for c in table.key_columns)
    u2 = f"(hash({int(seed)}, 'revise', {row_text}) % 1000000) / 1000000.0"
    later = f"(1 + hash({int(seed)}, 'when', {row_text}) % 2)"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE placed AS
        SELECT *, {arrives} AS __arrives,
               CASE WHEN {rate} > 0 AND {date} IS NOT NULL AND {u2} < {rate}
                    AND count(*) OVER (PARTITION BY {key}) = 1
                    AND {arrives} + {later} <= {final}
                    THEN {arrives} + {later} END AS __revised_in
        FROM src""")
    altered = _altered(table, types)
    wrong = ", ".join(
        (f"CASE WHEN __revised_in IS NOT NULL THEN {altered[c]} ELSE {q(c)} END AS {q(c)}"
         if c in altered else q(c)) for c in cols)
    con.execute(f"CREATE OR REPLACE TEMP TABLE first_versions AS SELECT __pos, __arrives, "
                f"__revised_in, {wrong} FROM placed")
    col_list = ", ".join(q(c) for c in cols)
    opts = ("FORMAT parquet, COMPRESSION zstd" if ext == "parquet"
            else "FORMAT csv, HEADER, DELIMITER ','")
    for m, folder in zip(range(first, final + 1), folders, strict=True):
        d = folder.name
        n = con.execute(f"SELECT count(*) FROM first_versions WHERE __arrives = {m}"
                        ).fetchall()[0][0]
        if n:
            con.execute(f"COPY (SELECT {col_list} FROM first_versions WHERE __arrives = {m} "
                        f"ORDER BY __pos) TO {lit(str(folder / f'{table.name}.{ext}'))} "
                        f"({opts})")
            summary.rows.setdefault(d, {})[table.name] = int(n)
        r = con.execute(f"SELECT count(*) FROM placed WHERE __revised_in = {m}").fetchall()[0][0]
        if r:
            (folder / REVISIONS_FOLDER).mkdir(exist_ok=True)
            con.execute(f"COPY (SELECT {col_list} FROM placed WHERE __revised_in = {m} "
                        f"ORDER BY __pos) TO "
                        f"{lit(str(folder / REVISIONS_FOLDER / f'{table.name}.{ext}'))} "
                        f"({opts})")
            summary.revisions.setdefault(d, {})[table.name] = int(r)

