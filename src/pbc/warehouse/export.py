"""Write any warehouse table to CSV, Parquet or XLSX, chosen by the file's extension.

Who may export what is decided in :mod:`pbc.services.export`; this module writes. Text is
written as text: workbooks are written with xlsxwriter's ``strings_to_formulas`` and
``strings_to_urls`` off, and in CSV files a text value that a spreadsheet would run as a
formula (starting ``=``, ``+``, ``-``, ``@``, tab or carriage return) gets a leading ``'``
(OWASP, "CSV Injection"). Nothing is written inside the warehouse folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from pbc.warehouse.store import FILE_MODE, Warehouse, WarehouseError
from pbc.warehouse.validate import lit, q

#: Excel's sheet limit (1,048,576 rows) less the title block, the header and a totals row
XLSX_MAX_ROWS = 1_048_576 - 10
#: xlsxwriter options for every workbook pbc writes: text stays text, never a formula/link
XLSX_OPTIONS: dict[str, Any] = {"options": {"strings_to_formulas": False,
                                            "strings_to_urls": False}}
#: first characters that make a spreadsheet treat a CSV cell as a formula
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A text value a spreadsheet would run as a formula, with ``'`` in front."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


#: characters Excel does not allow in a sheet's name
_SHEET_FORBIDDEN = str.maketrans({c: "_" for c in "[]:*?/\\"})


def sheet_title(text: str) -> str:
    """A valid Excel sheet name for ``text``: the characters Excel refuses (``[ ] : * ? / \\``)
    replaced by ``_``, at most 31 characters, never blank (a code such as ``A8[1`` would
    otherwise stop a workbook with a traceback)."""
    title = str(text).translate(_SHEET_FORBIDDEN).strip("'")[:31]
    return title or "Sheet1"


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells are :func:`neutralise`-d (for CSV files)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise)
    return out


def _safe_sql(con: Any, select: str) -> str:
    """``select`` with every text column neutralised, in SQL (for DuckDB's CSV writer)."""
    cols = con.execute(f"DESCRIBE ({select})").fetchall()
    pattern = "^[=+\\-@\t\r]"
    parts = [f"CASE WHEN regexp_matches({q(c)}, {lit(pattern)}) THEN '''' || {q(c)} "
             f"ELSE {q(c)} END AS {q(c)}" if t == "VARCHAR" else q(c) for c, t, *_ in cols]
    return f"SELECT {', '.join(parts)} FROM ({select})"


def export_table(warehouse: Warehouse, table: str, out: Path, *, where: str | None = None,
                 private: bool = False) -> int:
    """Export ``table`` (rows matching the SQL condition ``where``, if given: its values
    quoted with :func:`~pbc.warehouse.validate.lit`); returns the number of rows written.
    ``private`` files are made readable by owner and group only.
    """
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".xlsx"):
        raise WarehouseError(f"{out}: unknown file type {suffix or '(none)'}; use .csv, "
                             ".parquet or .xlsx")
    if not warehouse.exists():
        raise WarehouseError(f"{warehouse.root}: no warehouse here yet (run pbc load first)")
    warehouse.refuse_inside(out)
    warehouse.table_dir(table)  # raises a clear error for an unknown table
    out.parent.mkdir(parents=True, exist_ok=True)
    con = warehouse.connect()
    try:
        cols = [r[0] for r in con.execute(f"DESCRIBE {q(table)}").fetchall()]
        select = f"SELECT * EXCLUDE (_source) FROM {q(table)}" if "_source" in cols \
            else f"SELECT * FROM {q(table)}"
        if where:
            select += f" WHERE {where}"
        con.execute(f"CREATE TEMP VIEW __export AS {select}{_order_by(cols)}")
        rows = int(con.execute("SELECT count(*) FROM __export").fetchall()[0][0])
        if suffix == ".xlsx" and rows > XLSX_MAX_ROWS:
            raise WarehouseError(
                f"{table} has {rows:,} rows, more than an Excel sheet holds "
                f"({XLSX_MAX_ROWS:,}); export to .csv or .parquet instead")
        tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
        try:
            if private:
                tmp.touch(mode=FILE_MODE)
            if suffix == ".csv":
                con.execute(f"COPY ({_safe_sql(con, 'SELECT * FROM __export')}) TO "
                            f"{lit(str(tmp))} (HEADER, DELIMITER ',')")
            elif suffix == ".parquet":
                con.execute(f"COPY __export TO {lit(str(tmp))} (FORMAT parquet)")
            else:
                _workbook(con, warehouse, table, tmp, where=where, private=private)
            if private:
                os.chmod(tmp, FILE_MODE)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        return rows
    finally:
        con.close()


def _order_by(cols: list[str]) -> str:
    for keys in (("source_table", "source_file", "row_number"), ("stage", "source_table"),
                 ("financial_year", "month")):
        if all(k in cols for k in keys):
            return " ORDER BY " + ", ".join(q(k) for k in keys)
    return ""


def _workbook(con: Any, warehouse: Warehouse, table: str, path: Path, *, where: str | None,
              private: bool) -> None:
    """The export as a workbook in the house style (:mod:`pbc.reports.workbook`): a title
    block naming the table, the rows chosen, the warehouse version and the export time;
    the columns under their own names (an export is read back by programs, and the names
    are the data contract's, docs/data-contracts.md); money as pounds; no totals row."""
    from pbc.reports.workbook import Column, TitleBlock, Workbook

    types = {c: str(t) for c, t, *_ in con.execute("DESCRIBE __export").fetchall()}
    frame = con.execute("SELECT * FROM __export").df()
    columns = [Column(c, c, _kind(t)) for c, t in types.items()]
    period = "every row of the table"
    if "financial_year" in frame.columns and len(frame):
        years = sorted(str(y) for y in frame["financial_year"].dropna().unique())
        if years:
            period = (f"financial year {years[0]}" if len(years) == 1
                      else f"financial years {years[0]} to {years[-1]}")
    title = TitleBlock(
        title=f"Warehouse table {table}",
        organisation=f"rows where {where}" if where else "every row",
        period=period,
        source=f"pbc warehouse {warehouse.root.name}, version "
               f"{warehouse.manifest().get('version')}; exported by pbc export")
    with Workbook(path, title, mode=FILE_MODE if private else None) as wb:
        # no totals row: a table's rows need not add up (reconciliation has one row per
        # stage, so a total of money_in would count the money twice)
        wb.table(table, frame, columns, heading=f"{len(frame):,} rows", totals=None)


def _kind(duckdb_type: str) -> Any:
    """How a column of this DuckDB type is shown: DECIMAL(p,2) as pounds, dates as dates,
    integers with separators, other numbers as they are (nothing rounded away)."""
    t = duckdb_type.upper()
    if t.startswith("DECIMAL") and t.replace(" ", "").endswith(",2)"):
        return "money"
    if t == "DATE":
        return "date"
    if t.startswith("TIMESTAMP"):
        return "datetime"
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
             "UINTEGER", "UBIGINT"):
        return "general"
    if t.startswith(("DECIMAL", "DOUBLE", "FLOAT", "REAL")):
        return "general"
    return "text"
