"""Data contracts: every input table's columns, types and rules (docs/data-contracts.md)."""

from pbc.contracts.model import STORAGE_TYPE, Column, DateOrder, Reference, Table
from pbc.contracts.tables import ACTIVITY_TABLES, TABLES

__all__ = [
    "ACTIVITY_TABLES",
    "STORAGE_TYPE",
    "TABLES",
    "Column",
    "DateOrder",
    "Reference",
    "Table",
]
