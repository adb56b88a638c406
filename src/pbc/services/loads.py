"""What was loaded: each load's reconciliation (rows in = accepted + quarantined) for the
commissioner (``pbc load`` writes it; docs/bad-input.md)."""

from __future__ import annotations

import pandas as pd

from pbc.services.principal import AccessDenied, Principal
from pbc.warehouse import Warehouse

COMMISSIONER_ROLES = ("commissioner", "commissioner_data")


def reconciliation(warehouse: Warehouse, who: Principal) -> pd.DataFrame:
    """One row per loaded file and stage: rows in, accepted, quarantined, money in and out,
    and ``reconciles`` (yes when rows in = accepted + quarantined). Only for the
    warehouse's commissioner (finance or data role)."""
    codes = {str(r[0]) for r in warehouse.query(
        "SELECT DISTINCT commissioner_code FROM practices")} \
        if warehouse.has_table("practices") else set()
    if who.role not in COMMISSIONER_ROLES or (codes and who.organisation not in codes):
        raise AccessDenied(f"{who} may not see the data loads: only the warehouse's "
                           f"commissioner ({', '.join(sorted(codes)) or 'none'})")
    columns = ["stage", "source_table", "source_file", "rows_in", "rows_accepted",
               "rows_quarantined", "money_in", "money_out", "reconciles"]
    if not warehouse.has_table("reconciliation"):
        return pd.DataFrame(columns=columns)
    rows = warehouse.query(
        "SELECT stage, source_table, source_file, rows_in, rows_accepted, rows_quarantined, "
        "money_in, money_out FROM reconciliation ORDER BY recorded_at, stage, source_table")
    frame = pd.DataFrame(rows, columns=columns[:-1])
    frame["reconciles"] = ["yes" if int(i) == int(a) + int(q) else "NO" for i, a, q in zip(
        frame.rows_in, frame.rows_accepted, frame.rows_quarantined, strict=True)]
    return frame
