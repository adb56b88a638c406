"""Write any warehouse table to CSV, Parquet or XLSX, chosen by the file's extension."""

from __future__ import annotations

from pathlib import Path

from pbc.warehouse.store import Warehouse, WarehouseError
from pbc.warehouse.validate import lit, q

XLSX_MAX_ROWS = 1_048_575  # Excel's sheet limit, less the header row


def export_table(warehouse: Warehouse, table: str, out: Path) -> int:
    """Export ``table``; returns the number of rows written."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".xlsx"):
        raise WarehouseError(f"{out}: unknown file type {suffix or '(none)'}; use .csv, "
                             ".parquet or .xlsx")
    if not warehouse.exists():
        raise WarehouseError(f"{warehouse.root}: no warehouse here yet (run pbc load first)")
    warehouse.table_dir(table)  # raises a clear error for an unknown table
    out.parent.mkdir(parents=True, exist_ok=True)
    con = warehouse.connect()
    try:
        rows = int(con.execute(f"SELECT count(*) FROM {q(table)}").fetchall()[0][0])
        order = _order_by(con, table)
        select = f"SELECT * EXCLUDE (_source) FROM {q(table)}" if _has_column(
            con, table, "_source") else f"SELECT * FROM {q(table)}"
        select += order
        if suffix == ".csv":
            con.execute(f"COPY ({select}) TO {lit(str(out))} (HEADER, DELIMITER ',')")
        elif suffix == ".parquet":
            con.execute(f"COPY ({select}) TO {lit(str(out))} (FORMAT parquet)")
        else:
            if rows > XLSX_MAX_ROWS:
                raise WarehouseError(
                    f"{table} has {rows:,} rows, more than an Excel sheet holds "
                    f"({XLSX_MAX_ROWS:,}); export to .csv or .parquet instead"
                )
            frame = con.execute(select).df()
            frame.to_excel(out, sheet_name=table[:31], index=False, engine="xlsxwriter")
        return rows
    finally:
        con.close()


def _has_column(con: object, table: str, column: str) -> bool:
    cols = [r[0] for r in con.execute(f"DESCRIBE {q(table)}").fetchall()]  # type: ignore[attr-defined]
    return column in cols


def _order_by(con: object, table: str) -> str:
    cols = [r[0] for r in con.execute(f"DESCRIBE {q(table)}").fetchall()]  # type: ignore[attr-defined]
    for keys in (("source_table", "source_file", "row_number"), ("stage", "source_table"),
                 ("financial_year", "month")):
        if all(k in cols for k in keys):
            return " ORDER BY " + ", ".join(q(k) for k in keys)
    return ""
