"""``pbc export``: who may take which table out of the warehouse.

Patient-level tables (any table with a ``patient_id`` column: patients, their conditions,
hospital activity, priced activity, risk scores; and ``quarantine``, whose rows are raw
input values that can hold patient identifiers) leave the warehouse only for a principal
entitled to them:

- a ``practice`` user gets its own registered or attributed patients' rows
  (``practice_code`` equal to its code); never the quarantine, whose rows carry no
  practice;
- the commissioner's data role (``commissioner_data`` for a commissioner of this
  warehouse) gets every row;
- every other role, and no principal at all, is refused with the reason.

Every patient-level export is recorded in the decision store's audit log (who, role, table,
file, rows) before it is reported done; if the audit row cannot be written the exported file
is removed. Exported patient-level files are readable by owner and group only. Other tables
(organisations, tariffs, reconciliation) export for anyone. See docs/security.md.
"""

from __future__ import annotations

from pathlib import Path

from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.export import export_table as write_table
from pbc.warehouse.validate import lit

#: tables of raw input rows that may hold patient identifiers in any column
RAW_ROW_TABLES = ("quarantine",)


def patient_level(warehouse: Warehouse, table: str) -> bool:
    """Whether ``table`` holds one row per patient or per patient event (or raw rows)."""
    if table in RAW_ROW_TABLES:
        return True
    con = warehouse.connect()
    try:
        warehouse.table_dir(table)  # a clear error for an unknown table
        cols = {r[0] for r in con.execute(f'DESCRIBE "{table}"').fetchall()}
    finally:
        con.close()
    return "patient_id" in cols


def _commissioners(warehouse: Warehouse) -> set[str]:
    if not warehouse.has_table("practices"):
        return set()
    return {str(r[0]) for r in warehouse.query(
        "SELECT DISTINCT commissioner_code FROM practices") if r[0] is not None}


def export_table(warehouse: Warehouse, table: str, out: Path | str,
                 principal: Principal | None) -> int:
    """Write ``table`` to ``out`` (.csv, .parquet, .xlsx) for ``principal``; rows written.

    Raises :class:`AccessDenied` (saying why) when the principal may not have the rows."""
    out = Path(out)
    if not warehouse.exists():
        raise WarehouseError(f"{warehouse.root}: no warehouse here yet (run pbc load first)")
    warehouse.refuse_inside(out)
    if not patient_level(warehouse, table):
        return write_table(warehouse, table, out)
    if principal is None:
        raise AccessDenied(
            f"{table} holds patient-level rows: say who you are with --as "
            "(practice:CODE for a practice's own patients, commissioner_data:CODE for the "
            "commissioner's data role)")
    where = _rows_for(warehouse, table, principal)
    rows = write_table(warehouse, table, out, where=where, private=True)
    try:
        _audit(warehouse, principal, table, out, rows)
    except Exception:
        out.unlink(missing_ok=True)
        raise
    return rows


def _rows_for(warehouse: Warehouse, table: str, principal: Principal) -> str | None:
    """The condition limiting ``table`` to ``principal``'s patients, or AccessDenied."""
    if principal.role == "commissioner_data":
        codes = _commissioners(warehouse)
        if principal.organisation not in codes:
            raise AccessDenied(
                f"{principal}: {principal.organisation} is not a commissioner of this "
                f"warehouse ({', '.join(sorted(codes)) or 'none loaded'})")
        return None
    if principal.role == "practice":
        if table in RAW_ROW_TABLES:
            raise AccessDenied(f"{principal}: {table} rows are raw input rows of every "
                               "practice; only the commissioner's data role may export them")
        known = {str(r[0]) for r in warehouse.query("SELECT practice_code FROM practices")} \
            if warehouse.has_table("practices") else set()
        if principal.organisation not in known:
            raise AccessDenied(f"{principal}: {principal.organisation} is not a practice "
                               "of this warehouse")
        con = warehouse.connect()
        try:
            cols = {r[0] for r in con.execute(f'DESCRIBE "{table}"').fetchall()}
        finally:
            con.close()
        if "practice_code" not in cols:
            raise AccessDenied(f"{principal}: {table} has no practice_code, so its rows "
                               "cannot be limited to one practice's patients")
        return f"practice_code = {lit(principal.organisation)}"
    raise AccessDenied(
        f"{principal}: {table} holds patient-level rows; only a practice (its own "
        "patients) or the commissioner's data role may export them")


def _audit(warehouse: Warehouse, who: Principal, table: str, out: Path, rows: int) -> None:
    """One audit row per patient-level export, in the decision store beside the warehouse."""
    from pbc.decisions.store import DecisionStore

    store = DecisionStore.beside(warehouse.root)
    with store._tx() as session:
        store._audit(session, who, "export", "table", table, file=str(out.resolve()),
                     rows=rows, authenticated=who.authenticated, source=who.source,
                     warehouse_version=warehouse.manifest()["version"])
