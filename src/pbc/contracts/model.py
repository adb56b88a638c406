"""The shape of a data contract: columns, types, rules, and table-level rules.

A contract is pure data. The loader (``pbc.warehouse.load``) turns it into
validation SQL; ``pbc.contracts.docs`` turns it into ``docs/data-contracts.md``;
the synthetic generator writes files that satisfy it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["code", "text", "date", "int", "decimal", "float", "bool", "year_month"]

#: DuckDB type each contract type is stored as in the warehouse.
STORAGE_TYPE: dict[ColumnType, str] = {
    "code": "VARCHAR",
    "text": "VARCHAR",
    "date": "DATE",
    "int": "BIGINT",
    "decimal": "DECIMAL(18,2)",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "year_month": "VARCHAR",
}

TableKind = Literal["organisation", "population", "activity", "tariff"]


@dataclass(frozen=True)
class Column:
    """One column of an input table.

    ``required`` means the column must be present in the file; ``nullable`` whether a
    value may be blank. ``codes`` restricts values to a set; ``minimum``/``maximum``
    bound numbers (inclusive); ``pattern`` is a regular expression for code columns.
    """

    name: str
    type: ColumnType
    description: str
    example: str
    required: bool = True
    nullable: bool = False
    codes: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class Reference:
    """A cross-table rule: every non-blank ``column`` value exists in ``table.target``."""

    column: str
    table: str
    target: str
    #: when False, an unknown value is kept (e.g. an unknown practice is unattributed activity)
    enforce: bool = True


@dataclass(frozen=True)
class DateOrder:
    """A row rule: ``later`` is not before ``earlier`` (when both are present), and, when
    ``max_days`` is set, not more than ``max_days`` after it (a plausibility bound, e.g. a
    length of stay: a spell admitted in 1901 and discharged in 2025 is a typing error)."""

    earlier: str
    later: str
    max_days: int | None = None


@dataclass(frozen=True)
class Table:
    """An input table of the data contract (docs/data-contracts.md)."""

    name: str
    kind: TableKind
    description: str
    columns: tuple[Column, ...]
    #: column whose values must be unique (None: no single-column key)
    key: str | None = None
    #: for a table whose rows have no id of their own: the columns that identify a row
    #: (e.g. prescribing's practice, month and BNF code). A repeat in a file, or a row
    #: already loaded from an earlier file, is quarantined, never a silent second copy.
    natural_key: tuple[str, ...] = ()
    references: tuple[Reference, ...] = ()
    date_orders: tuple[DateOrder, ...] = ()
    #: for activity: the date that places a row in a financial year and month
    activity_date: str | None = None
    #: money columns summed in reconciliation (pounds)
    money: str | None = None
    #: False for tables that may be absent from a delivery (e.g. ``practice_groups``)
    mandatory: bool = True
    #: "append": each new file adds rows (monthly activity); "replace": a new file is a snapshot
    load_mode: Literal["append", "replace"] = "replace"
    #: plausibility: the activity date lies within this many years of the file's main
    #: financial year (the year holding most of its rows); None: no such bound
    plausible_years: int | None = None

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The columns that identify a row: the id, else the natural key (maybe none)."""
        return (self.key,) if self.key else self.natural_key

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]
