"""Benchmarking service: indicator library + warehouse -> benchmark tables and exports."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd

from pbc.indicators.benchmark import benchmark
from pbc.indicators.definition import Indicator, load_indicators
from pbc.warehouse import Warehouse, WarehouseError


def list_indicators(folder: Path | None = None) -> list[Indicator]:
    return list(load_indicators(folder).values())


def read_grouping(path: Path) -> pd.DataFrame:
    """A user's own grouping: a CSV with ``practice_code`` and ``group_code`` columns."""
    frame = pd.read_csv(path, dtype=str)
    missing = [c for c in ("practice_code", "group_code") if c not in frame.columns]
    if missing:
        raise WarehouseError(f"{path}: missing column(s) {', '.join(missing)} "
                             "(expected practice_code,group_code)")
    return frame


def run_benchmark(
    warehouse: Warehouse,
    indicator_id: str,
    *,
    level: Literal["practice", "group", "commissioner"] = "practice",
    grouping_file: Path | None = None,
    financial_year: str | None = None,
    out: Path | None = None,
) -> pd.DataFrame:
    """The benchmark table for one indicator; written to ``out`` (.csv/.xlsx) if given."""
    indicators = load_indicators()
    if indicator_id not in indicators:
        raise WarehouseError(f"unknown indicator {indicator_id!r}; known: "
                             f"{', '.join(sorted(indicators))}")
    if not warehouse.exists():
        raise WarehouseError(f"{warehouse.root}: no warehouse here yet (run pbc load first)")
    backend = warehouse.ibis()
    tables = {n: backend.table(n) for n in warehouse.table_names()}
    grouping = read_grouping(grouping_file) if grouping_file else None
    frame = benchmark(tables, indicators[indicator_id], level=level,
                      financial_year=financial_year, grouping=grouping)
    if out is not None:
        if out.suffix.lower() == ".xlsx":
            frame.to_excel(out, index=False, sheet_name=indicator_id[:31], engine="xlsxwriter")
        elif out.suffix.lower() == ".csv":
            frame.to_csv(out, index=False)
        else:
            raise WarehouseError(f"{out}: use .csv or .xlsx")
    return frame
