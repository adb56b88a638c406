"""Warehouse: versioned Parquet tables with a DuckDB catalogue; loading and quarantine."""

from pbc.warehouse.store import Transaction, Warehouse, WarehouseError

__all__ = ["Transaction", "Warehouse", "WarehouseError"]
