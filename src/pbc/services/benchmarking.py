"""Benchmarking service: indicator library + warehouse -> benchmark tables, SPC series, exports.

The service opens the warehouse, picks the indicator and the grouping, and calls the pure
core (:mod:`pbc.indicators`). Writing: ``.csv`` (the benchmark table; the monthly series
beside it as ``NAME_monthly.csv``) or ``.xlsx`` (one workbook: the benchmark table, the
monthly series and a sheet describing the indicator).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from pbc.calendar import format_financial_year, parse_financial_year
from pbc.indicators.benchmark import ACTIVITY_TABLE, benchmark, monthly_series
from pbc.indicators.compute import with_populations
from pbc.indicators.definition import Indicator, load_indicators
from pbc.warehouse import Warehouse, WarehouseError
from pbc.warehouse.export import XLSX_OPTIONS, spreadsheet_safe

Level = Literal["practice", "group", "commissioner"]


def list_indicators(folder: Path | None = None) -> list[Indicator]:
    return list(load_indicators(folder).values())


def read_grouping(path: Path) -> pd.DataFrame:
    """A user's own grouping: a CSV with ``practice_code`` and ``group_code`` columns."""
    try:
        frame = pd.read_csv(path, dtype=str)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise WarehouseError(f"{path}: cannot read the grouping CSV: {e}") from e
    missing = [c for c in ("practice_code", "group_code") if c not in frame.columns]
    if missing:
        raise WarehouseError(f"{path}: missing column(s) {', '.join(missing)} "
                             "(expected practice_code,group_code)")
    blank = frame.index[frame.practice_code.isna() | frame.group_code.isna()]
    if len(blank):
        raise WarehouseError(f"{path}: row {int(blank[0]) + 2}: practice_code and group_code "
                             "must both be given")
    return frame


@dataclass
class BenchmarkResult:
    """One indicator at one level: the annual table and (optionally) the monthly series."""

    indicator: Indicator
    level: str
    table: pd.DataFrame
    series: pd.DataFrame | None = None


def _indicator(indicator_id: str) -> Indicator:
    indicators = load_indicators()
    if indicator_id not in indicators:
        raise WarehouseError(f"unknown indicator {indicator_id!r}; known: "
                             f"{', '.join(sorted(indicators))}")
    return indicators[indicator_id]


def _tables(warehouse: Warehouse) -> Mapping[str, Any]:
    if not warehouse.exists():
        raise WarehouseError(f"{warehouse.root}: no warehouse here yet (run pbc load first)")
    backend = warehouse.ibis()
    return {n: backend.table(n) for n in warehouse.table_names()}


def benchmark_all(
    warehouse: Warehouse,
    indicator_ids: list[str] | None = None,
    *,
    level: Level = "practice",
    grouping_file: Path | None = None,
    financial_year: str | None = None,
    monthly: bool = True,
) -> list[BenchmarkResult]:
    """Several indicators (default: the whole library) from one warehouse; with more than
    one they share the populations (:func:`pbc.indicators.compute.with_populations`)."""
    indicators = [_indicator(i) for i in indicator_ids] if indicator_ids else \
        list(load_indicators().values())
    tables = _tables(warehouse)
    if len(indicators) > 1:
        tables = with_populations(tables)
    grouping = read_grouping(grouping_file) if grouping_file else None
    years = None
    if financial_year is not None:
        try:
            financial_year = format_financial_year(parse_financial_year(financial_year), "-")
        except ValueError as e:
            raise WarehouseError(f"--year: {e}") from e
        years = [financial_year]
        for ind in indicators:
            _require_year(tables, ind, financial_year)
    out = []
    for ind in indicators:
        table = benchmark(tables, ind, level=level, financial_year=financial_year,
                          grouping=grouping)
        series = monthly_series(tables, ind, level=level, years=years,
                                grouping=grouping) if monthly else None
        out.append(BenchmarkResult(ind, level, table, series))
    return out


def _require_year(tables: Mapping[str, Any], ind: Indicator, year: str) -> None:
    """Raise unless the indicator's activity table has rows in financial year ``year``
    (a benchmark of a year with no data would be a table of zeros)."""
    if ind.numerator.activity is None:
        return
    name = ACTIVITY_TABLE[ind.numerator.activity]
    if name not in tables:
        raise WarehouseError(f"indicator {ind.id} needs the {name} table, which is not "
                             "in the warehouse")
    t = tables[name]
    present = sorted(str(y) for y in t.select("financial_year").distinct().execute()
                     .financial_year.dropna())
    if year not in present:
        raise WarehouseError(f"no {name} activity in financial year {year} (the warehouse "
                             f"has {', '.join(present) or 'none'})")


