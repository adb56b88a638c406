"""Names beside codes: the warehouse's reference tables (``practices``, ``groups``,
``commissioners``) as code -> name lookups, for the workbooks and statements pbc writes."""

from __future__ import annotations

from pbc.warehouse import Warehouse

#: table -> (code column, name column)
NAME_COLUMNS = {"practices": ("practice_code", "practice_name"),
                "groups": ("group_code", "group_name"),
                "commissioners": ("commissioner_code", "commissioner_name")}


def organisation_names(warehouse: Warehouse) -> dict[str, dict[str, str]]:
    """``{"practices": {code: name}, "groups": {...}, "commissioners": {...}}``; a table (or
    its name column) the warehouse does not have gives an empty lookup."""
    out: dict[str, dict[str, str]] = {t: {} for t in NAME_COLUMNS}
    tables = [t for t in NAME_COLUMNS if warehouse.has_table(t)]
    if not tables:
        return out
    con = warehouse.connect()
    try:
        for table in tables:
            key, name = NAME_COLUMNS[table]
            cols = {r[0] for r in con.execute(f'DESCRIBE "{table}"').fetchall()}
            if {key, name} <= cols:
                out[table] = {str(k): str(v) for k, v in con.execute(
                    f'SELECT "{key}", "{name}" FROM "{table}" WHERE "{name}" IS NOT NULL'
                ).fetchall()}
    finally:
        con.close()
    return out