def benchmark_indicator(
    warehouse: Warehouse,
    indicator_id: str,
    *,
    level: Level = "practice",
    grouping_file: Path | None = None,
    financial_year: str | None = None,
    monthly: bool = True,
) -> BenchmarkResult:
    """The benchmark table for one indicator and, with ``monthly``, its SPC series."""
    return benchmark_all(warehouse, [indicator_id], level=level, grouping_file=grouping_file,
                         financial_year=financial_year, monthly=monthly)[0]


def run_benchmark(
    warehouse: Warehouse,
    indicator_id: str,
    *,
    level: Level = "practice",
    grouping_file: Path | None = None,
    financial_year: str | None = None,
    out: Path | None = None,
) -> pd.DataFrame:
    """The benchmark table for one indicator; written to ``out`` (.csv/.xlsx) if given."""
    result = benchmark_indicator(warehouse, indicator_id, level=level,
                                 grouping_file=grouping_file, financial_year=financial_year,
                                 monthly=out is not None)
    if out is not None:
        write_result(result, out)
    return result.table


def about(ind: Indicator) -> pd.DataFrame:
    """The indicator's definition as rows of (field, value), for the workbook."""
    rows = [("id", ind.id), ("title", ind.title), ("why it matters", ind.why_it_matters.strip()),
            ("unit", ind.unit), ("kind", ind.kind), ("standardisation", ind.standardisation),
            ("low is good", str(ind.low_is_good)), ("source", ind.source),
            ("review date", ind.review_date.isoformat())]
    if ind.national is not None:
        rows += [("England value", f"{ind.national.value:g} ({ind.national.period})"),
                 ("England source", ind.national.source)]
    return pd.DataFrame(rows, columns=["field", "value"])


def write_result(result: BenchmarkResult, out: Path) -> list[Path]:
    """Write the table (and series) by suffix; returns the files written."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise WarehouseError(f"{out}: use .csv or .xlsx")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".xlsx":
        with pd.ExcelWriter(out, engine="xlsxwriter", engine_kwargs=XLSX_OPTIONS) as xl:
            result.table.to_excel(xl, index=False, sheet_name="benchmark")
            if result.series is not None:
                result.series.to_excel(xl, index=False, sheet_name="monthly")
            about(result.indicator).to_excel(xl, index=False, sheet_name="indicator")
        return [out]
    spreadsheet_safe(result.table).to_csv(out, index=False)
    written = [out]
    if result.series is not None:
        monthly = out.with_name(f"{out.stem}_monthly.csv")
        spreadsheet_safe(result.series).to_csv(monthly, index=False)
        written.append(monthly)
    return written


def write_charts(result: BenchmarkResult, folder: Path, *, highlight: str | None = None,
                 fmt: str = "svg") -> list[Path]:
    """Funnel (not for costs per head), caterpillar, deciles over time and, for the
    highlighted unit (default: the first), its SPC chart, as ``fmt`` (svg, png, html, json).
    """
    from pbc.indicators.charts import (
        caterpillar_chart,
        deciles_chart,
        funnel_chart,
        save_chart,
        spc_chart,
    )

    if fmt not in ("svg", "png", "html", "json"):
        raise WarehouseError(f"chart format {fmt!r}: use svg, png, html or json")
    ind, table = result.indicator, result.table
    key = table.columns[1]
    units = table[key].astype(str).tolist()
    if highlight is not None and highlight not in units:
        raise WarehouseError(f"--highlight {highlight!r} is not a {key} in this benchmark")
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{ind.id}_{result.level}"
    charts: list[tuple[str, Any]] = []
    if ind.kind != "cost_per_head":
        charts.append(("funnel", funnel_chart(table, ind, highlight=highlight)))
    charts.append(("caterpillar", caterpillar_chart(table, ind, highlight=highlight)))
    if result.series is not None and len(result.series):
        charts.append(("deciles", deciles_chart(result.series, ind, highlight=highlight)))
        unit = highlight or units[0]
        charts.append((f"spc_{unit}", spc_chart(result.series, ind, unit)))
    return [save_chart(chart, folder / f"{stem}_{name}.{fmt}") for name, chart in charts]
